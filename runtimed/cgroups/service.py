"""`update`, `pause` and `unpause`: what changes a container's cgroup after create."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from runtimed.cgroups.hook import cgroup_rel, prepare, resources_of
from runtimed.cgroups.manager import CgroupManager
from runtimed.cgroups.resources import EXTRAS_KEY, Resources, merge_update
from runtimed.errors import FailedPrecondition

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService
    from runtimed.core.model import Container

log = structlog.get_logger(__name__)


class ResourceService:
    def __init__(self, manager: CgroupManager, containers: ContainerService) -> None:
        self.manager = manager
        self.containers = containers

    async def update(
        self, ref: str, change: Resources, *, pids_set: bool = False
    ) -> tuple[Container, list[str]]:
        """Docker's `update`: store the new limits, and write them into the cgroup of a
        running container at once. Returns Docker's warnings."""
        container = self.containers.get(ref)
        async with self.containers._lock(container.id):
            container = self.containers.get(container.id)
            merged = merge_update(resources_of(container), change, pids_set=pids_set)
            self.manager.require(f"updating container {container.name}'s resources")
            warnings = await asyncio.to_thread(prepare, self.manager, merged)
            if container.running:
                await asyncio.to_thread(self.manager.apply, cgroup_rel(container), merged)
            container.config.extras[EXTRAS_KEY] = merged.to_dict()
            self.containers.records.save_config(container)
        log.info("container_updated", container_id=container.id)
        return container, warnings

    async def pause(self, ref: str) -> None:
        container = self.containers.get(ref)
        async with self.containers._lock(container.id):
            container = self._running(container.id)
            if container.state.paused:
                raise FailedPrecondition(f"Container {container.id} is already paused")
            self.manager.require("pause")
            await self.containers.shim(container).pause()
            container.state.paused = True
            await self.containers._save(container)
        self.containers.announce(container, "pause")

    async def unpause(self, ref: str) -> None:
        container = self.containers.get(ref)
        async with self.containers._lock(container.id):
            container = self._running(container.id)
            if not container.state.paused:
                raise FailedPrecondition(f"Container {container.id} is not paused")
            await self.containers.shim(container).resume()
            container.state.paused = False
            await self.containers._save(container)
        self.containers.announce(container, "unpause")

    def _running(self, container_id: str) -> Container:
        container = self.containers.get(container_id)
        if not container.running:
            raise FailedPrecondition(f"Container {container.id} is not running")
        return container

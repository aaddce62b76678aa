"""The volume part of a container's life, plugged into ContainerService.hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtimed.core.hooks import ContainerHook
from runtimed.volumes.mounts import ContainerMounts, extras_plan
from runtimed.volumes.plan import EXTRAS_KEY

if TYPE_CHECKING:
    from runtimed.core.containers import CreateRequest
    from runtimed.core.model import Container
    from runtimed.oci.spec import SpecRequest


class VolumeHook(ContainerHook):
    def __init__(self, mounts: ContainerMounts) -> None:
        self.mounts = mounts

    async def validate(self, request: CreateRequest, image_config: dict[str, Any]) -> None:
        raw = request.extras.get(EXTRAS_KEY) or {}
        entries = self.mounts.resolve(raw, request.binds, image_config)
        # Stored with the container: every start mounts exactly this.
        request.extras[EXTRAS_KEY] = extras_plan(entries)

    async def created(self, container: Container, request: CreateRequest) -> None:
        await self.mounts.prepare(container)

    async def before_start(self, container: Container, spec: SpecRequest) -> None:
        await self.mounts.mount_all(container, spec)

    async def after_stop(self, container: Container) -> None:
        await self.mounts.release(container)

    async def before_remove(self, container: Container, *, remove_volumes: bool) -> None:
        await self.mounts.forget(container, remove_volumes=remove_volumes)

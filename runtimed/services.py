"""What the servicers are given: the daemon's services, made and wired by daemon/server.py.

The API front doors (api/, streaming/, dockerapi/) see this record, never the daemon:
the daemon builds it (daemon.server.build_runtime) and hands it to them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtimed.cgroups.wiring import sweep_cgroups
from runtimed.rootless import userns

if TYPE_CHECKING:
    from runtimed.build.service import BuildService
    from runtimed.cgroups.manager import CgroupManager
    from runtimed.cgroups.service import ResourceService
    from runtimed.config import Config
    from runtimed.core.containers import ContainerService
    from runtimed.core.events import EventBus
    from runtimed.core.sandboxes import SandboxService
    from runtimed.core.shim_client import ShimLauncher
    from runtimed.core.stats import StatsService
    from runtimed.images import registries_conf
    from runtimed.images.auth import CredentialStore
    from runtimed.images.registry import RegistryClient
    from runtimed.images.service import ImageService
    from runtimed.network.service import NetworkService
    from runtimed.oci.runtime import OciRuntime
    from runtimed.snapshots import Snapshotter
    from runtimed.store.content import ContentStore
    from runtimed.store.metadata import MetadataStore
    from runtimed.volumes.mounts import ContainerMounts
    from runtimed.volumes.service import VolumeService


@dataclass
class Runtime:
    """Everything the servicers share; built once per daemon."""

    config: Config
    rootless: bool
    metadata: MetadataStore
    content: ContentStore
    registries: registries_conf.RegistriesConfig
    credentials: CredentialStore
    registry: RegistryClient
    images: ImageService
    snapshotter: Snapshotter
    oci_runtime: OciRuntime
    launcher: ShimLauncher
    containers: ContainerService
    sandboxes: SandboxService
    volumes: VolumeService
    volume_mounts: ContainerMounts
    network: NetworkService
    stats: StatsService
    builds: BuildService
    events: EventBus
    pod_cidr: str = ""
    cgroups: CgroupManager | None = None
    resources: ResourceService | None = None

    async def start(self) -> None:
        """Bring up the shim launcher (it also holds our namespaces) and find every shim."""
        await self.launcher.ensure()
        self.sandboxes.restore()
        await self.network.start()
        await self.containers.restore()
        if self.cgroups is not None:
            await asyncio.to_thread(sweep_cgroups, self.cgroups, self.containers.list())
        await self.network.reconcile()
        await self.volume_mounts.reconcile()

    async def aclose(self) -> None:
        await self.containers.aclose()
        # Pods need our namespaces too (pinned ones, the infra process's pid namespace).
        idle = await self.containers.release_idle_shims() and not self.sandboxes.any_pods()
        await self.network.aclose(idle=idle)
        if idle:
            # Nothing runs: the namespaces need no keeper until the next start.
            await self.launcher.stop()
            with contextlib.suppress(FileNotFoundError):
                (self.config.run_dir / userns.HOLDER_PID_FILE).unlink()
        await self.registry.aclose()
        self.metadata.close()
        self.events.close()

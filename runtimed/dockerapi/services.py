"""What the Docker API needs of the daemon: the core services, handed over at construction.

A Protocol, so this package never imports the daemon (the daemon's Runtime
fits it, and tests may hand in their own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from runtimed.config import Config
    from runtimed.core.containers import ContainerService
    from runtimed.images.registries_conf import RegistriesConfig
    from runtimed.images.registry import RegistryClient
    from runtimed.images.service import ImageService
    from runtimed.network.service import NetworkService
    from runtimed.oci.runtime import OciRuntime
    from runtimed.snapshots import Snapshotter
    from runtimed.volumes.service import VolumeService


class Services(Protocol):
    config: Config
    rootless: bool
    registries: RegistriesConfig
    registry: RegistryClient
    images: ImageService
    containers: ContainerService
    volumes: VolumeService
    network: NetworkService
    snapshotter: Snapshotter
    oci_runtime: OciRuntime

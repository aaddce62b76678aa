"""The one interface every volume driver offers, and where drivers come from.

The operations are those of Docker's volume plugin protocol, so the built-in
`local` driver, a Python package's driver and a Docker plugin on a socket are
interchangeable. Python drivers register a factory under the
`runtimed.volume_drivers` entry point group; the factory gets a DriverContext
and returns the driver:

    [project.entry-points."runtimed.volume_drivers"]
    local = "runtimed_plugins.volumes.local:LocalDriver"
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "runtimed.volume_drivers"


@dataclass
class VolumeInfo:
    """What a driver knows of one volume (Docker's Get/List answer)."""

    name: str
    mountpoint: str = ""
    created_at: str = ""
    status: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DriverContext:
    """Where a driver may keep things."""

    data_dir: Path  # the daemon's data dir; the local driver uses <data_dir>/volumes
    run_dir: Path  # the daemon's run dir (sockets, transient state)


class VolumeDriver(Protocol):
    """A volume driver. `mount_id` identifies one user (a container) of a mounted volume;
    a driver mounts on the first id and unmounts when the last one is released."""

    name: str

    async def create(self, name: str, options: dict[str, str]) -> None: ...

    async def remove(self, name: str) -> None: ...

    async def mount(self, name: str, mount_id: str) -> str:
        """Make the volume available; returns the host path to bind into the container."""
        ...

    async def unmount(self, name: str, mount_id: str) -> None: ...

    async def path(self, name: str) -> str:
        """Where the volume is (or would be) mounted; "" when the driver cannot say."""
        ...

    async def get(self, name: str) -> VolumeInfo: ...

    async def list(self) -> list[VolumeInfo]: ...

    async def capabilities(self) -> dict[str, Any]:
        """Docker's capabilities object, e.g. {"Scope": "local"}."""
        ...


DriverFactory = Callable[[DriverContext], VolumeDriver]


@dataclass
class DriverEntry:
    name: str
    address: str  # "module:attr" of the entry point
    factory: DriverFactory | None = None
    error: str = ""


def entry_point_drivers() -> dict[str, DriverEntry]:
    """Every Python driver installed, by name; a broken one is kept with its error."""
    found: dict[str, DriverEntry] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry = DriverEntry(name=ep.name, address=ep.value)
        try:
            entry.factory = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the daemon
            entry.error = f"cannot load {ep.value}: {exc}"
            log.warning("volume_driver_load_failed", driver=ep.name, error=str(exc))
        found.setdefault(ep.name, entry)
    return found

"""A third-party-style Python volume driver for the tests: plain directories under the
daemon's run dir, registered through the `runtimed.volume_drivers` entry point of a
distribution the test writes on PYTHONPATH."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from runtimed.errors import NotFound
from runtimed.volumes.driver import DriverContext, VolumeInfo


class DirDriver:
    name = "testdir"

    def __init__(self, context: DriverContext) -> None:
        self.root = context.run_dir / "testdir-volumes"

    async def create(self, name: str, options: dict[str, str]) -> None:
        (self.root / name).mkdir(parents=True, exist_ok=True)

    async def remove(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)

    async def mount(self, name: str, mount_id: str) -> str:
        return await self.path(name)

    async def unmount(self, name: str, mount_id: str) -> None:
        return None

    async def path(self, name: str) -> str:
        return str(self.root / name)

    async def get(self, name: str) -> VolumeInfo:
        if not (self.root / name).is_dir():
            raise NotFound(f"no such volume {name}")
        return VolumeInfo(name=name, mountpoint=str(self.root / name))

    async def list(self) -> list[VolumeInfo]:
        if not self.root.is_dir():
            return []
        return [VolumeInfo(name=p.name, mountpoint=str(p)) for p in self.root.iterdir()]

    async def capabilities(self) -> dict[str, Any]:
        return {"Scope": "local"}


def write_distribution(site: Path) -> None:
    """Make `site` (put on PYTHONPATH) hold an installed distribution declaring DirDriver."""
    info = site / "runtimed_test_driver-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: runtimed-test-driver\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[runtimed.volume_drivers]\ntestdir = tests.support.python_volume_driver:DirDriver\n"
    )

"""200 create/start/stop/remove cycles leave no process, mount, shim, fd or file behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from tests.support.daemon import Daemon

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CYCLES = 200


def _mnt_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def processes_in(namespace: str) -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit() and _mnt_ns(p) == namespace}


def daemon_child(d: Daemon) -> int:
    assert d.proc is not None
    children = Path(f"/proc/{d.proc.pid}/task/{d.proc.pid}/children").read_text().split()
    return int(children[0])


def footprint(d: Daemon) -> dict[str, object]:
    holder = d.holder_pid()
    assert holder is not None
    namespace = _mnt_ns(holder)
    assert namespace is not None
    child = daemon_child(d)
    mounts = Path(f"/proc/{holder}/mountinfo").read_text().count(str(d.root))
    return {
        "processes": len(processes_in(namespace)),
        "mounts": mounts,
        "fds": len(os.listdir(f"/proc/{child}/fd")),
        "run_files": sorted(os.listdir(d.socket.parent / "containers"))
        if (d.socket.parent / "containers").exists()
        else [],
        "data_files": sorted(os.listdir(d.data_dir / "containers"))
        if (d.data_dir / "containers").exists()
        else [],
    }


def test_many_cycles_leave_nothing_behind() -> None:
    d = Daemon()
    try:
        d.start()
        d.import_busybox("bb:cycle")
        engine = d.engine()
        # One warm-up cycle so lazily opened files (database, sockets) are counted in both.
        warm = engine.CreateContainer(
            pb.CreateContainerRequest(image="bb:cycle", cmd=["true"], has_cmd=True)
        )
        engine.RemoveContainer(pb.RemoveContainerRequest(id=warm.id, force=True))
        before = footprint(d)
        for i in range(CYCLES):
            created = engine.CreateContainer(
                pb.CreateContainerRequest(
                    image="bb:cycle", name=f"cycle-{i}", cmd=["sleep", "100"], has_cmd=True
                )
            )
            engine.StartContainer(pb.ContainerRef(id=created.id))
            engine.StopContainer(pb.StopContainerRequest(id=created.id, timeout=0))
            engine.RemoveContainer(pb.RemoveContainerRequest(id=created.id))
        after = footprint(d)
        assert after["processes"] == before["processes"]
        assert after["mounts"] == before["mounts"]
        assert after["run_files"] == [] and after["data_files"] == []
        assert abs(int(after["fds"]) - int(before["fds"])) <= 2, (before, after)
        assert engine.ListContainers(pb.ListContainersRequest(all=True)).containers == []
    finally:
        d.cleanup()

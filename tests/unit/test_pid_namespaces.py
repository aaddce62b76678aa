"""Pid namespaces of pod containers: CRI modes to core pid modes, pid modes to the
config.json pid entry, the pod's infra process found (or not) through its pid file,
and the infra process itself as the init of a pid namespace (in a user namespace).
Real pods: tests/integration/test_cri_runtime.py."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from runtimed_shim import podinfra
from runtimed_shim.host import libc, libc_error
from runtimed_shim.launcher import PR_SET_CHILD_SUBREAPER

from runtimed.api.cri_runtime import pid_mode
from runtimed.core.containers import PID_CONTAINER, PID_HOST, PID_OWN, PID_POD, ContainerService
from runtimed.core.model import (
    Container,
    ContainerConfig,
    ContainerState,
    Sandbox,
    SandboxConfig,
    SandboxState,
    Status,
)
from runtimed.core.sandboxes import INFRA_FILE, SandboxService
from runtimed.errors import FailedPrecondition, InvalidArgument, NotFound
from runtimed.gen.runtime.v1 import api_pb2 as cri
from runtimed.oci.spec import NamespacePaths, SpecRequest, build_spec
from tests.support.waiting import wait_for
from tests.unit._userns import run_scenario

POD_ID = "p" * 64


class FakeRecords:
    """The few ContainerRecords lookups the services make, over plain dicts."""

    def __init__(self) -> None:
        self.containers: dict[str, Container] = {}
        self.pods: dict[str, Sandbox] = {}
        self.saved: list[str] = []

    def get(self, ref: str) -> Container | None:
        return self.containers.get(ref)

    def by_name(self, name: str) -> Container | None:
        return next((c for c in self.containers.values() if c.name == name), None)

    def with_prefix(self, prefix: str) -> list[Container]:
        return [c for i, c in self.containers.items() if i.startswith(prefix)]

    def using_image(self, image_id: str) -> list[str]:
        return []

    def get_sandbox(self, sandbox_id: str) -> Sandbox | None:
        return self.pods.get(sandbox_id)

    def sandboxes(self) -> list[Sandbox]:
        return list(self.pods.values())

    def save_sandbox_state(self, sandbox: Sandbox) -> None:
        self.saved.append(sandbox.id)


def container(cid: str, *, pid_mode: str = "", pid: int = 0, sandbox_id: str = POD_ID) -> Container:
    state = ContainerState(status=Status.RUNNING if pid else Status.CREATED, pid=pid)
    config = ContainerConfig(image="busybox", image_id="sha256:x", spec={}, args=["sleep"])
    config.pid_mode = pid_mode
    return Container(cid, f"name-{cid[:4]}", sandbox_id, config, state, created_at=1)


def pod(ns_dir: Path) -> Sandbox:
    return Sandbox(POD_ID, "pod", SandboxConfig(kind="pod", ns_dir=str(ns_dir)), SandboxState(), 1)


@pytest.fixture
def records() -> FakeRecords:
    return FakeRecords()


@pytest.fixture
def service(records: FakeRecords, tmp_path: Path) -> ContainerService:
    return ContainerService(
        records=records,  # type: ignore[arg-type]
        images=SimpleNamespace(),  # type: ignore[arg-type]
        snapshotter=None,  # type: ignore[arg-type]
        launcher=None,  # type: ignore[arg-type]
        runtime=None,  # type: ignore[arg-type]
        run_dir=tmp_path / "run",
        data_dir=tmp_path / "data",
    )


def write_infra_file(ns_dir: Path, pid: int) -> Path:
    ns_dir.mkdir(parents=True, exist_ok=True)
    path = ns_dir / INFRA_FILE
    # Every pid used here is (or was) in our own pid namespace.
    pid_ns = os.stat("/proc/self/ns/pid").st_ino
    path.write_text(json.dumps({"pid": pid, "pid_ns": pid_ns}))
    return path


def dead_pid() -> int:
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    return child


# --- CRI NamespaceMode -> core pid mode ---------------------------------------------


def test_cri_pid_modes() -> None:
    assert pid_mode(cri.NamespaceOption()) == PID_POD  # empty options: POD
    assert pid_mode(cri.NamespaceOption(pid=cri.POD)) == PID_POD
    assert pid_mode(cri.NamespaceOption(pid=cri.CONTAINER)) == PID_OWN
    assert pid_mode(cri.NamespaceOption(pid=cri.NODE)) == PID_HOST  # hostPID
    target = cri.NamespaceOption(pid=cri.TARGET, target_id="abc")
    assert pid_mode(target) == PID_CONTAINER + "abc"
    with pytest.raises(InvalidArgument, match="target_id"):
        pid_mode(cri.NamespaceOption(pid=cri.TARGET))


# --- pid mode -> config.json --------------------------------------------------------


def pid_entry(service: ContainerService, c: Container, pod_pid: str | None, rootfs: Path) -> Any:
    ns = NamespacePaths(pid=service._pid_namespace(c, pod_pid))
    spec = build_spec(SpecRequest(image_config={"Cmd": ["sleep"]}, namespaces=ns), rootfs)
    return next(n for n in spec["linux"]["namespaces"] if n["type"] == "pid")


def test_spec_pid_entry_for_each_mode(
    service: ContainerService, records: FakeRecords, tmp_path: Path
) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    shared = "/proc/4242/ns/pid"
    # Own namespace: a new one, even in a pod that shares one.
    assert pid_entry(service, container("a" * 64), shared, rootfs) == {"type": "pid"}
    # POD: the pod's; in a pod without a shared namespace, one of its own.
    pod_mode = container("b" * 64, pid_mode=PID_POD)
    assert pid_entry(service, pod_mode, shared, rootfs) == {"type": "pid", "path": shared}
    assert pid_entry(service, pod_mode, None, rootfs) == {"type": "pid"}
    # TARGET: the running target's, found at start time.
    target = container("c" * 64, pid=777)
    records.containers[target.id] = target
    debug = container("d" * 64, pid_mode=PID_CONTAINER + target.id)
    assert pid_entry(service, debug, shared, rootfs) == {"type": "pid", "path": "/proc/777/ns/pid"}
    target.state = ContainerState(status=Status.EXITED)
    with pytest.raises(FailedPrecondition, match="not running"):
        service._pid_namespace(debug, shared)


def test_host_pid_has_no_pid_namespace_and_binds_the_hosts_proc(tmp_path: Path) -> None:
    """A rootless runtime cannot mount a procfs for the host's pid namespace (it belongs
    to the initial user namespace): the host's /proc is bound instead."""
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    request = SpecRequest(image_config={"Cmd": ["sleep"]}, namespaces=NamespacePaths(host_pid=True))
    spec = build_spec(request, rootfs)
    assert "pid" not in [n["type"] for n in spec["linux"]["namespaces"]]
    proc = next(m for m in spec["mounts"] if m["destination"] == "/proc")
    assert proc == {
        "destination": "/proc",
        "type": "bind",
        "source": "/proc",
        "options": ["rbind", "nosuid", "noexec", "nodev"],
    }
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]  # still masked over the bind
    joined = NamespacePaths(host_pid=True, pid="/proc/1/ns/pid")
    with pytest.raises(InvalidArgument, match="exclusive"):
        build_spec(SpecRequest(image_config={"Cmd": ["sleep"]}, namespaces=joined), rootfs)


def test_pid_mode_checks_at_create(service: ContainerService, records: FakeRecords) -> None:
    sandbox = pod(Path("/nonexistent"))
    running = container("c" * 64, pid=777)
    created = container("e" * 64)
    elsewhere = container("f" * 64, pid=778, sandbox_id="q" * 64)
    for c in (running, created, elsewhere):
        records.containers[c.id] = c
    assert service._check_pid_mode(PID_OWN, sandbox) == PID_OWN
    assert service._check_pid_mode(PID_POD, sandbox) == PID_POD
    # A name or prefix is recorded as the full id.
    assert service._check_pid_mode(PID_CONTAINER + "ccc", sandbox) == PID_CONTAINER + running.id
    with pytest.raises(NotFound, match="whose pid namespace"):
        service._check_pid_mode(PID_CONTAINER + "0" * 64, sandbox)
    with pytest.raises(FailedPrecondition, match="not running"):
        service._check_pid_mode(PID_CONTAINER + created.id, sandbox)
    with pytest.raises(InvalidArgument, match="same pod"):
        service._check_pid_mode(PID_CONTAINER + elsewhere.id, sandbox)
    with pytest.raises(InvalidArgument, match="needs a pod"):
        service._check_pid_mode(PID_POD, None)
    assert service._check_pid_mode(PID_HOST, sandbox) == PID_HOST
    on_host = container("a" * 64, pid=779, pid_mode=PID_HOST)
    records.containers[on_host.id] = on_host
    assert service._check_pid_mode(PID_CONTAINER + on_host.id, sandbox) == PID_HOST
    assert service._check_pid_mode(PID_HOST, None) == PID_HOST
    with pytest.raises(InvalidArgument, match="invalid pid mode"):
        service._check_pid_mode("hots", sandbox)


# --- the pod's infra process, found through its pid file ----------------------------


def sandboxes(records: FakeRecords, tmp_path: Path) -> SandboxService:
    return SandboxService(
        records=records,  # type: ignore[arg-type]
        containers=SimpleNamespace(),  # type: ignore[arg-type]
        run_dir=tmp_path / "run",
        data_dir=tmp_path / "data",
    )


def test_pod_namespaces_with_and_without_infra(records: FakeRecords, tmp_path: Path) -> None:
    svc = sandboxes(records, tmp_path)
    sandbox = pod(tmp_path / "ns")
    records.pods[sandbox.id] = sandbox
    # No infra file: a pod whose pid mode is not POD shares no pid namespace.
    assert svc.namespaces(sandbox).pid is None
    # A live one (this test process stands in for it).
    write_infra_file(tmp_path / "ns", os.getpid())
    assert svc.namespaces(sandbox).pid == f"/proc/{os.getpid()}/ns/pid"
    assert svc.get(sandbox.id).state.ready and records.saved == []
    # Gone: the pod is not ready any more, and nothing joins a namespace that is not there.
    write_infra_file(tmp_path / "ns", dead_pid())
    with pytest.raises(FailedPrecondition, match="infra process"):
        svc.namespaces(sandbox)
    assert not svc.get(sandbox.id).state.ready and records.saved == [sandbox.id]


def test_find_checks_identity(tmp_path: Path) -> None:
    me = write_infra_file(tmp_path, os.getpid())
    assert podinfra.find(str(me)) == os.getpid()
    # A recycled pid has another pid namespace than the one recorded.
    me.write_text(json.dumps({"pid": os.getpid(), "pid_ns": 1}))
    assert podinfra.find(str(me)) is None
    assert podinfra.stop(str(me)) is False  # and is not signalled
    for text in ("", "{}", "[1]", '{"pid": "x", "pid_ns": 1}', '{"pid": 0, "pid_ns": 0}'):
        me.write_text(text)
        assert podinfra.find(str(me)) is None
    assert podinfra.find(str(write_infra_file(tmp_path, dead_pid()))) is None
    assert podinfra.find(str(tmp_path / "missing.json")) is None


# --- the infra process itself ----------------------------------------------------------


def test_infra_process_is_a_reaping_init(tmp_path: Path) -> None:
    run_scenario(__file__, "scenario_infra", str(tmp_path), userns=True)


def _in_namespace_of(pid: int, body: Any) -> None:
    """Run `body` in a process inside `pid`'s pid namespace; wait for it."""
    helper = os.fork()
    if helper == 0:
        try:
            fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY)
            if libc.setns(fd, podinfra.CLONE_NEWPID) != 0:
                raise libc_error("setns")
            inner = os.fork()  # the first process of ours inside it
            if inner == 0:
                try:
                    body()
                finally:
                    os._exit(0)
            os.waitpid(inner, 0)
        finally:
            os._exit(0)
    os.waitpid(helper, 0)


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def scenario_infra(scratch: str) -> None:
    # Adopt the infra process once its parent exits, so it can be reaped here.
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    pid_file = os.path.join(scratch, INFRA_FILE)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r)
        podinfra.start(pid_file, w, lambda: os.closerange(3, 1 << 20))
    os.close(w)
    report = b""
    while chunk := os.read(r, 4096):
        report += chunk
    os.waitpid(child, 0)
    answer = json.loads(report)
    assert answer["ok"], answer
    pid = answer["pid"]
    assert podinfra.find(pid_file) == pid
    status = Path(f"/proc/{pid}/status").read_text()
    assert next(x for x in status.splitlines() if x.startswith("NSpid:")).split()[-1] == "1"
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"pod-infra\0"

    # An orphan in the namespace is adopted by the infra process and reaped when it ends
    # (it waits for the write end of a pipe, which only this process keeps, to close).
    release_r, release_w = os.pipe()

    def leave_an_orphan() -> None:
        if os.fork() == 0:
            os.close(release_w)
            os.read(release_r, 1)
            os._exit(0)

    _in_namespace_of(pid, leave_an_orphan)
    os.close(release_r)
    orphans = _children(pid)
    assert len(orphans) == 1, orphans
    os.close(release_w)
    wait_for(lambda: not os.path.exists(f"/proc/{orphans[0]}"), what="the orphan to be reaped")

    # SIGTERM from inside the pod is ignored; from outside it stops the infra process.
    _in_namespace_of(pid, lambda: os.kill(1, signal.SIGTERM))
    time.sleep(0.2)
    assert podinfra.find(pid_file) == pid, "a process in the pod took its init down"
    assert podinfra.stop(pid_file) is True
    _, status_code = os.waitpid(pid, 0)
    assert os.WIFEXITED(status_code) and os.WEXITSTATUS(status_code) == 0
    assert podinfra.find(pid_file) is None

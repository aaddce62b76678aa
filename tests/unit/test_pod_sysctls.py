"""A pod's sysctls are set when its namespaces are pinned, before any container joins;
what the kernel refuses there is a clear error and leaves nothing pinned. Runs as root
of a user namespace, as the daemon does."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runtimed.errors import InvalidArgument
from runtimed.oci.sandbox_ns import pin_namespaces, unpin_namespaces
from tests.unit._userns import run_scenario

POD_SYSCTLS = {
    "kernel.shm_rmid_forced": "1",
    "kernel/msgmax": "4321",
    "fs.mqueue.msg_max": "17",
    "net.ipv4.ip_unprivileged_port_start": "1000",
    "net/ipv4/ping_group_range": "0 1000",
    "net.ipv4.ip_local_port_range": "20000 30000",
    "net.ipv4.tcp_syncookies": "0",
}
READ_BACK = {
    "kernel/shm_rmid_forced": "1",
    "kernel/msgmax": "4321",
    "fs/mqueue/msg_max": "17",
    "net/ipv4/ip_unprivileged_port_start": "1000",
    "net/ipv4/ping_group_range": "0\t1000",
    "net/ipv4/ip_local_port_range": "20000\t30000",
    "net/ipv4/tcp_syncookies": "0",
}


def _read_in(pod: Path, names: list[str]) -> list[str]:
    paths = [f"/proc/sys/{n}" for n in names]
    out = subprocess.run(
        ["nsenter", f"--net={pod}/net", f"--ipc={pod}/ipc", "cat", *paths],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.splitlines()


def scenario_sysctls_in_pinned_namespaces(scratch: str) -> None:
    pod = Path(scratch) / "pod"
    host_before = _read_in_self(list(READ_BACK))
    pin_namespaces(pod, "sysctl-pod", sysctls=POD_SYSCTLS)
    try:
        assert _read_in(pod, list(READ_BACK)) == list(READ_BACK.values())
        assert _read_in_self(list(READ_BACK)) == host_before  # ours are untouched
    finally:
        unpin_namespaces(pod)

    # The kernel's refusal (ids outside the user namespace's mapping): a clear
    # error naming the sysctl and value, and no pinned namespace left behind.
    try:
        pin_namespaces(pod, "p", sysctls={"net.ipv4.ping_group_range": "0 2147483647"})
    except InvalidArgument as exc:
        assert "net.ipv4.ping_group_range" in exc.message and "2147483647" in exc.message
        assert "EINVAL" in exc.message
    else:
        raise AssertionError("an unmapped ping_group_range was accepted")
    assert not pod.exists()
    assert str(pod) not in Path("/proc/self/mountinfo").read_text()

    try:
        pin_namespaces(pod, "p", sysctls={"net.ipv4.no_such_thing": "1"})
    except InvalidArgument as exc:
        assert "net.ipv4.no_such_thing does not exist" in exc.message
    else:
        raise AssertionError("a sysctl the kernel lacks was accepted")
    assert not pod.exists()

    # Host IPC: no IPC namespace pinned, so IPC sysctls are refused; net ones still apply.
    ns = pin_namespaces(pod, "p", ipc=False, sysctls={"net.ipv4.tcp_syncookies": "0"})
    try:
        assert ns.ipc is None and ns.host_ipc
        assert not (pod / "ipc").exists()
    finally:
        unpin_namespaces(pod)


def _read_in_self(names: list[str]) -> list[str]:
    return [Path(f"/proc/sys/{n}").read_text().strip() for n in names]


def test_sysctls_in_pinned_namespaces(tmp_path: Path) -> None:
    run_scenario(__file__, "scenario_sysctls_in_pinned_namespaces", str(tmp_path), userns=True)


@pytest.mark.parametrize(
    ("sysctls", "kw", "message"),
    [
        ({"kernel.panic": "10"}, {}, "sysctl kernel.panic is not namespaced"),
        ({"vm.swappiness": "1"}, {}, "sysctl vm.swappiness is not namespaced"),
        ({"fs.file-max": "1"}, {}, "sysctl fs.file-max is not namespaced"),
        ({"net.core.somaxconn": "1"}, {"network": False}, "host network"),
        ({"kernel.shmmax": "1"}, {"ipc": False}, "host IPC"),
    ],
)
def test_refused_sysctls_pin_nothing(
    tmp_path: Path, sysctls: dict[str, str], kw: dict[str, bool], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        pin_namespaces(tmp_path / "pod", "p", sysctls=sysctls, **kw)
    assert not (tmp_path / "pod").exists()

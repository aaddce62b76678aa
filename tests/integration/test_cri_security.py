"""A CRI container's security context, a pod's sysctls and host IPC, through the
generated client with the real daemon and crun: what the container sees."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import grpc
import pytest

from runtimed.gen.runtime.v1 import api_pb2 as cri
from tests.integration.test_cri_runtime import (
    container_config,
    exec_out,
    pod_config,
    remove_pod,
    wait_state,
)
from tests.support.daemon import Daemon
from tests.support.images import PushedImages

pytestmark = pytest.mark.integration

Profile = cri.SecurityProfile
BLOCK_CHMOD = {  # Docker's format: archMap, and a rule kept only on some architectures
    "defaultAction": "SCMP_ACT_ALLOW",
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {
            "names": ["chmod", "fchmod", "fchmodat", "fchmodat2"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
        },
        {"name": "chmod", "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["mips"]}},
    ],
}
BLOCK_SETHOSTNAME = {  # the OCI format
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}],
}


@pytest.fixture
def image(daemon: Daemon, pushed_images: PushedImages) -> str:
    daemon.cri_images().PullImage(
        cri.PullImageRequest(image=cri.ImageSpec(image=pushed_images.busybox.ref))
    )
    return pushed_images.busybox.ref


# Each container's init keeps its own /proc status for the test to read, then sleeps.
INIT = "cat /proc/self/status > /tmp/init-status; exec sleep 1000"


def run_container(
    rt, pod_id: str, pod: cri.PodSandboxConfig, image: str, name: str,
    sec: cri.LinuxContainerSecurityContext | None = None,
) -> str:  # fmt: skip
    """A running container of the pod with security context `sec`."""
    config = container_config(name, image, [INIT])
    if sec is not None:
        config.linux.security_context.CopyFrom(sec)
    cid = rt.CreateContainer(
        cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=pod)
    ).container_id
    rt.StartContainer(cri.StartContainerRequest(container_id=cid))
    assert wait_state(rt, cid, cri.CONTAINER_RUNNING).state == cri.CONTAINER_RUNNING
    return cid


def status_field(rt, cid: str, field: str, *, init: bool = False) -> str:
    """A line's value from /proc/self/status of an exec'd process (or of the init)."""
    out = exec_out(rt, cid, "cat", "/tmp/init-status" if init else "/proc/self/status")
    match = re.search(rf"^{field}:\s*(.*)$", out, re.M)
    assert match, out
    return match.group(1).strip()


def exec_result(rt, cid: str, *cmd: str) -> cri.ExecSyncResponse:
    return rt.ExecSync(cri.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=20))


def container_ids(rt) -> list[str]:
    return sorted(c.id for c in rt.ListContainers(cri.ListContainersRequest()).containers)


def pod_ids(rt) -> list[str]:
    return sorted(p.id for p in rt.ListPodSandbox(cri.ListPodSandboxRequest()).items)


def run_pod(rt, name: str, log_dir: Path, **linux) -> tuple[cri.PodSandboxConfig, str]:
    config = pod_config(name, log_dir, uid=f"uid-{name}")
    config.linux.CopyFrom(cri.LinuxPodSandboxConfig(**linux))
    return config, rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id


# --- seccomp ---------------------------------------------------------------------------


def test_seccomp_unconfined_unless_asked(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    pod, pod_id = run_pod(rt, "seccomp", tmp_path)
    cases = {
        "unset": (cri.LinuxContainerSecurityContext(), "0"),
        "unconfined": (
            cri.LinuxContainerSecurityContext(seccomp=Profile(profile_type=Profile.Unconfined)),
            "0",
        ),
        "default": (
            cri.LinuxContainerSecurityContext(seccomp=Profile(profile_type=Profile.RuntimeDefault)),
            "2",
        ),
        "deprecated-default": (
            cri.LinuxContainerSecurityContext(seccomp_profile_path="runtime/default"),
            "2",
        ),
        "deprecated-unconfined": (
            cri.LinuxContainerSecurityContext(seccomp_profile_path="unconfined"),
            "0",
        ),
    }
    try:
        for name, (sec, expected) in cases.items():
            cid = run_container(rt, pod_id, pod, image, name, sec)
            assert status_field(rt, cid, "Seccomp", init=True) == expected, name
            assert status_field(rt, cid, "Seccomp") == expected, name
    finally:
        remove_pod(rt, pod_id)


def test_engine_containers_keep_the_default_profile(daemon: Daemon, image: str) -> None:
    """Only the CRI's meaning changed: a docker-style container is confined by default."""
    out = daemon.ok("run", "--rm", image, "grep", "^Seccomp:", "/proc/self/status").stdout
    assert out.split() == ["Seccomp:", "2"]


def test_localhost_seccomp_profiles_are_enforced(
    daemon: Daemon, image: str, tmp_path: Path
) -> None:
    rt = daemon.cri_runtime()
    chmod_profile = tmp_path / "block-chmod.json"
    chmod_profile.write_text(json.dumps(BLOCK_CHMOD))
    hostname_profile = tmp_path / "block-sethostname.json"
    hostname_profile.write_text(json.dumps(BLOCK_SETHOSTNAME))
    admin = cri.Capability(add_capabilities=["SYS_ADMIN"])
    pod, pod_id = run_pod(rt, "localhost", tmp_path)
    try:
        no_chmod = run_container(
            rt, pod_id, pod, image, "no-chmod",
            cri.LinuxContainerSecurityContext(
                seccomp=Profile(profile_type=Profile.Localhost, localhost_ref=str(chmod_profile))
            ),
        )  # fmt: skip
        assert status_field(rt, no_chmod, "Seccomp", init=True) == "2"
        denied = exec_result(rt, no_chmod, "busybox", "chmod", "700", "/tmp")
        assert denied.exit_code != 0 and b"Operation not permitted" in denied.stderr
        # The deprecated string form names the same file.
        old_style = run_container(
            rt, pod_id, pod, image, "old-style",
            cri.LinuxContainerSecurityContext(seccomp_profile_path=f"localhost/{chmod_profile}"),
        )  # fmt: skip
        denied = exec_result(rt, old_style, "busybox", "chmod", "700", "/tmp")
        assert denied.exit_code != 0 and b"Operation not permitted" in denied.stderr

        # CAP_SYS_ADMIN lets sethostname through the default profile, not through this one.
        no_hostname = run_container(
            rt, pod_id, pod, image, "no-hostname",
            cri.LinuxContainerSecurityContext(
                capabilities=admin,
                seccomp=Profile(
                    profile_type=Profile.Localhost, localhost_ref=str(hostname_profile)
                ),
            ),
        )  # fmt: skip
        assert int(status_field(rt, no_hostname, "CapEff"), 16) & (1 << 21)  # CAP_SYS_ADMIN
        denied = exec_result(rt, no_hostname, "hostname", "renamed")
        assert denied.exit_code != 0 and b"Operation not permitted" in denied.stderr
        assert exec_out(rt, no_hostname, "hostname").strip() == "localhost"
        # Nothing else is blocked by it: chmod works there.
        assert exec_result(rt, no_hostname, "busybox", "chmod", "1777", "/tmp").exit_code == 0

        # The same with the default profile: both are allowed.
        control = run_container(
            rt, pod_id, pod, image, "control",
            cri.LinuxContainerSecurityContext(
                capabilities=admin, seccomp=Profile(profile_type=Profile.RuntimeDefault)
            ),
        )  # fmt: skip
        assert exec_result(rt, control, "busybox", "chmod", "1777", "/tmp").exit_code == 0
        assert exec_result(rt, control, "hostname", "renamed").exit_code == 0
        assert exec_out(rt, no_hostname, "hostname").strip() == "renamed"  # one UTS: the pod's
    finally:
        remove_pod(rt, pod_id)


def test_bad_localhost_profiles_leave_nothing(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    pod, pod_id = run_pod(rt, "badprofile", tmp_path)
    files = daemon.data_dir / "containers"
    invalid = tmp_path / "invalid.json"
    invalid.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": "chmod"}]}')
    not_json = tmp_path / "not-json.json"
    not_json.write_text("defaultAction: allow\n")
    try:
        before, files_before = container_ids(rt), sorted(os.listdir(files))
        for path, code in (
            (tmp_path / "missing.json", grpc.StatusCode.NOT_FOUND),
            (invalid, grpc.StatusCode.INVALID_ARGUMENT),
            (not_json, grpc.StatusCode.INVALID_ARGUMENT),
            (tmp_path, grpc.StatusCode.INVALID_ARGUMENT),  # a directory
        ):
            config = container_config("bad", image, ["exec sleep 100"])
            config.linux.security_context.seccomp.CopyFrom(
                Profile(profile_type=Profile.Localhost, localhost_ref=str(path))
            )
            with pytest.raises(grpc.RpcError) as err:
                rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=config))
            assert err.value.code() == code, err.value.details()
            assert str(path) in err.value.details()
        assert container_ids(rt) == before and sorted(os.listdir(files)) == files_before
    finally:
        remove_pod(rt, pod_id)


# --- users, groups, masked and read-only paths -----------------------------------------


def test_users_and_supplemental_groups(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    pod, pod_id = run_pod(rt, "groups", tmp_path)
    try:
        cid = run_container(
            rt, pod_id, pod, image, "grouped",
            cri.LinuxContainerSecurityContext(
                run_as_user=cri.Int64Value(value=1000),
                run_as_group=cri.Int64Value(value=2000),
                supplemental_groups=[1234, 5678],
            ),
        )  # fmt: skip
        assert status_field(rt, cid, "Uid").split()[0] == "1000"
        assert status_field(rt, cid, "Gid").split()[0] == "2000"
        assert set(status_field(rt, cid, "Groups").split()) == {"2000", "1234", "5678"}
        assert set(exec_out(rt, cid, "id", "-G").split()) == {"2000", "1234", "5678"}
        # The init has them too, not only exec'd processes.
        assert set(status_field(rt, cid, "Groups", init=True).split()) == {"2000", "1234", "5678"}

        before = container_ids(rt)
        bad = container_config("groupless", image, ["exec sleep 100"])
        bad.linux.security_context.run_as_group.value = 2000
        with pytest.raises(grpc.RpcError) as err:
            rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=bad))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "run_as_group" in err.value.details()
        assert container_ids(rt) == before
    finally:
        remove_pod(rt, pod_id)


def test_masked_and_readonly_paths(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    pod, pod_id = run_pod(rt, "masks", tmp_path)
    check = (
        "echo version=$(wc -c < /proc/version); echo firmware=$(ls /sys/firmware | wc -l); "
        "touch /etc/probe 2>/dev/null && echo etc=rw || echo etc=ro; "
        "grep -c ' /proc/bus ' /proc/self/mounts | sed s/^/procbus=/"
    )

    def seen(cid: str) -> dict[str, str]:
        out = exec_out(rt, cid, "sh", "-c", check)
        return dict(line.split("=", 1) for line in out.split())

    try:
        defaults = run_container(rt, pod_id, pod, image, "defaults")
        got = seen(defaults)
        assert got["version"] != "0" and got["firmware"] == "0" and got["etc"] == "rw"
        assert got["procbus"] == "1"

        given = run_container(
            rt, pod_id, pod, image, "given",
            cri.LinuxContainerSecurityContext(
                masked_paths=["/proc/version"], readonly_paths=["/etc"]
            ),
        )  # fmt: skip
        got = seen(given)
        # Ours are replaced: /sys/firmware is not masked, /proc/bus not read-only.
        assert got == {"version": "0", "firmware": got["firmware"], "etc": "ro", "procbus": "0"}
        assert got["firmware"] != "0"

        privileged = run_container(
            rt, pod_id, pod, image, "privileged",
            cri.LinuxContainerSecurityContext(
                privileged=True, masked_paths=["/proc/version"], readonly_paths=["/etc"]
            ),
        )  # fmt: skip
        got = seen(privileged)
        assert got["version"] != "0" and got["etc"] == "rw" and got["procbus"] == "0"
    finally:
        remove_pod(rt, pod_id)


# --- sysctls ----------------------------------------------------------------------------

POD_SYSCTLS = {
    "kernel.shm_rmid_forced": "1",
    "net.ipv4.ip_local_port_range": "20000 30000",
    "net.ipv4.ping_group_range": "0 1000",
    "net.ipv4.ip_unprivileged_port_start": "80",
    "net.ipv4.tcp_syncookies": "0",
    "kernel/msgmax": "4321",
    "kernel.shmmni": "1234",
    "kernel.sem": "250 32000 32 200",
    "fs/mqueue/msg_max": "17",
    "net.core.somaxconn": "777",
}


def test_pod_sysctls_apply_in_its_namespaces(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    pod, pod_id = run_pod(rt, "sysctls", tmp_path, sysctls=POD_SYSCTLS)
    paths = [f"/proc/sys/{name.replace('.', '/')}" for name in POD_SYSCTLS]
    try:
        first = run_container(rt, pod_id, pod, image, "first")
        second = run_container(rt, pod_id, pod, image, "second")
        for cid in (first, second):
            values = exec_out(rt, cid, "cat", *paths).splitlines()
            assert [" ".join(v.split()) for v in values] == list(POD_SYSCTLS.values())
        # The host's (the test's) are untouched.
        assert Path("/proc/sys/kernel/msgmax").read_text().strip() != "4321"
    finally:
        remove_pod(rt, pod_id)


@pytest.mark.parametrize(
    ("sysctls", "host_network", "words"),
    [
        ({"kernel.panic": "10"}, False, ["kernel.panic", "not namespaced"]),
        ({"vm/swappiness": "1"}, False, ["vm.swappiness", "not namespaced"]),
        ({"fs.file-max": "100000"}, False, ["fs.file-max", "not namespaced"]),
        ({"net.core.somaxconn": "100"}, True, ["net.core.somaxconn", "host network"]),
        # The kernel's own refusal: gids beyond runtimed's user namespace mapping.
        ({"net.ipv4.ping_group_range": "0 2147483647"}, False, ["ping_group_range", "EINVAL"]),
        ({"net.ipv4.no_such_sysctl": "1"}, False, ["no_such_sysctl", "does not exist"]),
    ],
)
def test_refused_sysctls_leave_no_pod(
    daemon: Daemon, tmp_path: Path, sysctls: dict[str, str], host_network: bool, words: list[str]
) -> None:
    rt = daemon.cri_runtime()
    before = pod_ids(rt)
    config = pod_config("refused", tmp_path, uid=f"uid-refused-{uuid.uuid4().hex[:8]}")
    config.linux.sysctls.update(sysctls)
    if host_network:
        config.linux.security_context.namespace_options.network = cri.NODE
    with pytest.raises(grpc.RpcError) as err:
        rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert all(w in err.value.details() for w in words), err.value.details()
    assert pod_ids(rt) == before
    sandboxes = daemon.socket.parent / "sandboxes"
    assert sorted(os.listdir(sandboxes)) == sorted(before)


# --- host IPC ---------------------------------------------------------------------------


def ipc_namespace(rt, cid: str) -> str:
    return exec_out(rt, cid, "busybox", "readlink", "/proc/self/ns/ipc").strip()


def shm_ids(rt, cid: str) -> set[str]:
    """SysV shared memory segments in the container's IPC namespace (busybox has no ipcs)."""
    lines = exec_out(rt, cid, "cat", "/proc/sysvipc/shm").splitlines()[1:]
    return {line.split()[1] for line in lines}


def test_host_ipc_shares_the_hosts_ipc_namespace(
    daemon: Daemon, image: str, tmp_path: Path
) -> None:
    rt = daemon.cri_runtime()
    made = subprocess.run(["ipcmk", "-M", "4096"], capture_output=True, text=True, check=True)
    found = re.search(r"(\d+)\s*$", made.stdout.strip())
    assert found, made.stdout
    shmid = found.group(1)
    shm_file = Path("/dev/shm") / f"runtimed-test-{uuid.uuid4().hex}"
    shm_file.write_text("posix shm\n")
    host_pod = private_pod = ""
    try:
        node_ipc = cri.NamespaceOption(ipc=cri.NODE)
        config, host_pod = run_pod(
            rt, "hostipc", tmp_path,
            security_context=cri.LinuxSandboxSecurityContext(namespace_options=node_ipc),
        )  # fmt: skip
        status = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=host_pod))
        assert status.status.linux.namespaces.options.ipc == cri.NODE
        sec = cri.LinuxContainerSecurityContext(namespace_options=node_ipc)
        inside = run_container(rt, host_pod, config, image, "shm", sec)
        # The IPC namespace of the user who started runtimed: this test's.
        assert ipc_namespace(rt, inside) == os.readlink("/proc/self/ns/ipc")
        assert shmid in shm_ids(rt, inside)
        assert exec_out(rt, inside, "cat", str(shm_file)) == "posix shm\n"

        # A pod of its own IPC namespace sees neither.
        other, private_pod = run_pod(rt, "privateipc", tmp_path)
        private = run_container(rt, private_pod, other, image, "private")
        assert ipc_namespace(rt, private) != os.readlink("/proc/self/ns/ipc")
        assert shmid not in shm_ids(rt, private)
        assert exec_result(rt, private, "cat", str(shm_file)).exit_code != 0
    finally:
        for pod_id in (host_pod, private_pod):
            if pod_id:
                remove_pod(rt, pod_id)
        subprocess.run(["ipcrm", "-m", shmid], check=True)
        shm_file.unlink()

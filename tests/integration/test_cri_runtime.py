"""The CRI runtime service through a generated client: the pod and container lifecycle
kubelet drives, with real crun and real shims."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import grpc
import pytest

from runtimed.gen.runtime.v1 import api_pb2 as cri
from tests.support.daemon import Daemon
from tests.support.images import PushedImages
from tests.support.waiting import ended, wait_for

pytestmark = pytest.mark.integration


def pod_config(name: str, log_dir: Path, uid: str = "uid-1") -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, uid=uid, namespace="default", attempt=0),
        hostname=name,
        log_directory=str(log_dir),
        labels={"app": name},
        dns_config=cri.DNSConfig(servers=["192.0.2.53"], searches=["example.test"]),
    )


def remove_pod(rt, pod_id: str) -> None:
    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def container_config(name: str, image: str, args: list[str], **extra) -> cri.ContainerConfig:
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=name, attempt=0),
        image=cri.ImageSpec(image=image),
        command=["/bin/sh", "-c"],
        args=args,
        log_path=f"{name}.log",
        labels={"role": name},
        **extra,
    )


def wait_state(runtime, container_id: str, state: int, timeout: float = 20) -> cri.ContainerStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = runtime.ContainerStatus(cri.ContainerStatusRequest(container_id=container_id))
        if status.status.state == state or time.monotonic() > deadline:
            return status.status
        time.sleep(0.05)


@pytest.fixture
def image(daemon: Daemon, pushed_images: PushedImages) -> str:
    daemon.cri_images().PullImage(
        cri.PullImageRequest(image=cri.ImageSpec(image=pushed_images.busybox.ref))
    )
    return pushed_images.busybox.ref


def test_full_pod_lifecycle(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    version = rt.Version(cri.VersionRequest(version="0.1.0"))
    assert version.runtime_api_version == "v1"
    status = rt.Status(cri.StatusRequest())
    conditions = {c.type: c.status for c in status.status.conditions}
    assert conditions["RuntimeReady"] is True

    config = pod_config("web", tmp_path)
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    pod = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
    assert pod.state == cri.SANDBOX_READY and pod.metadata.name == "web"
    assert [p.id for p in rt.ListPodSandbox(cri.ListPodSandboxRequest()).items] == [pod_id]

    # Two containers share the pod's UTS and network namespaces.
    server_cfg = container_config(
        "server", image, ["hostname; echo ready; while true; do echo pong | nc -l -p 8080; done"]
    )
    server = rt.CreateContainer(
        cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=server_cfg, sandbox_config=config)
    ).container_id
    assert wait_state(rt, server, cri.CONTAINER_CREATED).state == cri.CONTAINER_CREATED
    rt.StartContainer(cri.StartContainerRequest(container_id=server))
    assert wait_state(rt, server, cri.CONTAINER_RUNNING).state == cri.CONTAINER_RUNNING

    log_file = tmp_path / "server.log"
    deadline = time.monotonic() + 10
    while "ready" not in (log_file.read_text() if log_file.exists() else ""):
        assert time.monotonic() < deadline, "server never logged"
        time.sleep(0.05)
    first = log_file.read_text().splitlines()[0].split(" ", 3)
    assert first[1] == "stdout" and first[2] == "F" and first[3] == "web"
    assert first[0].endswith("Z") and "." in first[0]

    result = rt.ExecSync(
        cri.ExecSyncRequest(
            container_id=server,
            cmd=["/bin/sh", "-c", "nc 127.0.0.1 8080 </dev/null; echo err >&2; exit 3"],
            timeout=10,
        )
    )
    assert result.stdout == b"pong\n"
    assert result.stderr == b"err\n"
    assert result.exit_code == 3

    resolv = rt.ExecSync(cri.ExecSyncRequest(container_id=server, cmd=["cat", "/etc/resolv.conf"]))
    assert b"nameserver 192.0.2.53" in resolv.stdout and b"search example.test" in resolv.stdout

    listed = rt.ListContainers(
        cri.ListContainersRequest(
            filter=cri.ContainerFilter(pod_sandbox_id=pod_id, label_selector={"role": "server"})
        )
    ).containers
    assert [c.id for c in listed] == [server]
    running = rt.ListContainers(
        cri.ListContainersRequest(
            filter=cri.ContainerFilter(state=cri.ContainerStateValue(state=cri.CONTAINER_RUNNING))
        )
    ).containers
    assert server in [c.id for c in running]

    rt.StopContainer(cri.StopContainerRequest(container_id=server, timeout=2))
    stopped = wait_state(rt, server, cri.CONTAINER_EXITED)
    assert stopped.state == cri.CONTAINER_EXITED
    assert stopped.exit_code in (137, 143)
    assert stopped.finished_at >= stopped.started_at > 0
    # Idempotent, as kubelet expects.
    rt.StopContainer(cri.StopContainerRequest(container_id=server, timeout=2))

    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    pod = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
    assert pod.state == cri.SANDBOX_NOTREADY
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert rt.ListPodSandbox(cri.ListPodSandboxRequest()).items == []
    assert rt.ListContainers(cri.ListContainersRequest()).containers == []
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemoveContainer(cri.RemoveContainerRequest(container_id=server))


def test_exit_codes_and_reasons(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    config = pod_config("codes", tmp_path, uid="uid-codes")
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    try:
        for name, script, code, reason in (
            ("ok", "exit 0", 0, "Completed"),
            ("fail", "exit 1", 1, "Error"),
        ):
            cid = rt.CreateContainer(
                cri.CreateContainerRequest(
                    pod_sandbox_id=pod_id,
                    config=container_config(name, image, [script]),
                    sandbox_config=config,
                )
            ).container_id
            rt.StartContainer(cri.StartContainerRequest(container_id=cid))
            status = wait_state(rt, cid, cri.CONTAINER_EXITED)
            assert (status.exit_code, status.reason) == (code, reason)
    finally:
        remove_pod(rt, pod_id)


def test_name_conflicts_and_bad_requests(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    config = pod_config("dup", tmp_path, uid="uid-dup")
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    try:
        with pytest.raises(grpc.RpcError) as err:
            rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config))
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        cfg = container_config("one", image, ["sleep 100"])
        rt.CreateContainer(
            cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg, sandbox_config=config)
        )
        with pytest.raises(grpc.RpcError) as err:
            rt.CreateContainer(
                cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg, sandbox_config=config)
            )
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.RpcError) as err:
            rt.CreateContainer(
                cri.CreateContainerRequest(
                    pod_sandbox_id=pod_id,
                    config=container_config("noimg", "127.0.0.1:1/none:1", ["true"]),
                    sandbox_config=config,
                )
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as err:
            rt.ContainerStatus(cri.ContainerStatusRequest(container_id="f" * 64))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        # Streaming calls answer with a URL of the streaming server (test_cri_streaming.py).
        url = rt.PortForward(cri.PortForwardRequest(pod_sandbox_id=pod_id)).url
        assert url.startswith("http://127.0.0.1:")
    finally:
        remove_pod(rt, pod_id)


# --- pid namespaces: POD (shared through the pod's infra process), CONTAINER, TARGET ---


def with_pid_mode(config: cri.ContainerConfig, mode: int, target_id: str = "") -> None:
    options = config.linux.security_context.namespace_options
    options.pid = mode
    options.target_id = target_id


def run_sleeper(
    rt, pod_id: str, pod: cri.PodSandboxConfig, image: str, name: str, seconds: int, mode: int
) -> str:
    """A running container whose process is `sleep SECONDS`, in pid namespace mode `mode`."""
    config = container_config(name, image, [f"exec sleep {seconds}"])
    with_pid_mode(config, mode)
    cid = rt.CreateContainer(
        cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=pod)
    ).container_id
    rt.StartContainer(cri.StartContainerRequest(container_id=cid))
    assert wait_state(rt, cid, cri.CONTAINER_RUNNING).state == cri.CONTAINER_RUNNING
    return cid


def exec_out(rt, cid: str, *cmd: str) -> str:
    result = rt.ExecSync(cri.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=20))
    assert result.exit_code == 0, result.stderr
    return result.stdout.decode()


def pid_ns_of(rt, cid: str) -> str:
    return exec_out(rt, cid, "busybox", "readlink", "/proc/self/ns/pid").strip()


def container_pid(rt, cid: str) -> int:
    status = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid, verbose=True))
    return int(json.loads(status.info["info"])["pid"])


def ns_local_pid(host_pid: int) -> int:
    """The pid a process has in its own (innermost) pid namespace."""
    for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {host_pid}")


def infra_pid(rt, pod_id: str) -> int:
    status = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True))
    return int(json.loads(status.info["info"])["pid"])


def live_infra_processes(d: Daemon) -> set[int]:
    """Live pod infra processes of ours in the daemon's mount namespace (not other daemons')."""
    holder = d.holder_pid()
    assert holder is not None
    mnt = os.readlink(f"/proc/{holder}/ns/mnt")
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (
                os.stat(f"/proc/{name}").st_uid == os.getuid()
                and Path(f"/proc/{name}/comm").read_text().strip() == "pod-infra"
                and os.readlink(f"/proc/{name}/ns/mnt") == mnt
                and not ended(int(name))
            ):
                found.add(int(name))
    return found


def pod_with_pid_mode(rt, name: str, log_dir: Path, mode: int) -> tuple[cri.PodSandboxConfig, str]:
    """A running pod whose own pid mode is `mode` (kubelet: CONTAINER unless it shares)."""
    config = pod_config(name, log_dir, uid=f"uid-{name}")
    config.linux.security_context.namespace_options.pid = mode
    return config, rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id


def test_pod_pid_namespace_is_shared(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    # No namespace options at all: pid mode POD, as crictl sends and containerd shares.
    config = pod_config("shared", tmp_path, uid="uid-shared")
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    try:
        infra = infra_pid(rt, pod_id)
        assert infra > 0 and Path(f"/proc/{infra}/comm").read_text() == "pod-infra\n"
        assert ns_local_pid(infra) == 1
        status = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
        assert status.linux.namespaces.options.pid == cri.POD

        a = run_sleeper(rt, pod_id, config, image, "a", 31337, cri.POD)
        b = run_sleeper(rt, pod_id, config, image, "b", 31338, cri.POD)
        ps = exec_out(rt, b, "ps")
        assert "sleep 31337" in ps and "sleep 31338" in ps
        # PID 1 of the pod is the infra process, under a name that gives away no host path.
        assert exec_out(rt, b, "cat", "/proc/1/cmdline") == "pod-infra\0"
        assert str(ns_local_pid(container_pid(rt, a))) in exec_out(rt, b, "ls", "/proc").split()
        assert pid_ns_of(rt, a) == pid_ns_of(rt, b)

        # An orphan in the pod is adopted and reaped by the infra process.
        orphan = int(exec_out(rt, b, "sh", "-c", "sleep 1 >/dev/null 2>&1 & echo $!"))
        proc = exec_out(rt, a, "cat", f"/proc/{orphan}/status")
        assert "\nPPid:\t1\n" in proc
        wait_for(
            lambda: (
                rt.ExecSync(
                    cri.ExecSyncRequest(container_id=a, cmd=["test", "-e", f"/proc/{orphan}"])
                ).exit_code
                != 0
            ),
            what="the orphan reaped by the pod's init",
        )
        assert infra in live_infra_processes(daemon)
    finally:
        remove_pod(rt, pod_id)
    wait_for(lambda: ended(infra), what="the infra process to end")
    assert not (daemon.socket.parent / "sandboxes" / pod_id).exists()


def test_pod_pid_namespace_container_mode(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    # What kubelet sends for a pod without shareProcessNamespace.
    config, pod_id = pod_with_pid_mode(rt, "private", tmp_path, cri.CONTAINER)
    try:
        assert infra_pid(rt, pod_id) == 0
        status = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
        assert status.linux.namespaces.options.pid == cri.CONTAINER
        a = run_sleeper(rt, pod_id, config, image, "a", 31337, cri.CONTAINER)
        b = run_sleeper(rt, pod_id, config, image, "b", 31338, cri.CONTAINER)
        # POD mode in a pod that shares no pid namespace: one of its own, as before.
        c = run_sleeper(rt, pod_id, config, image, "c", 31339, cri.POD)
        ps = exec_out(rt, b, "ps")
        assert "sleep 31338" in ps and "sleep 31337" not in ps
        assert exec_out(rt, b, "cat", "/proc/1/cmdline") == "sleep\x0031338\x00"
        assert len({pid_ns_of(rt, a), pid_ns_of(rt, b), pid_ns_of(rt, c)}) == 3
    finally:
        remove_pod(rt, pod_id)


def test_host_pid_namespace(daemon: Daemon, image: str, tmp_path: Path) -> None:
    """hostPID: kubelet sends NODE for the pod and its containers."""
    rt = daemon.cri_runtime()
    config, pod_id = pod_with_pid_mode(rt, "hostpid", tmp_path, cri.NODE)
    try:
        assert infra_pid(rt, pod_id) == 0
        node = run_sleeper(rt, pod_id, config, image, "node", 31341, cri.NODE)
        assert pid_ns_of(rt, node) == os.readlink("/proc/self/ns/pid")
        exec_out(rt, node, "test", "-d", f"/proc/{os.getpid()}")  # exit 0: this test is there
        # Its pid is the host's: the pid kubelet would see is the one inside.
        init = container_pid(rt, node)
        assert exec_out(rt, node, "cat", f"/proc/{init}/cmdline") == "sleep\x0031341\x00"
    finally:
        remove_pod(rt, pod_id)


def test_target_pid_namespace(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    config, pod_id = pod_with_pid_mode(rt, "debug", tmp_path, cri.CONTAINER)
    try:
        app = run_sleeper(rt, pod_id, config, image, "app", 31337, cri.CONTAINER)
        debug_cfg = container_config("debugger", image, ["exec sleep 31340"])
        with_pid_mode(debug_cfg, cri.TARGET, app)
        debug = rt.CreateContainer(
            cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=debug_cfg)
        ).container_id
        rt.StartContainer(cri.StartContainerRequest(container_id=debug))
        assert wait_state(rt, debug, cri.CONTAINER_RUNNING).state == cri.CONTAINER_RUNNING
        ps = exec_out(rt, debug, "ps")
        assert "sleep 31337" in ps and "sleep 31340" in ps
        assert pid_ns_of(rt, debug) == pid_ns_of(rt, app)
        assert "sleep 31340" in exec_out(rt, app, "ps")  # one namespace: both ways
    finally:
        remove_pod(rt, pod_id)


def test_target_pid_namespace_bad_input(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    config = pod_config("badtarget", tmp_path, uid="uid-badtarget")
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    files = daemon.data_dir / "containers"
    try:
        idle = container_config("idle", image, ["exec sleep 100"])
        created = rt.CreateContainer(
            cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=idle)
        ).container_id
        before = sorted(c.id for c in rt.ListContainers(cri.ListContainersRequest()).containers)
        files_before = sorted(os.listdir(files))
        for target, code in (
            ("f" * 64, grpc.StatusCode.NOT_FOUND),
            ("", grpc.StatusCode.INVALID_ARGUMENT),
            (created, grpc.StatusCode.FAILED_PRECONDITION),  # created, not running
        ):
            bad = container_config("dbg", image, ["exec sleep 100"])
            with_pid_mode(bad, cri.TARGET, target)
            with pytest.raises(grpc.RpcError) as err:
                rt.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=bad))
            assert err.value.code() == code, err.value.details()
        after = sorted(c.id for c in rt.ListContainers(cri.ListContainersRequest()).containers)
        assert after == before and sorted(os.listdir(files)) == files_before
    finally:
        remove_pod(rt, pod_id)


def test_pod_infra_survives_daemon_restarts(pushed_images: PushedImages, tmp_path: Path) -> None:
    d = Daemon()
    try:
        d.start()
        rt = d.cri_runtime()
        image = pushed_images.busybox.ref
        d.cri_images().PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=image)))
        config = pod_config("restored", tmp_path, uid="uid-restored")
        pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
        infra = infra_pid(rt, pod_id)
        a = run_sleeper(rt, pod_id, config, image, "a", 31337, cri.POD)

        d.kill9()
        assert not ended(infra)
        d.start()
        rt = d.cri_runtime()
        status = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
        assert status.status.state == cri.SANDBOX_READY
        assert infra_pid(rt, pod_id) == infra
        b = run_sleeper(rt, pod_id, config, image, "b", 31338, cri.POD)
        assert "sleep 31337" in exec_out(rt, b, "ps")

        # A clean stop with nothing running keeps the pod's namespaces for the next start.
        for cid in (a, b):
            rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=0))
        d.stop()
        assert not ended(infra)
        d.start()
        rt = d.cri_runtime()
        c = run_sleeper(rt, pod_id, config, image, "c", 31339, cri.POD)
        assert exec_out(rt, c, "cat", "/proc/1/cmdline") == "pod-infra\0"

        # The infra process gone: the pod is not ready, as a pod whose pause exited.
        os.kill(infra, signal.SIGKILL)
        wait_for(lambda: ended(infra), what="the infra process to end")
        status = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
        assert status.status.state == cri.SANDBOX_NOTREADY
        with pytest.raises(grpc.RpcError) as err:
            run_sleeper(rt, pod_id, config, image, "d", 31341, cri.POD)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        remove_pod(rt, pod_id)
        assert live_infra_processes(d) == set()
        assert d.pod_infra_files() == []
    finally:
        d.cleanup()

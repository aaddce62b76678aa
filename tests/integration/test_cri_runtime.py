"""The CRI runtime service through a generated client: the pod and container lifecycle
kubelet drives, with real crun and real shims."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from runtimed.gen.runtime.v1 import api_pb2 as cri
from tests.support.daemon import Daemon
from tests.support.images import PushedImages

pytestmark = pytest.mark.integration


def pod_config(name: str, log_dir: Path, uid: str = "uid-1") -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, uid=uid, namespace="default", attempt=0),
        hostname=name,
        log_directory=str(log_dir),
        labels={"app": name},
        dns_config=cri.DNSConfig(servers=["192.0.2.53"], searches=["example.test"]),
    )


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
        rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


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
        with pytest.raises(grpc.RpcError) as err:
            rt.PortForward(cri.PortForwardRequest(pod_sandbox_id=pod_id))
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))

"""What kubelet and its validation suite ask of a CRI runtime beyond our own tests' cases:
pods without a hostname, missing log directories, RuntimeConfig, removing absent images,
and host paths the rootless daemon cannot reach."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import grpc
import pytest

from runtimed.gen.runtime.v1 import api_pb2 as cri
from tests.integration import test_cri_runtime
from tests.integration.test_cri_runtime import container_config, pod_config, remove_pod, wait_state
from tests.support.daemon import Daemon

pytestmark = pytest.mark.integration

# /root is 0700 on Debian: the test user (and so the rootless daemon) cannot reach into it.
UNREACHABLE = Path("/root/runtimed-unreachable")

image = test_cri_runtime.image  # the pulled busybox, as a fixture here too


def test_pod_without_hostname_uses_the_nodes(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    # kubelet-style: a long pod name and no hostname in the config.
    config = pod_config(f"create-PodSandbox-for-container-{uuid.uuid4()}", tmp_path, uid="u-nohost")
    config.hostname = ""
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    try:
        cid = rt.CreateContainer(
            cri.CreateContainerRequest(
                pod_sandbox_id=pod_id,
                config=container_config("h", image, ["hostname"]),
                sandbox_config=config,
            )
        ).container_id
        rt.StartContainer(cri.StartContainerRequest(container_id=cid))
        assert wait_state(rt, cid, cri.CONTAINER_EXITED).exit_code == 0
        log = (tmp_path / "h.log").read_text()
        assert log.rstrip().endswith(f" stdout F {socket.gethostname()}")
    finally:
        remove_pod(rt, pod_id)

    # A hostname that is given and too long stays an error, and leaves no pod.
    config = pod_config("longhost", tmp_path, uid="u-longhost")
    config.hostname = "h" * 65
    with pytest.raises(grpc.RpcError) as err:
        rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "64" in err.value.details()
    pods = rt.ListPodSandbox(cri.ListPodSandboxRequest()).items
    assert all(p.metadata.uid != "u-longhost" for p in pods)


def test_missing_log_directory_is_made(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    log_dir = tmp_path / "not" / "yet"
    config = pod_config("logdir", log_dir, uid="u-logdir")
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    try:
        cfg = container_config("c", image, ["echo logged"])
        cfg.log_path = "c/0.log"  # kubelet's layout: a directory per container
        cid = rt.CreateContainer(
            cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg, sandbox_config=config)
        ).container_id
        rt.StartContainer(cri.StartContainerRequest(container_id=cid))
        assert wait_state(rt, cid, cri.CONTAINER_EXITED).exit_code == 0
        assert (log_dir / "c" / "0.log").read_text().rstrip().endswith(" stdout F logged")
        assert (log_dir / "c").stat().st_mode & 0o777 == 0o755
    finally:
        remove_pod(rt, pod_id)


def test_runtime_config_reports_cgroupfs(daemon: Daemon) -> None:
    answer = daemon.cri_runtime().RuntimeConfig(cri.RuntimeConfigRequest())
    assert answer.linux.cgroup_driver == cri.CGROUPFS


def test_remove_missing_image_by_id_is_not_an_error(daemon: Daemon) -> None:
    images = daemon.cri_images()
    images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image="0" * 64)))
    images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image="sha256:" + "0" * 64)))
    # The CLI says what docker says for an id that is not there.
    result = daemon.ctl("rmi", "0" * 64)
    assert result.returncode == 1
    assert f"No such image: {'0' * 64}" in result.stderr


def assert_refused(rt, request: cri.CreateContainerRequest, what: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        rt.CreateContainer(request)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details().startswith(f"{what}: permission denied")
    assert "rootless" in err.value.details()
    listed = rt.ListContainers(cri.ListContainersRequest()).containers
    assert [c for c in listed if c.pod_sandbox_id == request.pod_sandbox_id] == []


def test_unreachable_host_paths_are_refused_cleanly(
    daemon: Daemon, image: str, tmp_path: Path
) -> None:
    assert not os.access("/root", os.X_OK), "the test needs a directory its user cannot enter"
    rt = daemon.cri_runtime()
    config = pod_config("denied", tmp_path, uid="u-denied")
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    try:
        bind = container_config("bind", image, ["true"])
        bind.mounts.append(
            cri.Mount(container_path="/etc/hosts", host_path=str(UNREACHABLE / "etc-hosts"))
        )
        request = cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=bind)
        assert_refused(rt, request, f"bind source {UNREACHABLE}/etc-hosts")
    finally:
        remove_pod(rt, pod_id)

    # A pod whose log directory (made by a kubelet running as real root) is out of reach.
    config = pod_config("denied-logs", UNREACHABLE, uid="u-denied-logs")
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    try:
        request = cri.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=container_config("logs", image, ["true"])
        )
        assert_refused(rt, request, f"log directory {UNREACHABLE}")
    finally:
        remove_pod(rt, pod_id)
    assert "rpc_crashed" not in daemon.log()

"""kubelet's log_path stays inside the pod's log directory (through the generated CRI
client): an absolute path or one that climbs out with `..` is refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from runtimed.gen.runtime.v1 import api_pb2 as cri
from tests.integration.test_cri_runtime import container_config, pod_config, remove_pod
from tests.support.daemon import Daemon
from tests.support.images import PushedImages
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def test_log_path_is_confined_to_the_pods_log_directory(
    daemon: Daemon, pushed_images: PushedImages, tmp_path: Path
) -> None:
    image = pushed_images.busybox.ref
    daemon.cri_images().PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=image)))
    rt = daemon.cri_runtime()
    logs, outside = tmp_path / "pod-logs", tmp_path / "outside"
    logs.mkdir()
    outside.mkdir()
    config = pod_config("logs", logs, uid="uid-logs")
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    try:
        escapes = ["../outside/up.log", str(outside / "abs.log"), "a/../../outside/b.log", "."]
        for n, log_path in enumerate(escapes):
            cfg = container_config(f"bad{n}", image, ["echo escaped"])
            cfg.log_path = log_path
            with pytest.raises(grpc.RpcError) as err:
                rt.CreateContainer(
                    cri.CreateContainerRequest(
                        pod_sandbox_id=pod_id, config=cfg, sandbox_config=config
                    )
                )
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, log_path
            assert "inside the pod's log directory" in err.value.details()
        listed = rt.ListContainers(
            cri.ListContainersRequest(filter=cri.ContainerFilter(pod_sandbox_id=pod_id))
        )
        assert list(listed.containers) == []
        # A path that stays inside after `..` is kubelet's business: it is used.
        cfg = container_config("good", image, ["echo inside"])
        cfg.log_path = "good/../good.log"
        good = rt.CreateContainer(
            cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg, sandbox_config=config)
        ).container_id
        rt.StartContainer(cri.StartContainerRequest(container_id=good))
        log = logs / "good.log"
        wait_for(lambda: log.exists() and "inside" in log.read_text(), what="the log line")
        assert list(outside.iterdir()) == []
    finally:
        remove_pod(rt, pod_id)

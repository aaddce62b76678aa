"""kubelet's resources through the generated CRI client: LinuxContainerResources into the
container's cgroup, the pod's cgroup_parent and limits, UpdateContainerResources, the
resources in ContainerStatus, the memory limit in stats, OOMKilled, RuntimeConfig."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtimed.gen.runtime.v1 import api_pb2 as cri
from tests.integration.test_cgroups import MiB, cgroup_dirs, read
from tests.integration.test_cri_runtime import (
    container_config,
    pod_config,
    remove_pod,
    wait_state,
)
from tests.support.daemon import Daemon
from tests.support.images import PushedImages

pytestmark = pytest.mark.integration


@pytest.fixture
def image(daemon: Daemon, pushed_images: PushedImages) -> str:
    daemon.cri_images().PullImage(
        cri.PullImageRequest(image=cri.ImageSpec(image=pushed_images.busybox.ref))
    )
    return pushed_images.busybox.ref


def pid_of(rt, container_id: str) -> int:
    status = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=container_id, verbose=True))
    return int(json.loads(status.info["info"])["pid"])


def test_runtime_config_reports_the_cgroup_driver(daemon: Daemon) -> None:
    answer = daemon.cri_runtime().RuntimeConfig(cri.RuntimeConfigRequest())
    assert answer.linux.cgroup_driver == cri.CGROUPFS


def test_container_resources_pod_cgroup_and_update(
    daemon: Daemon, image: str, tmp_path: Path
) -> None:
    rt = daemon.cri_runtime()
    config = pod_config("limited", tmp_path, uid="uid-cg")
    config.linux.cgroup_parent = "/kubepods/burstable/poduid-cg"
    config.linux.resources.CopyFrom(cri.LinuxContainerResources(memory_limit_in_bytes=256 * MiB))
    config.linux.overhead.CopyFrom(cri.LinuxContainerResources(memory_limit_in_bytes=16 * MiB))
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    try:
        resources = cri.LinuxContainerResources(
            cpu_period=100_000,
            cpu_quota=50_000,
            cpu_shares=256,
            memory_limit_in_bytes=64 * MiB,
            memory_swap_limit_in_bytes=64 * MiB,
            cpuset_cpus="0",
            cpuset_mems="0",
            oom_score_adj=500,
        )
        cfg = container_config("app", image, ["sleep 600"])
        cfg.linux.resources.CopyFrom(resources)
        container_id = rt.CreateContainer(
            cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg, sandbox_config=config)
        ).container_id
        rt.StartContainer(cri.StartContainerRequest(container_id=container_id))
        assert wait_state(rt, container_id, cri.CONTAINER_RUNNING).state == cri.CONTAINER_RUNNING
        pid = pid_of(rt, container_id)
        dirs = cgroup_dirs(pid)
        memory, cpu = dirs["memory"], dirs["cpu"]
        assert memory.name == container_id
        # kubelet's cgroup_parent, below the delegated subtree, with the pod's limit.
        assert memory.parent.name == "poduid-cg" and memory.parent.parent.name == "burstable"
        assert read(memory.parent, "memory.limit_in_bytes") == str(256 * MiB)
        assert read(memory, "memory.limit_in_bytes") == str(64 * MiB)
        assert read(memory, "memory.memsw.limit_in_bytes") == str(64 * MiB)  # no swap
        assert read(cpu, "cpu.cfs_quota_us") == "50000" and read(cpu, "cpu.shares") == "256"
        assert read(dirs["cpuset"], "cpuset.cpus") == "0"
        assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "500"

        status = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=container_id)).status
        assert status.resources.linux == resources

        stats = rt.ContainerStats(cri.ContainerStatsRequest(container_id=container_id)).stats
        working = stats.memory.working_set_bytes.value
        assert stats.memory.available_bytes.value == 64 * MiB - working  # the limit is known

        rt.UpdateContainerResources(
            cri.UpdateContainerResourcesRequest(
                container_id=container_id,
                linux=cri.LinuxContainerResources(
                    memory_limit_in_bytes=128 * MiB,
                    memory_swap_limit_in_bytes=128 * MiB,
                    cpu_quota=20_000,
                    cpu_period=100_000,
                ),
            )
        )
        assert read(memory, "memory.limit_in_bytes") == str(128 * MiB)
        assert read(cpu, "cpu.cfs_quota_us") == "20000"
        status = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=container_id)).status
        assert status.resources.linux.memory_limit_in_bytes == 128 * MiB
        assert status.resources.linux.cpu_shares == 256  # not given: kept
    finally:
        remove_pod(rt, pod_id)
    assert not memory.exists() and not memory.parent.exists()


def test_oom_kill_shows_in_container_status(daemon: Daemon, image: str, tmp_path: Path) -> None:
    rt = daemon.cri_runtime()
    config = pod_config("oom", tmp_path, uid="uid-oom")
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    try:
        cfg = container_config("hog", image, ["exec dd if=/dev/zero of=/dev/null bs=64M count=1"])
        cfg.linux.resources.CopyFrom(cri.LinuxContainerResources(memory_limit_in_bytes=32 * MiB))
        container_id = rt.CreateContainer(
            cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg, sandbox_config=config)
        ).container_id
        rt.StartContainer(cri.StartContainerRequest(container_id=container_id))
        status = wait_state(rt, container_id, cri.CONTAINER_EXITED)
        assert status.state == cri.CONTAINER_EXITED
        assert status.reason == "OOMKilled" and status.exit_code == 137
    finally:
        remove_pod(rt, pod_id)

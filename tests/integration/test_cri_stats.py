"""CRI container and pod stats without cgroups, through the generated client and crictl:
CPU and memory from /proc, the writable layer, the pod's network, and the filters."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from runtimed.gen.runtime.v1 import api_pb2 as cri
from tests.integration import test_cri_runtime as cri_tests
from tests.integration.test_cri_runtime import container_config, pod_config, remove_pod, wait_state
from tests.support.crictl import crictl_json, crictl_ok
from tests.support.daemon import Daemon
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

image = cri_tests.image  # the busybox image, pulled through the CRI

MB = 1024 * 1024
SLEEP = "sleep 100000"


class Pod:
    def __init__(
        self,
        daemon: Daemon,
        log_dir: Path,
        name: str,
        labels: dict[str, str],
        pid_mode: int = cri.POD,
    ) -> None:
        self.rt = daemon.cri_runtime()
        self.config = pod_config(name, log_dir, uid=f"uid-{name}")
        self.config.labels.clear()
        self.config.labels.update(labels)
        self.config.linux.security_context.namespace_options.pid = pid_mode
        self.id = self.rt.RunPodSandbox(cri.RunPodSandboxRequest(config=self.config)).pod_sandbox_id

    def run(self, image: str, name: str, script: str, **labels: str) -> str:
        config = container_config(name, image, [script])
        config.labels.update(labels)
        cid = self.rt.CreateContainer(
            cri.CreateContainerRequest(
                pod_sandbox_id=self.id, config=config, sandbox_config=self.config
            )
        ).container_id
        self.rt.StartContainer(cri.StartContainerRequest(container_id=cid))
        assert wait_state(self.rt, cid, cri.CONTAINER_RUNNING).state == cri.CONTAINER_RUNNING
        return cid

    def stats(self) -> cri.PodSandboxStats:
        return self.rt.PodSandboxStats(cri.PodSandboxStatsRequest(pod_sandbox_id=self.id)).stats


@pytest.fixture
def pods(daemon: Daemon, tmp_path: Path) -> Iterator[list[Pod]]:
    """Pods the test makes (append), removed after it."""
    made: list[Pod] = []
    yield made
    for pod in made:
        remove_pod(pod.rt, pod.id)


def container_stats(rt, cid: str) -> cri.ContainerStats:
    return rt.ContainerStats(cri.ContainerStatsRequest(container_id=cid)).stats


def listed(rt, **flt) -> set[str]:
    request = cri.ListContainerStatsRequest(filter=cri.ContainerStatsFilter(**flt))
    return {s.attributes.id for s in rt.ListContainerStats(request).stats}


def listed_pods(rt, **flt) -> list[str]:
    request = cri.ListPodSandboxStatsRequest(filter=cri.PodSandboxStatsFilter(**flt))
    return [s.attributes.id for s in rt.ListPodSandboxStats(request).stats]


def table(output: str) -> dict[str, list[str]]:
    """crictl's table, by the first column (a truncated id, or a pod's name)."""
    return {row.split()[0]: row.split() for row in output.splitlines()[1:] if row.strip()}


def human_bytes(text: str) -> float:
    """go-units' HumanSize (decimal units: 1MB is 1000000 bytes)."""
    units = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    raise AssertionError(f"not a size: {text}")


def test_cpu_memory_and_writable_layer_of_containers(
    daemon: Daemon, image: str, tmp_path: Path, pods: list[Pod]
) -> None:
    pod = Pod(daemon, tmp_path, "stats", {"app": "stats"})
    pods.append(pod)
    rt = pod.rt
    busy = pod.run(image, "busy", "while :; do :; done")
    # 50 MB of anonymous memory, held in a shell variable (it cannot hold NUL bytes); the
    # shell waits, as it would exec a last command in its place and drop the variable.
    hog = pod.run(image, "hog", f"x=$(head -c 50000000 /dev/zero | tr '\\0' a); {SLEEP} & wait")
    disk = pod.run(image, "disk", f"dd if=/dev/zero of=/filler bs=1M count=10 && {SLEEP}")

    first = container_stats(rt, busy)
    assert first.attributes.id == busy and first.attributes.metadata.name == "busy"
    assert first.attributes.labels["role"] == "busy"
    assert first.cpu.timestamp > 0

    def cpu_grew() -> bool:
        later = container_stats(rt, busy).cpu
        return later.usage_core_nano_seconds.value > first.cpu.usage_core_nano_seconds.value

    wait_for(cpu_grew, what="the busy loop's CPU time to grow")
    # The rate needs two samples a second apart at least (clock ticks are 10 ms).
    wait_for(
        lambda: container_stats(rt, busy).cpu.usage_nano_cores.value > 0,
        what="a CPU rate for the busy loop",
    )

    def resident() -> bool:
        # From the container's cgroup, the kernel's counters may lag a moment behind.
        memory = container_stats(rt, hog).memory
        return min(memory.working_set_bytes.value, memory.rss_bytes.value) >= 50_000_000

    wait_for(resident, timeout=60, what="the 50 MB variable to be resident")
    memory = container_stats(rt, hog).memory
    assert memory.rss_bytes.value >= 50_000_000  # anonymous
    assert memory.usage_bytes.value >= memory.working_set_bytes.value
    assert memory.page_faults.value >= 50_000_000 // os.sysconf("SC_PAGE_SIZE")
    assert not memory.HasField("available_bytes")  # no limit is known without cgroups

    wait_for(
        lambda: container_stats(rt, disk).writable_layer.used_bytes.value >= 10 * MB,
        timeout=30,
        what="10 MB in the writable layer",
    )
    layer = container_stats(rt, disk).writable_layer
    assert layer.inodes_used.value >= 1
    mountpoint = layer.fs_id.mountpoint
    assert str(daemon.data_dir).startswith(mountpoint) and os.path.ismount(mountpoint)
    assert container_stats(rt, busy).writable_layer.used_bytes.value < MB

    # crictl: the same numbers through kubelet's own stubs.
    [raw] = crictl_json(daemon, "stats", "--id", hog)["stats"]
    assert raw["attributes"]["id"] == hog
    assert int(raw["memory"]["workingSetBytes"]["value"]) >= 50_000_000
    assert int(raw["cpu"]["usageCoreNanoSeconds"]["value"]) > 0
    assert int(raw["writableLayer"]["inodesUsed"]["value"]) >= 0
    rows = table(crictl_ok(daemon, "stats", "--pod", pod.id).stdout)
    # CONTAINER NAME CPU% MEM DISK INODES, CPU% over crictl's own one-second sample.
    assert float(rows[busy[:13]][2]) > 0
    assert human_bytes(rows[hog[:13]][3]) >= 50_000_000
    assert human_bytes(rows[disk[:13]][4]) >= 10 * MB

    # Stopped: no CPU or memory any more, but the writable layer stays.
    rt.StopContainer(cri.StopContainerRequest(container_id=disk, timeout=0))
    assert wait_state(rt, disk, cri.CONTAINER_EXITED).state == cri.CONTAINER_EXITED
    stopped = container_stats(rt, disk)
    assert not stopped.HasField("cpu") and not stopped.HasField("memory")
    assert stopped.writable_layer.used_bytes.value >= 10 * MB
    assert disk[:13] not in table(crictl_ok(daemon, "stats", "--pod", pod.id).stdout)
    assert disk[:13] in table(crictl_ok(daemon, "stats", "--all", "--pod", pod.id).stdout)

    with pytest.raises(grpc.RpcError) as err:
        rt.ContainerStats(cri.ContainerStatsRequest(container_id="0" * 64))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_filters_by_id_pod_and_labels(
    daemon: Daemon, image: str, tmp_path: Path, pods: list[Pod]
) -> None:
    a = Pod(daemon, tmp_path, "filter-a", {"app": "a", "team": "x"})
    # kubelet's default: a pid namespace per container, and no infra process.
    b = Pod(daemon, tmp_path, "filter-b", {"app": "b", "team": "x"}, pid_mode=cri.CONTAINER)
    pods += [a, b]
    rt = a.rt
    front_a = a.run(image, "front-a", SLEEP, tier="front")
    back_a = a.run(image, "back-a", SLEEP, tier="back")
    front_b = b.run(image, "front-b", SLEEP, tier="front")
    ours = {front_a, back_a, front_b}

    assert listed(rt) >= ours
    assert listed(rt, id=back_a[:10]) == {back_a}
    assert listed(rt, pod_sandbox_id=a.id) == {front_a, back_a}
    assert listed(rt, pod_sandbox_id=b.id[:12]) == {front_b}
    assert listed(rt, label_selector={"tier": "front"}) == {front_a, front_b}
    assert listed(rt, pod_sandbox_id=b.id, label_selector={"tier": "front"}) == {front_b}
    assert listed(rt, pod_sandbox_id=b.id, label_selector={"tier": "back"}) == set()
    assert listed(rt, id=front_a, label_selector={"tier": "back"}) == set()

    assert set(listed_pods(rt, label_selector={"team": "x"})) == {a.id, b.id}
    assert listed_pods(rt, id=a.id[:8]) == [a.id]
    assert listed_pods(rt, label_selector={"app": "b"}) == [b.id]
    assert listed_pods(rt, label_selector={"app": "c"}) == []
    [stats] = rt.ListPodSandboxStats(
        cri.ListPodSandboxStatsRequest(filter=cri.PodSandboxStatsFilter(id=a.id))
    ).stats
    assert {c.attributes.id for c in stats.linux.containers} == {front_a, back_a}
    assert stats.attributes.metadata.name == "filter-a"
    # Two sleeps (the shell execs its last command) and the infra process; in b, one sleep.
    assert stats.linux.process.process_count.value == 3
    assert b.stats().linux.process.process_count.value == 1
    assert b.stats().linux.containers[0].memory.working_set_bytes.value > 0

    def crictl_ids(*args: str) -> set[str]:
        return {s["attributes"]["id"] for s in crictl_json(daemon, *args)["stats"]}

    assert crictl_ids("stats", "--pod", a.id) == {front_a, back_a}
    assert crictl_ids("stats", "--label", "tier=front") == {front_a, front_b}
    assert crictl_ids("stats", back_a[:12]) == {back_a}
    assert crictl_ids("statsp", "--label", "app=b") == {b.id}
    assert crictl_ids("statsp", a.id) == {a.id}

    for call, request in (
        (rt.PodSandboxStats, cri.PodSandboxStatsRequest(pod_sandbox_id="f" * 64)),
        (rt.ContainerStats, cri.ContainerStatsRequest(container_id="missing")),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(request)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def eth0(stats: cri.PodSandboxStats) -> tuple[int, int]:
    iface = stats.linux.network.default_interface
    assert iface.name == "eth0"
    return iface.rx_bytes.value, iface.tx_bytes.value


def test_pod_stats_sum_containers_and_count_network_traffic(
    daemon: Daemon, image: str, tmp_path: Path, pods: list[Pod]
) -> None:
    pod = Pod(daemon, tmp_path, "netstats", {"app": "netstats"})
    pods.append(pod)
    rt = pod.rt
    # Three processes: the shell and two sleeps (the pod's infra process makes four).
    talker = pod.run(image, "talker", f"{SLEEP} & {SLEEP} & wait")
    busy = pod.run(image, "busy", "while :; do :; done")

    wait_for(
        lambda: pod.stats().linux.process.process_count.value == 3 + 1 + 1,
        what="the pod's five processes",
    )
    stats = pod.stats()
    linux = stats.linux
    assert stats.attributes.id == pod.id and stats.attributes.labels["app"] == "netstats"
    assert {c.attributes.id for c in linux.containers} == {talker, busy}
    by_id = {c.attributes.id: c for c in linux.containers}
    assert linux.cpu.usage_core_nano_seconds.value >= by_id[busy].cpu.usage_core_nano_seconds.value
    assert linux.memory.working_set_bytes.value >= sum(
        c.memory.working_set_bytes.value for c in linux.containers
    )
    assert "lo" in {i.name for i in linux.network.interfaces}

    # Traffic between the pod and its gateway (both inside the rootless namespace).
    rx, tx = eth0(stats)
    result = rt.ExecSync(
        cri.ExecSyncRequest(
            container_id=talker,
            cmd=["sh", "-c", "ping -c 3 -i 0.2 -s 1000 $(ip route | awk '/^default/ {print $3}')"],
            timeout=30,
        )
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    rx2, tx2 = eth0(pod.stats())
    assert rx2 - rx >= 3 * 1000 and tx2 - tx >= 3 * 1000

    raw = crictl_json(daemon, "statsp", pod.id)["stats"][0]["linux"]
    assert raw["network"]["defaultInterface"]["name"] == "eth0"
    assert int(raw["network"]["defaultInterface"]["rxBytes"]["value"]) >= rx2
    assert int(raw["process"]["processCount"]["value"]) == 5
    assert float(table(crictl_ok(daemon, "statsp", pod.id).stdout)["netstats"][2]) > 0

    # With nothing running in it, the pod's network is read inside its pinned namespace.
    for cid in (talker, busy):
        rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=0))
        wait_state(rt, cid, cri.CONTAINER_EXITED)
    idle = pod.stats()
    assert eth0(idle)[0] >= rx2 and eth0(idle)[1] >= tx2
    assert not idle.linux.containers[0].HasField("cpu")
    # The infra process alone: a stopped container's processes end with it, also in a pod
    # that shares its pid namespace (where the init's orphans go to the infra process).
    wait_for(
        lambda: pod.stats().linux.process.process_count.value == 1,
        what="the talker's orphaned sleeps to end with it",
    )

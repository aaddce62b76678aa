"""Container and pod stats without cgroups: /proc parsing, the CPU rate, the service's
records and their CRI messages (core/procfs.py, core/stats.py, api/cri_stats.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from runtimed.api import cri_stats
from runtimed.core import procfs, samples
from runtimed.core.model import (
    Container,
    ContainerConfig,
    ContainerState,
    Sandbox,
    SandboxConfig,
    SandboxState,
    Status,
)
from runtimed.core.stats import Counters, CpuRates, StatsService, mountpoint, proc_counters
from runtimed.snapshots import DiskUsage

SEC = 1_000_000_000

# A command name with spaces and parentheses, as a process may name itself.
STAT = (
    b"4242 (a) b (c) S 1 4242 4242 0 -1 4194560 "
    b"100 7 3 2 "  # minflt cminflt majflt cmajflt
    b"250 50 30 20 "  # utime stime cutime cstime (clock ticks)
    b"20 0 1 0 12345 1000000 200 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
)

STATUS = b"""Name:\tsh
State:\tS (sleeping)
VmPeak:\t   60000 kB
VmRSS:\t   51200 kB
RssAnon:\t   49152 kB
RssFile:\t    2048 kB
RssShmem:\t       0 kB
Threads:\t1
"""

SMAPS_ROLLUP = b"""00400000-7ffd1234f000 ---p 00000000 00:00 0                          [rollup]
Rss:               51200 kB
Pss:               50000 kB
Pss_Anon:          49152 kB
"""

NET_DEV = b"""Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     840      10    0    0    0     0          0         0      840      10    0    0    0     0       0          0
  eth0:12345678901   90    1    2    0     0          0         0     4321      30    3    4    0     0       0          0
"""  # noqa: E501 - the kernel's own line length


def test_stat_counts_cpu_and_faults_of_the_process_and_its_reaped_children() -> None:
    fields = procfs.parse_stat(STAT)
    assert fields.state == b"S"
    assert fields.cpu_ticks == 250 + 50 + 30 + 20
    assert fields.minor_faults == 100 + 7
    assert fields.major_faults == 3 + 2


def test_kb_fields_become_bytes() -> None:
    status = procfs.parse_kb(STATUS, (b"VmRSS", b"RssAnon", b"Missing"))
    assert status == {b"VmRSS": 51200 * 1024, b"RssAnon": 49152 * 1024}
    assert procfs.parse_kb(SMAPS_ROLLUP, (b"Pss",)) == {b"Pss": 50000 * 1024}


def test_net_dev_lists_every_interface_even_with_glued_columns() -> None:
    lo, eth0 = procfs.parse_net_dev(NET_DEV)
    assert (lo.name, lo.rx_bytes, lo.tx_bytes) == ("lo", 840, 840)
    assert eth0.name == "eth0"
    assert (eth0.rx_bytes, eth0.rx_packets, eth0.rx_errors, eth0.rx_dropped) == (
        12345678901,
        90,
        1,
        2,
    )
    assert (eth0.tx_bytes, eth0.tx_packets, eth0.tx_errors, eth0.tx_dropped) == (4321, 30, 3, 4)


def test_reading_a_process_sees_memory_it_touches() -> None:
    before = procfs.read_process(os.getpid())
    assert before is not None and before.cpu_ns > 0
    block = bytearray(64 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1  # touch every page: resident from now on
    after = procfs.read_process(os.getpid())
    assert after is not None
    assert after.anon - before.anon >= 60 * 1024 * 1024
    assert after.pss <= after.rss
    assert after.minor_faults > before.minor_faults
    del block


def test_a_gone_process_counts_nothing() -> None:
    total = proc_counters([os.getpid(), 2**22 + 1])  # above pid_max: never a process
    assert total.processes == 1
    assert total.working_set > 0 and total.usage >= total.working_set


def test_counters_add_up_without_a_limit() -> None:
    a = Counters(cpu_ns=1, working_set=2, usage=3, rss=4, page_faults=5, processes=1)
    b = Counters(cpu_ns=10, working_set=20, usage=30, rss=40, major_page_faults=6, processes=2)
    total = Counters(memory_limit=100) + a + b
    assert total == Counters(11, 22, 33, 44, 5, 6, 3, None)


def test_nano_cores_from_two_samples() -> None:
    rates = CpuRates(min_window_ns=SEC)
    assert rates.update("c", 10 * SEC, 4 * SEC) is None  # one sample: no rate yet
    # Half a second of CPU time in a second: half a core.
    assert rates.update("c", 11 * SEC, 4 * SEC + SEC // 2) == 500_000_000
    # Two cores busy for two seconds.
    assert rates.update("c", 13 * SEC, 8 * SEC + SEC // 2) == 2 * SEC
    # Too close to the last one for ticks of 10 ms: the last rate stands.
    assert rates.update("c", 13 * SEC + 1_000_000, 8 * SEC + SEC // 2 + 10_000_000) == 2 * SEC
    # A process ended and took its CPU time along: no negative use.
    assert rates.update("c", 15 * SEC, SEC) == 0
    assert rates.update("other", 15 * SEC, SEC) is None  # each key its own


def test_rates_of_containers_not_sampled_for_long_are_forgotten() -> None:
    rates = CpuRates(min_window_ns=SEC, forget_after_ns=60 * SEC)
    rates.update("gone", 0, 0)
    rates.update("live", 0, 0)
    rates.update("live", 50 * SEC, SEC)
    rates.update("live", 100 * SEC, 2 * SEC)
    assert rates.update("gone", 100 * SEC, 50 * SEC) is None  # a fresh start


def test_mountpoint_is_the_filesystem_holding_the_path(tmp_path: Path) -> None:
    assert mountpoint(Path("/proc/self")) == "/proc"
    found = mountpoint(tmp_path)
    assert str(tmp_path).startswith(found)
    assert os.stat(found).st_dev == os.stat(tmp_path).st_dev


def _container(cid: str, *, running: bool, pid: int = 0) -> Container:
    config = ContainerConfig(
        image="busybox",
        image_id="sha256:" + "0" * 64,
        spec={},
        args=["sh"],
        labels={"role": cid},
        cri={"name": f"n-{cid}", "attempt": 2},
    )
    state = ContainerState(status=Status.RUNNING if running else Status.EXITED, pid=pid)
    return Container(cid, f"k8s_{cid}", "pod1", config, state, created_at=1)


class FakeSource:
    name = "fake"

    def __init__(self) -> None:
        self.cpu_ns = 0

    def container(self, container: Container) -> Counters | None:
        if not container.running:
            return None
        return Counters(cpu_ns=self.cpu_ns, working_set=50, usage=60, rss=40, processes=2)

    def pod(self, sandbox: Sandbox, containers: Sequence[Counters]) -> Counters | None:
        return sum(containers, Counters(memory_limit=None)) + Counters(processes=1)


class FakeSnapshotter:
    name = "fake"

    def usage(self, key: str) -> DiskUsage:
        return DiskUsage(bytes=1, inodes=3, allocated=10 * 1024 * 1024 + len(key))


async def test_a_stopped_container_keeps_its_writable_layer_but_has_no_cpu(
    tmp_path: Path,
) -> None:
    service = StatsService(source=FakeSource(), snapshotter=FakeSnapshotter(), layer_root=tmp_path)
    stats = await service.container(_container("c1", running=False))
    assert stats.cpu is None and stats.memory is None and stats.processes == 0
    assert stats.writable_layer is not None
    assert stats.writable_layer.used_bytes == 10 * 1024 * 1024 + 2
    assert stats.writable_layer.inodes_used == 3
    assert stats.writable_layer.mountpoint == mountpoint(tmp_path)

    message = cri_stats.container_message(_container("c1", running=False), stats)
    assert not message.HasField("cpu") and not message.HasField("memory")
    assert message.writable_layer.used_bytes.value == 10 * 1024 * 1024 + 2
    assert message.writable_layer.inodes_used.value == 3
    assert message.writable_layer.timestamp == stats.timestamp
    assert message.attributes.id == "c1"
    assert message.attributes.metadata.name == "n-c1" and message.attributes.metadata.attempt == 2
    assert dict(message.attributes.labels) == {"role": "c1"}


async def test_a_running_containers_rate_appears_with_the_second_sample(tmp_path: Path) -> None:
    source = FakeSource()
    service = StatsService(
        source=source,
        snapshotter=FakeSnapshotter(),
        layer_root=tmp_path,
        rates=CpuRates(min_window_ns=0),
    )
    running = _container("c2", running=True, pid=1)
    first = await service.container(running)
    assert first.cpu is not None and first.cpu.usage_nano_cores is None
    message = cri_stats.container_message(running, first)
    assert message.cpu.usage_core_nano_seconds.value == 0
    assert not message.cpu.HasField("usage_nano_cores")  # unknown, not zero
    assert message.memory.working_set_bytes.value == 50
    assert message.memory.usage_bytes.value == 60 and message.memory.rss_bytes.value == 40
    assert not message.memory.HasField("available_bytes")  # no limit without cgroups

    source.cpu_ns = 10 * SEC  # an impossible amount: any elapsed time gives a rate
    second = await service.container(running)
    assert second.cpu is not None and second.cpu.usage_nano_cores
    message = cri_stats.container_message(running, second)
    assert message.cpu.usage_core_nano_seconds.value == 10 * SEC
    assert message.cpu.usage_nano_cores.value == second.cpu.usage_nano_cores


async def test_a_host_network_pod_sums_its_containers_and_has_no_network(
    tmp_path: Path,
) -> None:
    service = StatsService(source=FakeSource(), snapshotter=FakeSnapshotter(), layer_root=tmp_path)
    sandbox = Sandbox(
        "pod1",
        "k8s_POD_web",
        SandboxConfig(
            kind="pod",
            labels={"app": "web"},
            cri={"name": "web", "uid": "u1", "namespace": "default", "attempt": 0},
            namespace_options={"network": 2},  # NODE
            ns_dir=str(tmp_path),
        ),
        SandboxState(),
        created_at=1,
    )
    containers = [_container("a", running=True, pid=1), _container("b", running=False)]
    stats = await service.pod(sandbox, containers)
    assert stats.network is None
    assert stats.processes == 2 + 1
    assert stats.memory is not None and stats.memory.working_set_bytes == 50
    assert [c.container_id for c in stats.containers] == ["a", "b"]

    message = cri_stats.pod_message(sandbox, containers, stats)
    assert message.attributes.metadata.name == "web" and message.attributes.metadata.uid == "u1"
    assert not message.HasField("windows")
    linux = message.linux
    assert linux.process.process_count.value == 3
    assert not linux.HasField("network")
    assert linux.memory.working_set_bytes.value == 50
    assert [c.attributes.id for c in linux.containers] == ["a", "b"]
    assert linux.containers[0].HasField("cpu") and not linux.containers[1].HasField("cpu")


async def test_docker_samples_share_one_host_reading_per_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docker stats: every container of a batch is compared with the same host CPU time
    (read once per interval, as dockerd does); the host's memory is the limit of one
    that has none."""
    reads = []

    def fake_host() -> samples.HostReading:
        reads.append(1)
        return samples.HostReading(system_cpu_ns=1000 * len(reads), online_cpus=4, memory=999)

    monkeypatch.setattr(samples, "read_host", fake_host)
    chosen = [_container(c, running=True, pid=1) for c in ("a", "b", "c")]
    stream = samples.readings(
        FakeSource(), lambda: chosen, lambda _c: False, stream=False, interval=0
    )
    batches = [batch async for batch in stream]
    assert len(batches) == 1 and len(reads) == 2  # the first sample and the one yielded
    now = [r.now for r in batches[0]]
    assert {(s.system_cpu_ns, s.online_cpus, s.memory_limit) for s in now} == {(2000, 4, 999)}
    assert [r.before.system_cpu_ns for r in batches[0] if r.before] == [1000] * 3
    assert samples.sample(FakeSource(), chosen[0], own_network=False).system_cpu_ns == 3000

"""The arithmetic behind stats, system df, system prune's prompt and the CRI metric
descriptors, on fixed numbers (docker's formulas and wording)."""

from __future__ import annotations

import argparse

from runtimed.api import cri_metrics
from runtimed.cli import diskusage, stats, sysprune
from runtimed.core.procfs import CLOCK_TICKS
from runtimed.core.samples import net_totals, parse_system_cpu
from runtimed.gen.runtime.v1 import api_pb2 as cri
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.humanize import bytes_size


def _iface(name: str, rx: int, tx: int) -> bytes:
    return f"{name}: {rx} 1 0 0 0 0 0 0 {tx} 1 0 0 0 0 0 0\n".encode()


NET_DEV = (
    b"Inter-|   Receive |  Transmit\n face |bytes packets ...|bytes packets ...\n"
    + _iface("lo", 5000, 5000)
    + _iface("eth0", 1000, 2000)
    + _iface("eth1", 300, 400)
)


def test_system_cpu_adds_the_first_seven_fields_in_ns() -> None:
    data = b"cpu  10 20 30 40 50 60 70 80 90 100\ncpu0 1 2 3 4 5 6 7 0 0 0\n"
    assert parse_system_cpu(data) == 280 * 1_000_000_000 // CLOCK_TICKS


def test_network_totals_leave_loopback_out() -> None:
    assert net_totals(NET_DEV) == (1300, 2400)


def entry(**fields: int | bool | str) -> pb.ContainerStatsEntry:
    base = dict(id="a" * 64, name="web", running=True, online_cpus=2)
    return pb.ContainerStatsEntry(**{**base, **fields})


def test_cpu_percent_is_dockers() -> None:
    e = entry(cpu_total_ns=3_000, pre_cpu_total_ns=1_000,
              system_cpu_ns=20_000, pre_system_cpu_ns=10_000)  # fmt: skip
    assert stats.cpu_percent(e) == 40.0  # 2000 / 10000 * 2 CPUs * 100
    assert stats.cpu_percent(entry(cpu_total_ns=5, system_cpu_ns=5)) == 0.0  # no earlier sample
    fell = entry(cpu_total_ns=1, pre_cpu_total_ns=9, system_cpu_ns=20, pre_system_cpu_ns=10)
    assert stats.cpu_percent(fell) == 0.0


def test_stats_row_cells() -> None:
    e = entry(
        memory_usage=50 * 2**20,
        memory_limit=200 * 2**20,
        net_rx_bytes=10_500_000,
        net_tx_bytes=1234,
        block_read_bytes=0,
        block_write_bytes=4096,
        pids=3,
    )
    row = stats.stats_row(e, "", trunc=True)
    assert row["ID"] == "a" * 12 and row["Container"] == "a" * 12
    assert row["MemUsage"] == "50MiB / 200MiB" and row["MemPerc"] == "25.00%"
    assert row["NetIO"] == "10.5MB / 1.23kB" and row["BlockIO"] == "0B / 4.1kB"
    assert row["PIDs"] == "3" and row["CPUPerc"] == "0.00%"
    assert stats.stats_row(e, "web", trunc=False)["Container"] == "web"
    assert bytes_size(1.5 * 2**30) == "1.5GiB" and bytes_size(0) == "0B"


def test_df_summary_follows_dockers_arithmetic() -> None:
    df = pb.SystemDfResponse(
        layers_size=1000,
        images=[
            pb.DfImage(image=pb.ImageSummary(id="i1", size=600, containers=1), shared_size=200),
            pb.DfImage(image=pb.ImageSummary(id="i2", size=600, containers=0), shared_size=200),
        ],
        containers=[
            pb.DfContainer(container=pb.ContainerSummary(state="running", size_rw=100)),
            pb.DfContainer(container=pb.ContainerSummary(state="exited", size_rw=300)),
        ],
        volumes=[pb.DfVolume(name="a", size=50, links=1), pb.DfVolume(name="b", size=-1)],
        build_cache=[pb.DfBuildCache(id="c", size=70)],
    )
    rows = diskusage.summary_rows(df)
    assert rows[0] == ["Images", "2", "1", "1kB", "600B (60%)"]  # 1000 - (600 - 200)
    assert rows[1] == ["Containers", "2", "1", "400B", "300B (75%)"]
    assert rows[2] == ["Local Volumes", "2", "1", "50B", "0B (0%)"]
    assert rows[3] == ["Build Cache", "1", "0", "70B", "70B"]
    assert diskusage.reclaimable(0, 0) == "0B"


def test_prune_prompt_names_filters() -> None:
    args = argparse.Namespace(volumes=False, all=True)
    text = sysprune.confirmation(args, [("label", "a=b")])
    assert text == (
        "WARNING! This will remove:\n"
        "  - all stopped containers\n"
        "  - all networks not used by at least one container\n"
        "  - all images without at least one container associated to them\n"
        "  - all build cache\n"
        "\n"
        "  Items to be pruned will be filtered with:\n"
        "  - label=a=b\n"
        "\n"
        "Are you sure you want to continue? [y/N] "
    )


def test_metric_descriptors_carry_cadvisor_names_and_labels() -> None:
    described = {d.name: d for d in cri_metrics.list_metric_descriptors().descriptors}
    assert list(described["container_memory_rss"].label_keys) == [
        "container", "id", "image", "name", "namespace", "pod",
    ]  # fmt: skip
    assert described["container_network_transmit_bytes_total"].label_keys[-1] == "interface"
    counters = {m.name for m in cri_metrics.CONTAINER_METRICS if m.type == cri.COUNTER}
    assert "container_cpu_usage_seconds_total" in counters
    assert "container_memory_working_set_bytes" not in counters

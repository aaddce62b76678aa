"""`runtimectl stats`: docker's live table of CPU, memory, network, block I/O and PIDs.

The daemon sends raw counters once a second; the percentages are computed here as
docker's CLI computes them: CPU % is the container's CPU time over the system's
(/proc/stat) between two samples, times the online CPUs; MEM % is usage over limit.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runtimed.cli.client import Client
from runtimed.cli.format import format_rows, human_size
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.humanize import bytes_size

STATS_HEADERS = {
    "Container": "CONTAINER",
    "Name": "NAME",
    "ID": "CONTAINER ID",
    "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT",
    "MemPerc": "MEM %",
    "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O",
    "PIDs": "PIDS",
}
STATS_DEFAULT = "table " + "\t".join(
    f"{{{{.{f}}}}}"
    for f in ("ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs")
)
# docker's way to redraw in place: clear the screen, cursor home.
CLEAR_SCREEN = "\033[2J\033[H"


def cpu_percent(e: pb.ContainerStatsEntry) -> float:
    if not e.running or not e.pre_system_cpu_ns:
        return 0.0
    cpu_delta = e.cpu_total_ns - e.pre_cpu_total_ns  # may fall: an exec'd process ended
    system_delta = e.system_cpu_ns - e.pre_system_cpu_ns
    if cpu_delta <= 0 or system_delta <= 0:
        return 0.0
    return cpu_delta / system_delta * max(1, e.online_cpus) * 100.0


def mem_percent(e: pb.ContainerStatsEntry) -> float:
    return e.memory_usage / e.memory_limit * 100.0 if e.memory_limit else 0.0


def _pair(a: int, b: int) -> str:
    return f"{human_size(a)} / {human_size(b)}"


def stats_row(e: pb.ContainerStatsEntry, given: str, *, trunc: bool) -> dict[str, Any]:
    """What a `stats --format` template sees: docker's stats context fields."""
    ident = e.id[:12] if trunc else e.id
    return {
        "Container": given or ident,
        "Name": e.name,
        "ID": ident,
        "CPUPerc": f"{cpu_percent(e):.2f}%",
        "MemUsage": f"{bytes_size(e.memory_usage)} / {bytes_size(e.memory_limit)}",
        "MemPerc": f"{mem_percent(e):.2f}%",
        "NetIO": _pair(e.net_rx_bytes, e.net_tx_bytes),
        "BlockIO": _pair(e.block_read_bytes, e.block_write_bytes),
        "PIDs": str(e.pids),
    }


def _given_names(named: list[str], batch: pb.ContainerStatsBatch) -> dict[str, str]:
    """The name or id each row was asked by (docker's .Container), by container id."""
    given: dict[str, str] = {}
    for ref in named:
        for e in batch.entries:
            if ref in (e.id, e.name) or (e.id.startswith(ref) and e.id not in given):
                given.setdefault(e.id, ref)
    return given


def cmd_stats(client: Client, args: argparse.Namespace) -> int:
    fmt = args.format or STATS_DEFAULT
    request = pb.ContainerStatsRequest(
        containers=args.containers, all=args.all, stream=not args.no_stream
    )
    redraw = not args.no_stream and sys.stdout.isatty()
    for batch in client.engine.ContainerStats(request):
        given = _given_names(args.containers, batch)
        rows = [stats_row(e, given.get(e.id, ""), trunc=not args.no_trunc) for e in batch.entries]
        text = format_rows(rows, fmt, type_name="formatter.statsContext", headers=STATS_HEADERS)
        if redraw:
            sys.stdout.write(CLEAR_SCREEN)
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
        sys.stdout.flush()
    return 0


def register(sub: argparse._SubParsersAction, container_sub: argparse._SubParsersAction) -> None:
    for parent, name in ((sub, "stats"), (container_sub, "stats")):
        p = parent.add_parser(name, help="show containers' resource usage")
        p.add_argument("containers", nargs="*", metavar="CONTAINER")
        p.add_argument("-a", "--all", action="store_true", help="all containers, not only running")
        p.add_argument("--no-stream", action="store_true", help="one sample, then exit")
        p.add_argument("--no-trunc", action="store_true", help="full container ids")
        p.add_argument("--format", help="a Go template, or json")
        p.set_defaults(func=cmd_stats)

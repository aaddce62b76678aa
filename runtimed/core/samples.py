"""One container's counters as `docker stats` takes them: cumulative CPU time next to
the whole system's (so a client turns two samples into a CPU %), memory without the
reclaimable file cache, the limit, network bytes of its namespace, block I/O, PIDs.

CPU, memory and block I/O come from the stats source (the container's cgroup, or
/proc over its processes); the network from /proc/PID/net/dev of its init, which
is read in the container's own network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from runtimed.core.model import Container
from runtimed.core.procfs import CLOCK_TICKS, parse_kb, parse_net_dev, read_net_dev
from runtimed.core.stats import UsageSource

INTERVAL = 1.0  # seconds between samples, docker's
LOOPBACK = "lo"  # docker counts the container's interfaces to the outside only


@dataclass(frozen=True)
class Sample:
    container_id: str
    timestamp: int  # ns since the epoch
    running: bool
    cpu_ns: int = 0
    system_cpu_ns: int = 0
    online_cpus: int = 0
    memory_usage: int = 0  # the working set: usage minus inactive file cache
    memory_limit: int = 0  # the host's memory where the container has no limit
    net_rx: int = 0
    net_tx: int = 0
    block_read: int = 0
    block_write: int = 0
    pids: int = 0  # tasks, as the pids controller counts them
    source: str = ""  # what measured CPU and memory: "cgroup" | "proc"


def parse_system_cpu(data: bytes) -> int:
    """/proc/stat's first line (all CPUs) in ns: user, nice, system, idle, iowait, irq
    and softirq, the seven fields docker adds up."""
    fields = data.split(b"\n", 1)[0].split()
    if not fields or fields[0] != b"cpu":
        raise ValueError("/proc/stat does not start with the cpu line")
    ticks = sum(int(v) for v in fields[1:8])
    return ticks * 1_000_000_000 // CLOCK_TICKS


def system_cpu_ns() -> int:
    with open("/proc/stat", "rb") as f:
        return parse_system_cpu(f.read())


def host_memory() -> int:
    with open("/proc/meminfo", "rb") as f:
        return parse_kb(f.read(), (b"MemTotal",)).get(b"MemTotal", 0)


def net_totals(data: bytes) -> tuple[int, int]:
    """Received and sent bytes over a namespace's interfaces but loopback."""
    interfaces = [i for i in parse_net_dev(data) if i.name != LOOPBACK]
    return sum(i.rx_bytes for i in interfaces), sum(i.tx_bytes for i in interfaces)


@dataclass(frozen=True)
class HostReading:
    """What a sample compares a container with; read once for all the containers of a
    batch, as dockerd reads it once per collection."""

    system_cpu_ns: int
    online_cpus: int
    memory: int  # the limit of a container that has none of its own


def read_host() -> HostReading:
    return HostReading(system_cpu_ns(), os.sysconf("SC_NPROCESSORS_ONLN"), host_memory())


def sample(
    source: UsageSource,
    container: Container,
    *,
    own_network: bool,
    host: HostReading | None = None,
) -> Sample:
    """Blocking. `own_network`: the container has a network namespace of its own (not
    the host's, not none), whose counters are its NET I/O. `host`: read now if not given."""
    timestamp = time.time_ns()
    counters = source.container(container) if container.running else None
    if counters is None:
        return Sample(container.id, timestamp, running=False)
    if host is None:
        host = read_host()
    rx = tx = 0
    if own_network and container.state.pid:
        with contextlib.suppress(OSError):  # its init ended meanwhile
            rx, tx = net_totals(read_net_dev(container.state.pid))
    return Sample(
        container_id=container.id,
        timestamp=timestamp,
        running=True,
        cpu_ns=counters.cpu_ns,
        system_cpu_ns=host.system_cpu_ns,
        online_cpus=host.online_cpus,
        memory_usage=counters.working_set,
        memory_limit=counters.memory_limit or host.memory,
        net_rx=rx,
        net_tx=tx,
        block_read=counters.io_read_bytes,
        block_write=counters.io_write_bytes,
        pids=counters.threads or counters.processes,
        source=counters.measured_by,
    )


@dataclass(frozen=True)
class Reading:
    container: Container
    now: Sample
    before: Sample | None  # the sample one interval earlier, if it ran then


async def readings(
    source: UsageSource,
    targets: Callable[[], Sequence[Container]],
    own_network: Callable[[Container], bool],
    *,
    stream: bool,
    interval: float = INTERVAL,
) -> AsyncIterator[list[Reading]]:
    """Samples of the containers `targets` names each time, every `interval` seconds,
    each with the one before it, so a client turns the pair into a CPU % as docker's
    CLI does. The first batch comes one interval in; without `stream` it is the only one.
    """

    def measure(containers: Sequence[Container]) -> dict[str, Sample]:
        host = read_host() if containers else None
        return {c.id: sample(source, c, own_network=own_network(c), host=host) for c in containers}

    before: dict[str, Sample] = {}
    first = True
    while True:
        chosen = targets()
        now = await asyncio.to_thread(measure, chosen)
        if not first:
            yield [Reading(c, now[c.id], _ran(before.get(c.id))) for c in chosen]
            if not stream:
                return
        first = False
        before = now
        await asyncio.sleep(interval)


def _ran(previous: Sample | None) -> Sample | None:
    return previous if previous is not None and previous.running else None

"""Resource usage of containers and pods, as plain records any front end can show
(the CRI's ContainerStats and PodSandboxStats; runtimectl stats).

Two parts. A UsageSource reads cumulative CPU time and memory of a container or a
pod. ProcSource is what works without cgroups (no delegated hierarchy): it adds
up /proc over the container's processes. A cgroup source (runtimed.cgroups.source)
reads the container's cgroup instead and slots in behind the same protocol, with a
memory limit (available_bytes) and CPU time that outlives the processes that used
it. StatsService adds what does not depend on the source: the writable layer,
the pod's network counters, and usage_nano_cores, the CPU rate between two samples
it keeps in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from runtimed_shim.host import descendants

from runtimed.core.model import Container, Sandbox
from runtimed.core.procfs import (
    InterfaceUsage,
    container_pids,
    file_identity,
    parse_net_dev,
    read_net_dev,
    read_process,
)
from runtimed.core.sandboxes import NODE
from runtimed.snapshots import Snapshotter, _mount

T = TypeVar("T")

DEFAULT_INTERFACE = "eth0"  # a pod's first network, as kubelet and containerd assume


@dataclass(frozen=True)
class Counters:
    """Cumulative CPU time and memory of a group of processes at one instant."""

    cpu_ns: int = 0
    working_set: int = 0  # bytes that cannot be reclaimed without harm
    usage: int = 0  # all resident bytes
    rss: int = 0  # anonymous resident bytes
    page_faults: int = 0  # minor and major
    major_page_faults: int = 0
    processes: int = 0
    memory_limit: int | None = None  # None: no limit known
    io_read_bytes: int = 0  # block I/O (the cgroup's, or what /proc/PID/io counts)
    io_write_bytes: int = 0
    threads: int = 0  # tasks: what the pids controller counts
    measured_by: str = "proc"  # or "cgroup"

    def __add__(self, other: Counters) -> Counters:
        """Two disjoint groups as one; a sum has no limit of its own."""
        return Counters(
            **{
                f.name: getattr(self, f.name) + getattr(other, f.name)
                for f in dataclasses.fields(self)
                if f.name not in ("memory_limit", "measured_by")
            }
        )


def proc_counters(pids: Iterable[int]) -> Counters:
    """The sum of the processes' /proc counters (those that are gone count nothing).

    working_set is the proportional set size: a page shared by processes is split
    among them, so the sum over a group counts it once. Without cgroups the page
    cache a container filled but no longer maps is not seen.
    """
    total = Counters()
    for pid in pids:
        usage = read_process(pid)
        if usage is None:
            continue
        total += Counters(
            cpu_ns=usage.cpu_ns,
            working_set=usage.pss,
            usage=usage.rss,
            rss=usage.anon,
            page_faults=usage.minor_faults + usage.major_faults,
            major_page_faults=usage.major_faults,
            processes=1,
            threads=usage.threads,
            io_read_bytes=usage.io_read,
            io_write_bytes=usage.io_write,
        )
    return total


class UsageSource(Protocol):
    """Where CPU time and memory come from: /proc (ProcSource), or the container's
    cgroup (runtimed.cgroups.source.CgroupSource)."""

    name: str

    def container(self, container: Container) -> Counters | None:
        """Blocking. None when nothing of the container runs."""
        ...

    def pod(self, sandbox: Sandbox, containers: Sequence[Counters]) -> Counters | None:
        """Blocking. The pod as a whole; `containers` are what container() gave for its
        running containers (a source without a view of the pod adds them up)."""
        ...


class ProcSource:
    """Sums /proc over processes. CPU time goes with a process that ends, unless a
    parent inside the container reaps it (the parent's counters then keep it): a
    container's cumulative CPU time may fall when an exec'd process ends."""

    name = "proc"

    def __init__(self, infra_pid: Callable[[Sandbox], int | None]) -> None:
        self._infra_pid = infra_pid

    def container(self, container: Container) -> Counters | None:
        if not container.running or not container.state.pid:
            return None
        try:
            pids = container_pids(container.state.pid, container.config.pid_mode)
        except OSError:
            return None  # its init ended meanwhile
        counters = proc_counters(pids)
        return counters if counters.processes else None

    def pod(self, sandbox: Sandbox, containers: Sequence[Counters]) -> Counters | None:
        total = sum(containers, Counters())
        # The infra process, and the orphans of the pod's pid namespace that it adopted.
        infra = self._infra_pid(sandbox)
        if infra is not None:
            total += proc_counters([infra, *descendants(infra, living=True)])
        return total if total.processes else None


@dataclass(frozen=True)
class CpuStats:
    usage_core_ns: int  # cumulative
    usage_nano_cores: int | None  # the rate since the previous sample; None before one


@dataclass(frozen=True)
class MemoryStats:
    working_set_bytes: int
    usage_bytes: int
    rss_bytes: int
    page_faults: int
    major_page_faults: int
    available_bytes: int | None  # the limit minus the working set; None without a limit


@dataclass(frozen=True)
class FilesystemStats:
    mountpoint: str  # of the filesystem holding the layer
    used_bytes: int  # allocated on disk, as ImageFsInfo counts (and du)
    inodes_used: int


@dataclass(frozen=True)
class NetworkStats:
    interfaces: tuple[InterfaceUsage, ...]

    @property
    def default_interface(self) -> InterfaceUsage | None:
        return next((i for i in self.interfaces if i.name == DEFAULT_INTERFACE), None)

    @property
    def other_interfaces(self) -> tuple[InterfaceUsage, ...]:
        return tuple(i for i in self.interfaces if i.name != DEFAULT_INTERFACE)


@dataclass(frozen=True)
class ContainerStats:
    container_id: str
    timestamp: int  # ns since the epoch, when CPU and memory were read
    cpu: CpuStats | None  # None: not running
    memory: MemoryStats | None
    writable_layer: FilesystemStats | None
    processes: int
    counters: Counters | None = None  # what cpu and memory were made from; None: not running


@dataclass(frozen=True)
class PodStats:
    sandbox_id: str
    timestamp: int
    cpu: CpuStats | None  # None: nothing of the pod runs
    memory: MemoryStats | None
    network: NetworkStats | None  # None: host network, or not readable
    processes: int
    containers: tuple[ContainerStats, ...]


class CpuRates:
    """usage_nano_cores from two samples of cumulative CPU time, per container or pod.

    /proc counts CPU time in clock ticks (10 ms): over a few milliseconds a rate
    would be noise. A sample closer than `min_window_ns` to the one the rate is
    measured from answers with the last rate instead. Entries not sampled for
    `forget_after_ns` are dropped, so removed containers do not pile up.
    """

    def __init__(
        self, min_window_ns: int = 1_000_000_000, forget_after_ns: int = 600_000_000_000
    ) -> None:
        self.min_window_ns = min_window_ns
        self.forget_after_ns = forget_after_ns
        # key -> (timestamp, cpu_ns) of the base sample, the last rate, the last sample time
        self._base: dict[str, tuple[int, int]] = {}
        self._rate: dict[str, int | None] = {}
        self._seen: dict[str, int] = {}

    def update(self, key: str, timestamp: int, cpu_ns: int) -> int | None:
        self._forget(timestamp)
        self._seen[key] = timestamp
        base = self._base.get(key)
        if base is None:
            self._base[key] = (timestamp, cpu_ns)
            self._rate[key] = None
            return None
        elapsed = timestamp - base[0]
        if elapsed <= 0 or elapsed < self.min_window_ns:
            return self._rate[key]
        # A fall (a process ended, taking its CPU time along) is no negative use.
        rate = max(0, cpu_ns - base[1]) * 1_000_000_000 // elapsed
        self._base[key] = (timestamp, cpu_ns)
        self._rate[key] = rate
        return rate

    def _forget(self, now: int) -> None:
        for key in [k for k, seen in self._seen.items() if now - seen > self.forget_after_ns]:
            del self._seen[key], self._base[key], self._rate[key]


class NetnsRunner(Protocol):
    """runtimed.network.netns.NetnsWorker: the one thread that enters our namespaces."""

    home: Path | None

    async def run(self, fn: Callable[..., T], *args: object) -> T: ...

    def inside(self, path: str | Path) -> contextlib.AbstractContextManager[None]: ...


def mountpoint(path: Path) -> str:
    """The mount point of the filesystem holding `path` (`df`'s "Mounted on")."""
    real = os.path.realpath(path)
    holders = [
        m for m in _mount.mount_points() if real == m or real.startswith(m.rstrip("/") + "/")
    ]
    return max(holders, key=len, default="/")


class StatsService:
    def __init__(
        self,
        *,
        source: UsageSource,
        snapshotter: Snapshotter,
        layer_root: Path,
        netns: NetnsRunner | None = None,
        rates: CpuRates | None = None,
    ) -> None:
        self.source = source
        self.snapshotter = snapshotter
        self.layer_root = layer_root
        self.netns = netns
        self.rates = rates or CpuRates()
        self._mountpoint: str | None = None

    async def container(self, container: Container) -> ContainerStats:
        return (await self._container(container))[0]

    async def pod(self, sandbox: Sandbox, containers: Sequence[Container]) -> PodStats:
        measured = [await self._container(c) for c in containers]
        running = [counters for _, counters in measured if counters is not None]
        timestamp = time.time_ns()
        counters = await asyncio.to_thread(self.source.pod, sandbox, running)
        cpu, memory = self._cpu_memory(sandbox.id, timestamp, counters)
        return PodStats(
            sandbox_id=sandbox.id,
            timestamp=timestamp,
            cpu=cpu,
            memory=memory,
            network=await self._network(sandbox, containers),
            processes=counters.processes if counters else 0,
            containers=tuple(stats for stats, _ in measured),
        )

    async def _container(self, container: Container) -> tuple[ContainerStats, Counters | None]:
        timestamp = time.time_ns()
        counters = await asyncio.to_thread(self.source.container, container)
        cpu, memory = self._cpu_memory(container.id, timestamp, counters)
        stats = ContainerStats(
            container_id=container.id,
            timestamp=timestamp,
            cpu=cpu,
            memory=memory,
            writable_layer=await asyncio.to_thread(self._writable_layer, container),
            processes=counters.processes if counters else 0,
            counters=counters,
        )
        return stats, counters

    def _cpu_memory(
        self, key: str, timestamp: int, counters: Counters | None
    ) -> tuple[CpuStats | None, MemoryStats | None]:
        if counters is None:
            return None, None
        cpu = CpuStats(counters.cpu_ns, self.rates.update(key, timestamp, counters.cpu_ns))
        limit = counters.memory_limit
        memory = MemoryStats(
            working_set_bytes=counters.working_set,
            usage_bytes=counters.usage,
            rss_bytes=counters.rss,
            page_faults=counters.page_faults,
            major_page_faults=counters.major_page_faults,
            available_bytes=None if limit is None else max(0, limit - counters.working_set),
        )
        return cpu, memory

    def _writable_layer(self, container: Container) -> FilesystemStats:
        if self._mountpoint is None:
            self._mountpoint = mountpoint(self.layer_root)
        usage = self.snapshotter.usage(container.id)
        return FilesystemStats(self._mountpoint, usage.allocated, usage.inodes)

    async def _network(
        self, sandbox: Sandbox, containers: Sequence[Container]
    ) -> NetworkStats | None:
        if sandbox.config.namespace_options.get("network") == NODE or not sandbox.config.ns_dir:
            return None  # a host-network pod has no network of its own
        pin = Path(sandbox.config.ns_dir) / "net"
        members = [c.state.pid for c in containers if c.running and c.state.pid]
        data = await asyncio.to_thread(_net_dev_of_member, pin, members)
        if data is None and self.netns is not None and self.netns.home is not None:
            # Nothing runs in the pod: read inside its pinned namespace.
            data = await self.netns.run(_net_dev_inside, self.netns, pin)
        if data is None:
            return None
        return NetworkStats(tuple(parse_net_dev(data)))


def _net_dev_of_member(pin: Path, pids: Sequence[int]) -> bytes | None:
    """/proc/PID/net/dev of a process in the namespace pinned at `pin`, if one runs."""
    try:
        wanted = file_identity(pin)
    except OSError:
        return None
    for pid in pids:
        try:
            if file_identity(f"/proc/{pid}/ns/net") == wanted:
                return read_net_dev(pid)
        except OSError:
            continue
    return None


def _net_dev_inside(runner: NetnsRunner, pin: Path) -> bytes | None:  # on the netns thread
    try:
        with runner.inside(pin):
            return read_net_dev()
    except OSError:
        return None  # no namespace pinned there (any more)

"""A container's processes and what /proc says they use: CPU time, memory, faults, and
the network counters of a namespace. Plain parsing, no policy; see core/stats.py."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from runtimed_shim.host import descendants, parent

from runtimed.core.model import PID_HOST

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of utime and stime in /proc/PID/stat
_KB = 1024


def _pid_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def container_pids(init_pid: int, pid_mode: str = "") -> set[int]:
    """The living processes of a container: those below its shim (the init's parent once
    crun is done, and the parent of every exec'd process), in the init's pid namespace.

    The namespace test leaves out `crun exec` itself, and nothing of another container
    is below our shim even where the namespace is shared (a pod's, another
    container's). In the host's namespace (pid mode host) every process below the shim
    is the container's: the init's orphans come to the shim, its subreaper.
    """
    below = descendants(parent(init_pid), living=True)
    if pid_mode == PID_HOST:
        return set(below)
    target = _pid_namespace(init_pid)
    pids = set()
    for pid in below:
        try:
            if _pid_namespace(pid) == target:
                pids.add(pid)
        except OSError:
            continue  # ended meanwhile
    return pids


@dataclass(frozen=True)
class ProcessUsage:
    """One process's counters. CPU time and faults include those of the children it has
    waited for (they are gone from /proc; their parent's counters keep them)."""

    cpu_ns: int
    minor_faults: int
    major_faults: int
    rss: int  # resident bytes: anonymous, file-backed and shared memory
    anon: int  # resident anonymous bytes
    pss: int  # resident bytes, each page shared by n processes counted 1/n
    threads: int = 1
    io_read: int = 0  # bytes it had read from / written to storage (/proc/PID/io)
    io_write: int = 0


@dataclass(frozen=True)
class StatFields:
    state: bytes
    cpu_ticks: int  # utime + stime + cutime + cstime
    minor_faults: int  # minflt + cminflt
    major_faults: int  # majflt + cmajflt
    threads: int = 1  # num_threads


def parse_stat(data: bytes) -> StatFields:
    """/proc/PID/stat (proc(5)); the command name may hold spaces and parentheses."""
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state) of proc(5): field n is fields[n - 3].
    minflt, cminflt, majflt, cmajflt = (int(fields[i]) for i in (7, 8, 9, 10))
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return StatFields(
        state=fields[0],
        cpu_ticks=utime + stime + cutime + cstime,
        minor_faults=minflt + cminflt,
        major_faults=majflt + cmajflt,
        threads=int(fields[17]),
    )


def parse_kb(data: bytes, names: Iterable[bytes]) -> dict[bytes, int]:
    """`Name:   123 kB` lines (/proc/PID/status, smaps_rollup) as bytes, for `names`."""
    wanted = set(names)
    found: dict[bytes, int] = {}
    for line in data.splitlines():
        name, _, rest = line.partition(b":")
        if name in wanted:
            value = rest.split()
            found[name] = int(value[0]) * (_KB if value[1:] == [b"kB"] else 1)
    return found


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _memory(pid: int) -> tuple[int, int, int]:
    """(rss, anon, pss) bytes. smaps_rollup walks the page tables: exact. /proc/PID/status
    has the kernel's running counters, which lag by up to a batch of pages per CPU: the
    fallback for a kernel without smaps_rollup, or a process not ours to inspect."""
    try:
        rollup = parse_kb(_read(f"/proc/{pid}/smaps_rollup"), (b"Rss", b"Pss", b"Anonymous"))
        return rollup[b"Rss"], rollup[b"Anonymous"], rollup[b"Pss"]
    except (OSError, ValueError, IndexError, KeyError):
        pass
    status = parse_kb(_read(f"/proc/{pid}/status"), (b"VmRSS", b"RssAnon"))
    rss = status.get(b"VmRSS", 0)
    return rss, status.get(b"RssAnon", 0), rss


def read_process(pid: int) -> ProcessUsage | None:
    """None for a process that is gone or a zombie (it holds no memory, and its CPU time
    passes to its parent's counters once reaped)."""
    try:
        stat = parse_stat(_read(f"/proc/{pid}/stat"))
        if stat.state == b"Z":
            return None
        rss, anon, pss = _memory(pid)
    except (OSError, ValueError, IndexError):
        return None
    io_read, io_write = _io(pid)
    return ProcessUsage(
        cpu_ns=stat.cpu_ticks * 1_000_000_000 // CLOCK_TICKS,
        minor_faults=stat.minor_faults,
        major_faults=stat.major_faults,
        rss=rss,
        anon=anon,
        pss=pss,
        threads=stat.threads,
        io_read=io_read,
        io_write=io_write,
    )


def _io(pid: int) -> tuple[int, int]:
    """(read, written) bytes that reached storage; (0, 0) where /proc/PID/io is not ours
    to read (another user namespace's process)."""
    try:
        fields = dict(line.split(b": ", 1) for line in _read(f"/proc/{pid}/io").splitlines())
        return int(fields[b"read_bytes"]), int(fields[b"write_bytes"])
    except (OSError, ValueError, KeyError):
        return 0, 0


@dataclass(frozen=True)
class InterfaceUsage:
    """Cumulative counters of one network interface (/proc/net/dev)."""

    name: str
    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int


def parse_net_dev(data: bytes) -> list[InterfaceUsage]:
    """/proc/net/dev: two header lines, then `name: 8 receive and 8 transmit columns`."""
    found = []
    for line in data.splitlines()[2:]:
        name, sep, rest = line.partition(b":")
        if not sep:
            continue
        cols = [int(v) for v in rest.split()]
        if len(cols) < 16:
            continue
        found.append(
            InterfaceUsage(
                name=name.strip().decode(),
                rx_bytes=cols[0],
                rx_packets=cols[1],
                rx_errors=cols[2],
                rx_dropped=cols[3],
                tx_bytes=cols[8],
                tx_packets=cols[9],
                tx_errors=cols[10],
                tx_dropped=cols[11],
            )
        )
    return found


def read_net_dev(pid: int | None = None) -> bytes:
    """/proc/net/dev of `pid`'s network namespace, or of the calling thread's."""
    return _read(f"/proc/{pid}/net/dev" if pid else "/proc/thread-self/net/dev")


def file_identity(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(device, inode): for a namespace (/proc/PID/ns/net, or a file it is pinned on),
    which one it is. OSError when the path is gone."""
    st = os.stat(path)
    return st.st_dev, st.st_ino

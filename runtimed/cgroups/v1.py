"""cgroup v1: a directory per controller; limits in their v1 file names, usage read back."""

from __future__ import annotations

import contextlib
from pathlib import Path

from runtimed.cgroups import files
from runtimed.cgroups.resources import DEFAULT_CPU_PERIOD, Resources
from runtimed.cgroups.usage import Usage
from runtimed.errors import FailedPrecondition

UNLIMITED = 1 << 62  # the kernel reports "no limit" as a page-rounded LONG_MAX
_THROTTLES = (
    ("device_read_bps", "blkio.throttle.read_bps_device"),
    ("device_write_bps", "blkio.throttle.write_bps_device"),
    ("device_read_iops", "blkio.throttle.read_iops_device"),
    ("device_write_iops", "blkio.throttle.write_iops_device"),
)


def init_cpuset(directory: Path) -> None:
    """A new cpuset cgroup is empty and takes no process: start it with its parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not files.read(directory / name):
            files.write(directory / name, files.read(directory.parent / name) or "")


def blkio_weight_file(directory: Path) -> str | None:
    """blkio.weight (CFQ) or blkio.bfq.weight (BFQ); None when no scheduler weighs."""
    for name in ("blkio.weight", "blkio.bfq.weight"):
        if (directory / name).exists():
            return name
    return None


def apply(dirs: dict[str, Path], res: Resources) -> None:
    """Write every limit `res` sets into the container's cgroups (create and update)."""
    if "memory" in dirs:
        _memory(dirs["memory"], res)
    if "cpu" in dirs:
        _cpu(dirs["cpu"], res)
    if "cpuset" in dirs:
        cpuset = dirs["cpuset"]
        if res.cpuset_cpus:
            files.write(cpuset / "cpuset.cpus", res.cpuset_cpus)
        if res.cpuset_mems:
            files.write(cpuset / "cpuset.mems", res.cpuset_mems)
    if "blkio" in dirs:
        _blkio(dirs["blkio"], res)
    if "pids" in dirs and res.pids_limit:
        files.write(dirs["pids"] / "pids.max", res.pids_limit if res.pids_limit > 0 else "max")
    if "hugetlb" in dirs:
        for size, limit in res.hugepage_limits.items():
            files.write(dirs["hugetlb"] / f"hugetlb.{size}.limit_in_bytes", limit)


def _memory(directory: Path, res: Resources) -> None:
    limit, swap = res.memory, res.swap_limit()
    memsw = directory / "memory.memsw.limit_in_bytes"
    if limit:
        if swap and memsw.exists():
            # memory <= memory+swap at every instant: which goes first depends on the way.
            try:
                files.write(directory / "memory.limit_in_bytes", limit)
                files.write(memsw, swap)
            except FailedPrecondition:
                files.write(memsw, swap)
                files.write(directory / "memory.limit_in_bytes", limit)
        else:
            files.write(directory / "memory.limit_in_bytes", limit)
    if res.memory_reservation:
        files.write(directory / "memory.soft_limit_in_bytes", res.memory_reservation)
    if res.oom_kill_disable:
        files.write(directory / "memory.oom_control", 1)


def _cpu(directory: Path, res: Resources) -> None:
    if res.cpu_shares:
        files.write(directory / "cpu.shares", res.cpu_shares)
    if res.nano_cpus:
        period = DEFAULT_CPU_PERIOD
        quota = res.nano_cpus * period // 1_000_000_000
    else:
        period, quota = res.cpu_period, res.cpu_quota
    if period:
        files.write(directory / "cpu.cfs_period_us", period)
    if quota:
        files.write(directory / "cpu.cfs_quota_us", quota if quota > 0 else -1)


def _blkio(directory: Path, res: Resources) -> None:
    weight_file = blkio_weight_file(directory)
    if weight_file is not None:
        if res.blkio_weight:
            files.write(directory / weight_file, res.blkio_weight)
        for dev in res.blkio_weight_device:
            files.write(directory / f"{weight_file}_device", f"{dev.number} {dev.value}")
    for attr, name in _THROTTLES:
        for dev in getattr(res, attr):
            files.write(directory / name, f"{dev.number} {dev.value}")


def freezer_file(directory: Path) -> Path:
    return directory / "freezer.state"


def usage(dirs: dict[str, Path]) -> Usage | None:
    """What the container's cgroups counted; None when its memory cgroup is gone."""
    memory = dirs.get("memory")
    if memory is None or not memory.is_dir():
        return None
    stat = files.read_keyed(memory / "memory.stat")
    used = files.read_int(memory / "memory.usage_in_bytes") or 0
    limit = files.read_int(memory / "memory.limit_in_bytes")
    cpu = dirs.get("cpuacct")
    read_bytes = write_bytes = 0
    if "blkio" in dirs:
        read_bytes, write_bytes = _io_bytes(dirs["blkio"])
    return Usage(
        cpu_ns=(files.read_int(cpu / "cpuacct.usage") or 0) if cpu else 0,
        memory_usage=used,
        working_set=max(0, used - stat.get("total_inactive_file", 0)),
        rss=stat.get("total_rss", 0),
        page_faults=stat.get("total_pgfault", 0),
        major_page_faults=stat.get("total_pgmajfault", 0),
        memory_limit=None if limit is None or limit >= UNLIMITED else limit,
        processes=files.count_lines(memory / "cgroup.procs"),
        pids=(files.read_int(dirs["pids"] / "pids.current") or 0) if "pids" in dirs else 0,
        blkio_read=read_bytes,
        blkio_write=write_bytes,
    )


def _io_bytes(directory: Path) -> tuple[int, int]:
    read_bytes = write_bytes = 0
    with contextlib.suppress(OSError):
        for line in (
            (directory / "blkio.throttle.io_service_bytes_recursive").read_text().split("\n")
        ):
            parts = line.split()
            if len(parts) == 3 and parts[2].isdigit():
                if parts[1] == "Read":
                    read_bytes += int(parts[2])
                elif parts[1] == "Write":
                    write_bytes += int(parts[2])
    return read_bytes, write_bytes

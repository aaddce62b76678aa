"""cgroup v2: one directory per container, controllers enabled from the delegated root
down, limits in their v2 file names.

The unified hierarchy forbids processes in a cgroup whose children have controllers
enabled ("no internal processes"), so the daemon moves itself (and with it the shim
launcher and shims it forks) into a leaf of its own, `<base>/daemon`, before it
enables controllers in `cgroup.subtree_control` of the delegated root and of `<base>`.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import structlog

from runtimed.cgroups import files
from runtimed.cgroups.hierarchy import HOW_TO_DELEGATE, Hierarchy, writable
from runtimed.cgroups.resources import DEFAULT_CPU_PERIOD, Resources
from runtimed.cgroups.usage import Usage
from runtimed.errors import FailedPrecondition

log = structlog.get_logger(__name__)

WANTED = ("cpu", "cpuset", "memory", "io", "pids", "hugetlb")
DAEMON_LEAF = "daemon"
_USER_SERVICE = re.compile(r"^(.*/user@(\d+)\.service)(/|$)")


def delegated_root(mount: Path, own: str, uid: int) -> Path | None:
    """The user's systemd delegation (user@UID.service) above `own`, else `own` itself,
    if we may write it."""
    match = _USER_SERVICE.match(own)
    candidates = []
    if match and int(match.group(2)) == uid:
        candidates.append(mount / match.group(1).lstrip("/"))
    candidates.append(mount / own.lstrip("/"))
    return next((c for c in candidates if c.is_dir() and writable(c)), None)


def detect(mount: Path, own: str, uid: int) -> Hierarchy:
    root = delegated_root(mount, own, uid)
    if root is None:
        return Hierarchy(2, {}, f"no writable cgroup v2 subtree for uid {uid}: {HOW_TO_DELEGATE}")
    available = (files.read(root / "cgroup.controllers") or "").split()
    roots = {name: root for name in WANTED if name in available}
    roots["freezer"] = root  # cgroup.freeze is in every v2 cgroup
    return Hierarchy(2, roots)


def enter_leaf(root: Path, base: str, pid: int) -> Path:
    """Make `<root>/<base>/daemon` and move `pid` there; returns the leaf."""
    leaf = root / base / DAEMON_LEAF
    leaf.mkdir(parents=True, exist_ok=True)
    files.write(leaf / "cgroup.procs", pid)
    return leaf


def enable_controllers(hierarchy: Hierarchy, base: str) -> Hierarchy:
    """Enable what we use for the children of the root and of `<base>`; a controller the
    kernel refuses (processes still in the root) is left out, and said so."""
    if not hierarchy.roots:
        return hierarchy
    root = next(iter(hierarchy.roots.values()))
    kept = dict(hierarchy.roots)
    for name in [n for n in kept if n in WANTED]:
        try:
            for directory in (root, root / base):
                files.write(directory / "cgroup.subtree_control", f"+{name}")
        except FailedPrecondition as exc:
            log.warning("cgroup_controller_unavailable", controller=name, error=exc.message)
            del kept[name]
    return Hierarchy(2, kept, hierarchy.reason)


def enable_below(directory: Path, stop: Path, controllers: list[str]) -> None:
    """Controllers on for the children of every level from `stop` (excluded) down to
    `directory`'s parent: each container's own directory gets its limit files."""
    chain = []
    parent = directory.parent
    while parent != stop and stop in parent.parents:
        chain.append(parent)
        parent = parent.parent
    for level in reversed(chain):
        for name in controllers:
            if name in WANTED:
                files.write(level / "cgroup.subtree_control", f"+{name}")


def cpu_weight(shares: int) -> int:
    """cpu.shares (2..262144) to cpu.weight (1..10000), as runc and crun convert it."""
    return 1 + ((shares - 2) * 9999) // 262142


def apply(directory: Path, res: Resources, controllers: list[str]) -> None:
    def has(name: str) -> bool:
        return name in controllers

    if has("memory"):
        if res.memory:
            files.write(directory / "memory.max", res.memory)
            swap = res.swap_limit()
            if swap and (directory / "memory.swap.max").exists():
                # v2 counts swap alone; v1 (and Docker's flag) count memory + swap.
                files.write(directory / "memory.swap.max", "max" if swap < 0 else swap - res.memory)
        if res.memory_reservation:
            files.write(directory / "memory.low", res.memory_reservation)
    if has("cpu"):
        if res.cpu_shares:
            files.write(directory / "cpu.weight", cpu_weight(res.cpu_shares))
        if res.nano_cpus:
            period = DEFAULT_CPU_PERIOD
            files.write(
                directory / "cpu.max", f"{res.nano_cpus * period // 1_000_000_000} {period}"
            )
        elif res.cpu_quota or res.cpu_period:
            quota = str(res.cpu_quota) if res.cpu_quota > 0 else "max"
            files.write(directory / "cpu.max", f"{quota} {res.cpu_period or DEFAULT_CPU_PERIOD}")
    if has("cpuset"):
        if res.cpuset_cpus:
            files.write(directory / "cpuset.cpus", res.cpuset_cpus)
        if res.cpuset_mems:
            files.write(directory / "cpuset.mems", res.cpuset_mems)
    if has("io"):
        if res.blkio_weight:
            files.write(directory / "io.weight", f"default {res.blkio_weight}")
        for dev in res.blkio_weight_device:
            files.write(directory / "io.weight", f"{dev.number} {dev.value}")
        for line in io_max_lines(res):
            files.write(directory / "io.max", line)
    if has("pids") and res.pids_limit:
        files.write(directory / "pids.max", res.pids_limit if res.pids_limit > 0 else "max")
    if has("hugetlb"):
        for size, limit in res.hugepage_limits.items():
            files.write(directory / f"hugetlb.{size}.max", limit)
    for name, value in res.unified.items():
        if "/" in name or name.startswith("."):
            raise FailedPrecondition(f"unified cgroup file {name!r} is not a file name")
        files.write(directory / name, value)


def io_max_lines(res: Resources) -> list[str]:
    """One `MAJ:MIN rbps=.. wbps=.. riops=.. wiops=..` line per device."""
    keys = (
        ("device_read_bps", "rbps"),
        ("device_write_bps", "wbps"),
        ("device_read_iops", "riops"),
        ("device_write_iops", "wiops"),
    )
    lines: dict[str, list[str]] = {}
    for attr, key in keys:
        for dev in getattr(res, attr):
            lines.setdefault(dev.number, []).append(f"{key}={dev.value}")
    return [f"{number} {' '.join(parts)}" for number, parts in lines.items()]


def freezer_file(directory: Path) -> Path:
    return directory / "cgroup.freeze"


def usage(directory: Path) -> Usage | None:
    if not directory.is_dir():
        return None
    stat = files.read_keyed(directory / "memory.stat")
    used = files.read_int(directory / "memory.current") or 0
    limit = files.read(directory / "memory.max")
    read_bytes = write_bytes = 0
    with contextlib.suppress(OSError):
        for line in (directory / "io.stat").read_text().splitlines():
            fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
            read_bytes += int(fields.get("rbytes", 0))
            write_bytes += int(fields.get("wbytes", 0))
    return Usage(
        cpu_ns=files.read_keyed(directory / "cpu.stat").get("usage_usec", 0) * 1000,
        memory_usage=used,
        working_set=max(0, used - stat.get("inactive_file", 0)),
        rss=stat.get("anon", 0),
        page_faults=stat.get("pgfault", 0),
        major_page_faults=stat.get("pgmajfault", 0),
        memory_limit=int(limit) if limit and limit.isdigit() else None,
        processes=files.count_lines(directory / "cgroup.procs"),
        pids=files.read_int(directory / "pids.current") or 0,
        blkio_read=read_bytes,
        blkio_write=write_bytes,
    )

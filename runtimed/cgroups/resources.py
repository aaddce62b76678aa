"""What a container may use: Docker's HostConfig resources and the CRI's
LinuxContainerResources in one record, checked with Docker's error texts.

Stored with the container (`config.extras["resources"]`, JSON); the cgroup
writers (v1.py, v2.py) turn it into files. Devices are kept by path and by the
major:minor found when the container was made.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from runtimed.errors import InvalidArgument

EXTRAS_KEY = "resources"
MIN_MEMORY = 6 * 1024 * 1024  # Docker's floor (linuxMinMemory)
MIN_CPU_SHARES, MAX_CPU_SHARES = 2, 262144
DEFAULT_CPU_PERIOD = 100_000  # µs, the kernel's and Docker's
DEFAULT_SHM_SIZE = 64 * 1024 * 1024


@dataclass
class DeviceLimit:
    """A weight or a rate for one block device."""

    path: str
    value: int
    major: int = 0
    minor: int = 0

    @property
    def number(self) -> str:
        return f"{self.major}:{self.minor}"


# The device lists, by their Docker HostConfig names' snake case.
DEVICE_FIELDS = (
    "blkio_weight_device",
    "device_read_bps",
    "device_write_bps",
    "device_read_iops",
    "device_write_iops",
)


@dataclass
class Resources:
    memory: int = 0  # bytes; 0: no limit
    memory_swap: int = 0  # memory + swap; -1: unlimited swap; 0: Docker's default (2x memory)
    memory_reservation: int = 0
    oom_kill_disable: bool = False
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0  # µs
    cpu_quota: int = 0  # µs per period; -1 or 0: none
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    blkio_weight: int = 0
    blkio_weight_device: list[DeviceLimit] = field(default_factory=list)
    device_read_bps: list[DeviceLimit] = field(default_factory=list)
    device_write_bps: list[DeviceLimit] = field(default_factory=list)
    device_read_iops: list[DeviceLimit] = field(default_factory=list)
    device_write_iops: list[DeviceLimit] = field(default_factory=list)
    pids_limit: int = 0  # 0 or -1: unlimited
    hugepage_limits: dict[str, int] = field(default_factory=dict)  # "2MB" -> bytes (CRI)
    unified: dict[str, str] = field(default_factory=dict)  # cgroup v2 files (CRI)
    # Not cgroup files, kept here as Docker keeps them in HostConfig.
    ulimits: list[tuple[str, int, int]] = field(default_factory=list)  # (name, soft, hard)
    shm_size: int = 0  # 0: the default 64 MiB
    oom_score_adj: int | None = None  # CRI
    cgroup_parent: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Resources:
        data = dict(data or {})
        for name in DEVICE_FIELDS:
            data[name] = [DeviceLimit(**d) for d in data.get(name) or []]
        data["ulimits"] = [tuple(u) for u in data.get("ulimits") or []]
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def limits_cgroups(self) -> bool:
        """Whether anything here is a cgroup limit (ulimits, shm and the OOM score are not)."""
        skip = {"ulimits", "shm_size", "oom_score_adj", "cgroup_parent"}
        base = Resources()
        return any(
            getattr(self, f.name) != getattr(base, f.name)
            for f in dataclasses.fields(self)
            if f.name not in skip
        ) or bool(self.cgroup_parent)

    def swap_limit(self) -> int:
        """memory + swap as the kernel takes it: -1 unlimited, 0 none set."""
        if self.memory_swap:
            return self.memory_swap
        return 2 * self.memory if self.memory else 0


def device_number(path: str) -> tuple[int, int]:
    """major, minor of a block device (Docker's error when it is not one)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidArgument(
            f"error gathering device information while adding custom device {path!r}: "
            f"{(exc.strerror or str(exc)).lower()}"
        ) from None
    if not stat.S_ISBLK(st.st_mode):
        raise InvalidArgument(f"{path} is not a block device")
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def resolve_devices(res: Resources) -> None:
    """Fill in major:minor of every device named (stat in the daemon)."""
    for name in DEVICE_FIELDS:
        for dev in getattr(res, name):
            dev.major, dev.minor = device_number(dev.path)


def _cpu_list(text: str) -> set[int]:
    """A cpuset list (`0-2,4`) as numbers; ValueError when malformed."""
    out: set[int] = set()
    for part in text.split(","):
        first, sep, last = part.partition("-")
        lo = int(first)
        hi = int(last) if sep else lo
        if lo < 0 or hi < lo:
            raise ValueError(text)
        out.update(range(lo, hi + 1))
    return out


def check_cpuset(value: str, available: str, what: str) -> None:
    """Docker's checks of --cpuset-cpus / --cpuset-mems against what the parent has."""
    if not value:
        return
    label = "cpus" if what == "cpus" else "mems"
    try:
        wanted = _cpu_list(value)
    except ValueError:
        raise InvalidArgument(f"Invalid value {value} for cpuset {label}") from None
    if available and not wanted <= _cpu_list(available):
        kind = "CPUs" if what == "cpus" else "memory nodes"
        raise InvalidArgument(
            f"Requested {kind} are not available - requested {value}, available: {available}"
        )


def check(res: Resources, *, ncpu: int) -> list[str]:
    """Refuse what Docker refuses (InvalidArgument, its texts); return its warnings.
    Normalises in place as Docker does (cpu-shares clamped, kernel memory dropped)."""
    warnings: list[str] = []
    if res.memory < 0:
        raise InvalidArgument("Invalid memory limit: negative values are not allowed")
    if 0 < res.memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if res.memory_swap > 0 and not res.memory:
        raise InvalidArgument(
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        )
    if res.memory and res.memory_swap > 0 and res.memory_swap < res.memory:
        raise InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if res.memory_swap < -1:
        raise InvalidArgument("Invalid memory swap limit: use -1 for unlimited swap")
    if 0 < res.memory_reservation < MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if res.memory and res.memory_reservation and res.memory < res.memory_reservation:
        raise InvalidArgument(
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        )
    if res.oom_kill_disable and not res.memory:
        warnings.append(
            "OOM killer is disabled for the container, but no memory limit is set, "
            "this can result in the system running out of resources."
        )
    if res.nano_cpus and res.cpu_period:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if res.nano_cpus and res.cpu_quota:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if res.nano_cpus < 0 or res.nano_cpus > ncpu * 1_000_000_000:
        raise InvalidArgument(
            f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )
    if res.cpu_period and not 1000 <= res.cpu_period <= 1_000_000:
        raise InvalidArgument(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if 0 < res.cpu_quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if res.cpu_shares < 0:
        raise InvalidArgument("Invalid CPU shares: negative values are not allowed")
    if 0 < res.cpu_shares < MIN_CPU_SHARES:
        warnings.append(
            f"Changing requested CPUShares of {res.cpu_shares} to minimum allowed of "
            f"{MIN_CPU_SHARES}"
        )
        res.cpu_shares = MIN_CPU_SHARES
    if res.cpu_shares > MAX_CPU_SHARES:
        warnings.append(
            f"Changing requested CPUShares of {res.cpu_shares} to maximum allowed of "
            f"{MAX_CPU_SHARES}"
        )
        res.cpu_shares = MAX_CPU_SHARES
    if res.blkio_weight and not 10 <= res.blkio_weight <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    for dev in res.blkio_weight_device:
        if dev.value and not 10 <= dev.value <= 1000:
            raise InvalidArgument(f"invalid weight for device: {dev.path}:{dev.value}")
    for name in DEVICE_FIELDS[1:]:
        for dev in getattr(res, name):
            if dev.value < 0:
                raise InvalidArgument(f"invalid rate for device: {dev.path}:{dev.value}")
    if res.shm_size < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    if res.cgroup_parent:
        parts = res.cgroup_parent.strip("/").split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise InvalidArgument(
                f"invalid cgroup parent {res.cgroup_parent!r}: a path of plain names "
                "(below the runtime's own cgroup)"
            )
    return warnings


def merge_update(current: Resources, change: Resources, *, pids_set: bool) -> Resources:
    """`docker update`: a field given (non-zero) replaces the stored one; the rest stays.
    The pids limit is replaced when `pids_set` (0 and -1 both lift it)."""
    merged = Resources.from_dict(current.to_dict())
    for f in dataclasses.fields(Resources):
        if f.name in ("ulimits", "shm_size", "cgroup_parent", "pids_limit"):
            continue
        value = getattr(change, f.name)
        if value not in (0, "", None, False, [], {}):
            setattr(merged, f.name, value)
    if pids_set:
        merged.pids_limit = change.pids_limit
    # Docker: a new memory limit above the old swap limit needs the swap limit raised too.
    if change.memory and not change.memory_swap and 0 < current.memory_swap < change.memory:
        raise InvalidArgument(
            "Memory limit should be smaller than already set memoryswap limit, "
            "update the memoryswap at the same time"
        )
    if change.nano_cpus:
        merged.cpu_period = merged.cpu_quota = 0
    elif change.cpu_period or change.cpu_quota:
        merged.nano_cpus = 0
    return merged

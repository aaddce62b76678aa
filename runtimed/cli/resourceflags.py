"""docker's resource flags (run/create and update) into a Resources message."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from runtimed.cgroups import units
from runtimed.cli.client import CliError
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

# (flags, dest, parser, help) shared by run/create and update.
_COMMON: list[tuple[tuple[str, ...], str, Callable[[str], Any], str]] = [
    (("-m", "--memory"), "memory", units.ram_in_bytes, "memory limit (e.g. 200m, 1g)"),
    (("--memory-swap",), "memory_swap", units.memory_swap_bytes,
     "memory + swap limit; -1 for unlimited swap"),
    (("--memory-reservation",), "memory_reservation", units.ram_in_bytes, "memory soft limit"),
    (("--kernel-memory",), "kernel_memory", units.ram_in_bytes, "accepted, ignored (deprecated)"),
    (("--cpus",), "nano_cpus", units.nano_cpus, "number of CPUs (e.g. 0.5)"),
    (("-c", "--cpu-shares"), "cpu_shares", int, "CPU shares (relative weight)"),
    (("--cpu-period",), "cpu_period", int, "CFS period in microseconds"),
    (("--cpu-quota",), "cpu_quota", int, "CFS quota in microseconds"),
    (("--cpuset-cpus",), "cpuset_cpus", str, "CPUs to run on (0-3, 0,1)"),
    (("--cpuset-mems",), "cpuset_mems", str, "memory nodes to use (0-3, 0,1)"),
    (("--blkio-weight",), "blkio_weight", int, "block I/O weight (10 to 1000, 0 to disable)"),
    (("--pids-limit",), "pids_limit", int, "processes limit (-1 for unlimited)"),
]  # fmt: skip

_DEVICE_FLAGS: list[tuple[str, str, Callable[[str], tuple[str, int]], str]] = [
    ("--blkio-weight-device", "blkio_weight_device", units.parse_weight_device,
     "block I/O weight for a device (/dev/sda:200)"),
    ("--device-read-bps", "device_read_bps", units.parse_bps_device,
     "read rate limit of a device (/dev/sda:1mb)"),
    ("--device-write-bps", "device_write_bps", units.parse_bps_device,
     "write rate limit of a device (/dev/sda:1mb)"),
    ("--device-read-iops", "device_read_iops", units.parse_iops_device,
     "read operations per second of a device (/dev/sda:1000)"),
    ("--device-write-iops", "device_write_iops", units.parse_iops_device,
     "write operations per second of a device (/dev/sda:1000)"),
]  # fmt: skip


def add_resource_flags(p: argparse.ArgumentParser, *, update: bool = False) -> None:
    for flags, dest, _, text in _COMMON:
        p.add_argument(*flags, dest=dest, metavar="VALUE", help=text)
    if update:
        return
    p.add_argument("--oom-kill-disable", action="store_true", help="disable the OOM killer")
    for flag, dest, _, text in _DEVICE_FLAGS:
        p.add_argument(flag, dest=dest, action="append", metavar="DEVICE:VALUE", help=text)
    p.add_argument("--ulimit", action="append", metavar="NAME=SOFT[:HARD]", help="ulimit options")
    p.add_argument("--shm-size", metavar="SIZE", help="size of /dev/shm (default 64m)")
    p.add_argument("--cgroup-parent", help="parent cgroup, below runtimed's own")


def _flag_name(flags: tuple[str, ...]) -> str:
    return ", ".join(flags)


def _parse(value: str, parser: Callable[[str], Any], flags: tuple[str, ...]) -> Any:
    try:
        return parser(value)
    except ValueError as exc:
        message = str(exc)
        if parser is int:
            message = f'strconv.ParseInt: parsing "{value}": invalid syntax'
        raise CliError(
            f'invalid argument "{value}" for "{_flag_name(flags)}" flag: {message}', 125
        ) from None


def resources_from_args(args: argparse.Namespace) -> tuple[pb.Resources, bool]:
    """The Resources message of the flags given, and whether --pids-limit was."""
    res = pb.Resources()
    for flags, dest, parser, _ in _COMMON:
        value = getattr(args, dest, None)
        if value is not None:
            setattr(res, dest, _parse(value, parser, flags))
    if getattr(args, "oom_kill_disable", False):
        res.oom_kill_disable = True
    for flag, dest, parser, _ in _DEVICE_FLAGS:
        for item in getattr(args, dest, None) or []:
            path, value = _parse(item, parser, (flag,))
            getattr(res, dest).add(path=path, value=value)
    for item in getattr(args, "ulimit", None) or []:
        name, soft, hard = _parse(item, units.parse_ulimit, ("--ulimit",))
        res.ulimits.add(name=name, soft=soft, hard=hard)
    shm = getattr(args, "shm_size", None)
    if shm is not None:
        res.shm_size = _parse(shm, units.ram_in_bytes, ("--shm-size",))
    res.cgroup_parent = getattr(args, "cgroup_parent", None) or ""
    return res, getattr(args, "pids_limit", None) is not None

"""Facts about the host that `info` reports, read from /etc and /proc (both APIs use them)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


def _first_line_value(path: str, prefix: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
    return None


def os_name() -> str:
    return (_first_line_value("/etc/os-release", "PRETTY_NAME=") or sys.platform).strip('"')


def os_version() -> str:
    return (_first_line_value("/etc/os-release", "VERSION_ID=") or "").strip('"')


def mem_total() -> int:
    value = _first_line_value("/proc/meminfo", "MemTotal:")
    return int(value.split()[0]) * 1024 if value else 0


def cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def uid_map() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/self/uid_map").read_text().split())
    return ""

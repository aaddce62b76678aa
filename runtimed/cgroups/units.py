"""Docker's resource flag syntax: sizes (`200m`, `1g`), CPUs (`0.5`), ulimits
(`nofile=1024:2048`), per-device weights and rates (`/dev/sda:1mb`).

Stdlib only: runtimectl imports this for every `run`. Errors are ValueError with
the text Docker gives after `invalid argument "..." for "FLAG" flag: `.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

# Names --ulimit takes (Docker's list), to the OCI rlimit names.
ULIMITS = {
    "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
    "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC",
    "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME",
    "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK", "as": "RLIMIT_AS",
}  # fmt: skip


def ram_in_bytes(text: str) -> int:
    """Docker's RAMInBytes: `1024`, `200m`, `1.5g`, `512KiB` (binary multiples)."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"invalid size: '{text}'")
    number, unit = match.groups()
    return int(Decimal(number) * _UNITS[(unit or "").lower()])


def memory_swap_bytes(text: str) -> int:
    """--memory-swap: a size, or -1 for unlimited swap."""
    return -1 if text.strip() == "-1" else ram_in_bytes(text)


def nano_cpus(text: str) -> int:
    """--cpus: a decimal number of CPUs, as billionths."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"failed to parse {text} as a rational number") from None
    if not value.is_finite():
        raise ValueError(f"failed to parse {text} as a rational number")
    nanos = value * 1_000_000_000
    if nanos != nanos.to_integral_value():
        raise ValueError("value is too precise")
    return int(nanos)


def parse_ulimit(text: str) -> tuple[str, int, int]:
    """`name=soft[:hard]` as (name, soft, hard); -1 is unlimited."""
    name, sep, values = text.partition("=")
    if not sep:
        raise ValueError(f"invalid ulimit argument: {text}")
    if name not in ULIMITS:
        raise ValueError(f"invalid ulimit type: {name}")
    parts = values.split(":")
    if len(parts) > 2:
        raise ValueError(
            f"too many limit value arguments - {values}, can only have up to two, `soft[:hard]`"
        )
    try:
        soft = int(parts[0])
        hard = int(parts[1]) if len(parts) == 2 else soft
    except ValueError:
        raise ValueError(f"invalid ulimit argument: {text}") from None
    if soft > hard and hard != -1:
        raise ValueError(
            f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )
    return name, soft, hard


def _device(text: str) -> tuple[str, str]:
    path, sep, value = text.rpartition(":")
    if not sep or not path:
        raise ValueError(f"bad format: {text}")
    if not path.startswith("/dev/"):
        raise ValueError(f"{path} is not an absolute path")
    return path, value


def parse_weight_device(text: str) -> tuple[str, int]:
    """--blkio-weight-device /dev/sda:200 (10 to 1000, or 0)."""
    path, value = _device(text)
    try:
        weight = int(value)
    except ValueError:
        raise ValueError(f"invalid weight for device: {text}") from None
    if weight < 0 or (weight and not 10 <= weight <= 1000):
        raise ValueError(f"invalid weight for device: {text}")
    return path, weight


def parse_bps_device(text: str) -> tuple[str, int]:
    """--device-read-bps / --device-write-bps /dev/sda:1mb."""
    path, value = _device(text)
    try:
        return path, ram_in_bytes(value)
    except ValueError:
        raise ValueError(
            f"invalid rate for device: {text}. The correct format is "
            "<device-path>:<number>[<unit>]. Number must be a positive integer. "
            "Unit is optional and can be kb, mb, or gb"
        ) from None


def parse_iops_device(text: str) -> tuple[str, int]:
    """--device-read-iops / --device-write-iops /dev/sda:1000."""
    path, value = _device(text)
    if not value.isdigit():
        raise ValueError(
            f"invalid rate for device: {text}. The correct format is "
            "<device-path>:<number>. Number must be a positive integer"
        )
    return path, int(value)

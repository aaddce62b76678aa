"""Docker's human wording of sizes and durations, shared by the daemon and the CLI."""

from __future__ import annotations

_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(size: float, precision: int = 3) -> str:
    """Decimal units with three significant digits, as `docker images` prints (4.26MB)."""
    unit = 0
    while size >= 1000 and unit < len(_SIZE_UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{size:.{precision}g}{_SIZE_UNITS[unit]}"


_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def bytes_size(size: float) -> str:
    """Binary units with four significant digits, as `docker stats` shows memory (49.9MiB)."""
    unit = 0
    while size >= 1024 and unit < len(_BINARY_UNITS) - 1:
        size /= 1024
        unit += 1
    return f"{size:.4g}{_BINARY_UNITS[unit]}"


def human_duration(seconds: float) -> str:
    """Docker's HumanDuration wording ("About a minute", "3 weeks")."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"

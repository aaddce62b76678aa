"""Reading and writing cgroup control files: one value per write, errors with the file."""

from __future__ import annotations

import os
from pathlib import Path

from runtimed.errors import FailedPrecondition


def write(path: Path, value: str | int) -> None:
    """One write(2) of the whole value, as the kernel wants it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise FailedPrecondition(f"cgroup {path}: {exc.strerror or exc}") from None
    try:
        os.write(fd, str(value).encode())
    except OSError as exc:
        raise FailedPrecondition(
            f"cgroup {path}: cannot set {value}: {exc.strerror or exc}"
        ) from None
    finally:
        os.close(fd)


def read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def read_int(path: Path) -> int | None:
    text = read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def read_keyed(path: Path) -> dict[str, int]:
    """`key value` lines (memory.stat, cpu.stat, memory.events)."""
    out: dict[str, int] = {}
    for line in (read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def count_lines(path: Path) -> int:
    return len((read(path) or "").split())

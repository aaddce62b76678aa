"""Whole-file writes that a crash cannot tear, and that racing writers cannot mix up.

Write to a temporary name of its own in the same directory, fsync the file,
rename over the target, fsync the directory. A crash leaves either the old
file or the new one, never a prefix of the new one; a temporary left behind
by a crash has a `.tmp-` prefix and is removed by whoever cleans the
directory. The implementation is the shim's (runtimed_shim.atomicfile), so
daemon and shim replace files the same way.
"""

from __future__ import annotations

from pathlib import Path

from runtimed_shim.atomicfile import fsync_dir as _fsync_dir
from runtimed_shim.atomicfile import replace_file


def fsync_dir(path: Path) -> None:
    _fsync_dir(str(path))


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Replace `path` whole. durable=False skips the fsyncs, for files that are checked
    again at every start (a crash cannot leave a stale one in use)."""
    replace_file(str(path), data, mode, durable=durable)

"""Replacing a file whole: the one helper the shim and the daemon both use.

A new file is written under a temporary name beside the target and renamed
over it, so a reader sees the old file or the whole new one. Each write gets
its own temporary name (O_EXCL, random): several threads or processes may
replace the same file at once, and the last rename wins. A temporary left
behind by a crash starts with `.tmp-`. Stdlib `os` only: every shim has it
loaded.
"""

from __future__ import annotations

import contextlib
import os


def create_temp(path: str, mode: int = 0o600) -> tuple[int, str]:
    """Open a new file beside `path` under a name no other writer uses: (fd, name)."""
    head, name = os.path.split(path)
    while True:
        tmp = os.path.join(head, f".tmp-{name}-{os.urandom(6).hex()}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode), tmp
        except FileExistsError:
            continue


def replace_file(path: str, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write `data` to a temporary, then rename it over `path`.

    durable: fsync the file and the directory, so a crash leaves the old or the new
    file and never a prefix of the new one. Files the daemon checks again at every
    start may skip it.
    """
    fd, tmp = create_temp(path, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(os.path.dirname(path) or ".")


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Facts from /proc, careful file removal, and the few libc calls Python lacks."""

from __future__ import annotations

import contextlib
import ctypes
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

# The interpreter links libc: its symbols resolve without ctypes.util (which costs ~3 MB).
libc = ctypes.CDLL(None, use_errno=True)


def libc_error(what: str) -> OSError:
    """The OSError for a libc call that just failed."""
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def set_name(name: str) -> None:
    """What ps and top show (launcher, shims and infra processes share one command line)."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as f:
        f.write(name[:15])


def _state_and_parent(stat: bytes) -> tuple[bytes, int]:
    # The command name may hold spaces and parentheses: parse after the last ')'.
    state, ppid = stat[stat.rindex(b")") + 2 :].split()[:2]
    return state, int(ppid)


def _stat(pid: int) -> tuple[bytes, int]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return _state_and_parent(f.read())


def state(pid: int) -> bytes:
    """The one-letter state of /proc/PID/stat (b"Z": a zombie); OSError when gone."""
    return _stat(pid)[0]


def parent(pid: int) -> int:
    return _stat(pid)[1]


def descendants(root: int, *, living: bool = False) -> list[int]:
    """Processes below `root`, from /proc: without cgroups, the container's process tree.
    `living`: leave out zombies (dead, waiting to be reaped)."""
    children: dict[int, list[int]] = {}
    zombies: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        state, ppid = _state_and_parent(stat)
        children.setdefault(ppid, []).append(int(name))
        if state == b"Z":
            zombies.add(int(name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return [pid for pid in found if pid not in zombies] if living else found


def namespace_inode(pid: int, kind: str) -> int:
    """The inode that names process `pid`'s namespace of `kind` (mnt, pid, ...)."""
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def in_namespace(kind: str, inode: int, *, living: bool = False) -> list[int]:
    """Every process whose `kind` namespace is `inode` (those we may look at)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            if namespace_inode(pid, kind) != inode or (living and state(pid) == b"Z"):
                continue
        except OSError:
            continue  # gone, or not ours to look at
        found.append(pid)
    return found


def reaped() -> Iterator[tuple[int, int]]:
    """(pid, wait status) of every child that has ended, without blocking."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def remove_tree(path: str) -> None:
    """Remove a directory tree without crossing into mounts (a rootfs could be one)."""
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return

    def walk(directory: str) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    if entry.is_dir(follow_symlinks=False):
                        if st.st_dev != top.st_dev:
                            continue
                        walk(entry.path)
                        os.rmdir(entry.path)
                    else:
                        os.unlink(entry.path)

    with contextlib.suppress(OSError):
        walk(path)
        os.rmdir(path)

"""Opening paths inside a directory as if it were `/`, safe against a tree that changes.

A container's processes can rename, swap and relink anything in their root
while the daemon works in it, so a path checked by name and then used by name
may lead elsewhere by the time it is used (CVE-2018-15664). Here a path is
resolved once into a file descriptor, and everything after works on that fd
or with *at() calls relative to it:

- openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) (Linux 5.6+) where the
  kernel has it: symlinks and `..` are resolved with the root as `/`, and the
  kernel refuses a `..` that a concurrent rename would carry out of it;
- else a walk of O_PATH|O_NOFOLLOW opens, one component at a time, reading
  each symlink through its own fd and restarting at the root fd for an
  absolute target; `..` goes back to the fd the walk came from. No call
  ever follows a link by name, so no race can lead outside the root.

Mounts inside the root (volumes, binds) are crossed, as the container sees them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections.abc import Iterator

MAX_LINKS = 40  # the kernel's own limit on symlinks in one lookup
_SYS_OPENAT2 = 437  # one number on every architecture (the unified syscall table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_EAGAIN_TRIES = 32
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_openat2_works: bool | None = None


def open_root(path: os.PathLike[str] | str) -> int:
    """An O_PATH fd for the directory that plays `/` (following `path` itself: /proc/PID/root)."""
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH) -> int:
    """An fd for the existing `path` resolved inside `root_fd` (create with *at() calls on
    its parent's fd); O_NOFOLLOW in `flags` keeps a final symlink.

    Raises the OSError the lookup met (ENOENT, ENOTDIR, ELOOP, ...); its
    filename is never set, so no host path reaches a message.
    """
    if has_openat2():
        return _openat2(root_fd, path, flags | os.O_CLOEXEC)
    try:
        return _walk(root_fd, path, flags | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror) from None


def has_openat2() -> bool:
    global _openat2_works
    if _openat2_works is None:
        try:
            os.close(_openat2(-100, "/", os.O_PATH | os.O_CLOEXEC, resolve=0))  # AT_FDCWD
            _openat2_works = True
        except OSError:
            # ENOSYS before Linux 5.6; EPERM or ENOSYS under a seccomp filter that lacks it.
            _openat2_works = False
    return _openat2_works


def _openat2(dir_fd: int, path: str, flags: int, resolve: int | None = None) -> int:
    if flags & os.O_CREAT:
        raise ValueError("open_in_root opens existing files only")
    if resolve is None:
        resolve = _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS
    how = _OpenHow(flags, 0, resolve)
    encoded = os.fsencode(path or ".")
    for _ in range(_EAGAIN_TRIES):
        fd = _libc.syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_long(dir_fd),  # syscall() is variadic: pass every argument at full width
            ctypes.c_char_p(encoded),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        # EAGAIN: a rename raced with a `..` lookup; the kernel asks for a retry.
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err))
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _walk(root_fd: int, path: str, flags: int) -> int:
    """openat2(RESOLVE_IN_ROOT) done by hand, for kernels without it."""
    follow_last = not flags & os.O_NOFOLLOW
    parts = _components(path)
    stack = [os.dup(root_fd)]  # the directories walked through; [0] is the root
    hops = 0
    try:
        while parts:
            part = parts.pop(0)
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            fd = os.open(part, _PATH_FLAGS, dir_fd=stack[-1])
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode) and (parts or follow_last):
                try:
                    target = os.readlink("", dir_fd=fd)  # the link this fd holds, not a name
                finally:
                    os.close(fd)
                hops += 1
                if hops > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                parts = _components(target) + parts
                continue
            stack.append(fd)
            if parts and not stat.S_ISDIR(st.st_mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        return _reopen(stack[-1], flags)
    finally:
        for fd in stack:
            os.close(fd)


def _reopen(path_fd: int, flags: int) -> int:
    """`flags` on the very inode an O_PATH fd holds, as openat2 would have opened it."""
    st = os.fstat(path_fd)
    if flags & os.O_DIRECTORY and not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    if flags & os.O_PATH:
        return os.dup(path_fd)
    if stat.S_ISLNK(st.st_mode):
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))  # O_NOFOLLOW met a symlink
    # Through our own fd table, never through a name in the tree.
    return os.open(f"/proc/self/fd/{path_fd}", flags & ~os.O_NOFOLLOW)


def reopen(path_fd: int, flags: int) -> int:
    """A readable (etc.) fd for what an O_PATH fd from open_in_root holds."""
    return _reopen(path_fd, flags | os.O_CLOEXEC)


@contextlib.contextmanager
def closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)

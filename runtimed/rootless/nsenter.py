"""Joining the daemon's namespaces from outside, as `runtimectl unshare` does before exec.

The daemon names a process that lives in its user and mount namespaces (the
shim launcher, which holds them) and their inode numbers; the namespaces are
opened through /proc/PID/ns and checked against those numbers, so a pid that
was recycled meanwhile is refused rather than joined. The rootless network
namespace has no process of its own to name: it is a file pinned inside the
daemon's mount namespace, opened once we are in there.

setns(2) into a user namespace requires a single-threaded caller, and into a
mount namespace one that shares its filesystem data with no other thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time

from runtimed.errors import FailedPrecondition

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
_THREADS_GONE_WITHIN = 2.0

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def setns_fd(fd: int, flag: int, what: str) -> None:
    if _libc.setns(fd, flag) != 0:
        err = ctypes.get_errno()
        raise FailedPrecondition(f"cannot join {what}: {os.strerror(err)}")


def join_path(path: str, flag: int, what: str) -> None:
    """Move the calling thread into the namespace a /proc/PID/ns file or a pin names."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns_fd(fd, flag, f"{what} ({path})")
    finally:
        os.close(fd)


def wait_single_threaded(timeout: float = _THREADS_GONE_WITHIN) -> None:
    """Wait until threads that were told to end (and were joined) are gone from the kernel's
    view too: a joined Python thread may still be a task for a moment."""
    deadline = time.monotonic() + timeout
    while len(os.listdir("/proc/self/task")) > 1:
        if time.monotonic() > deadline:
            raise FailedPrecondition("cannot join the daemon's namespaces: other threads still run")
        time.sleep(0.001)


def enter_daemon(pid: int, user_ns: int, mount_ns: int, network_ns_path: str = "") -> bool:
    """Join the user and mount namespaces `pid` is in, which must be `user_ns` and `mount_ns`,
    then the network namespace pinned at `network_ns_path` (a path in that mount namespace)
    if one is given. Returns whether a user namespace was joined (the caller then is root
    of it). Namespaces we are in already are left as they are."""
    wait_single_threaded()
    opened: dict[str, int] = {}
    try:
        for kind, expected in (("user", user_ns), ("mnt", mount_ns)):
            try:
                fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, ProcessLookupError):
                raise FailedPrecondition(
                    f"the process holding runtimed's namespaces (pid {pid}) is gone: "
                    "is runtimed still running?"
                ) from None
            opened[kind] = fd
            if os.fstat(fd).st_ino != expected:
                raise FailedPrecondition(
                    f"pid {pid} is no longer in runtimed's namespaces: is runtimed still running?"
                )
        joined_user = False
        for kind, flag, what in (
            ("user", CLONE_NEWUSER, "runtimed's user namespace"),
            ("mnt", CLONE_NEWNS, "runtimed's mount namespace"),
        ):
            if os.fstat(opened[kind]).st_ino == os.stat(f"/proc/self/ns/{kind}").st_ino:
                continue  # a daemon running as real root: the namespace is ours already
            setns_fd(opened[kind], flag, what)
            joined_user = joined_user or kind == "user"
    finally:
        for fd in opened.values():
            os.close(fd)
    if network_ns_path:
        join_path(network_ns_path, CLONE_NEWNET, "runtimed's rootless network namespace")
    return joined_user

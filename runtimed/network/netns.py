"""Network namespaces we own: pinned to files, entered by one dedicated thread.

The daemon is root of its user namespace but not of the host's network
namespace, so a thread that setns(2)-es into a namespace of ours can never
come back to the host's (EPERM). Netlink and socket work therefore runs on a
single worker thread that lives in our namespaces for good: it starts in the
rootless namespace and hops between it and container namespaces (all owned
by our user namespace, so every hop is allowed). Sockets keep the namespace
they were created in, so a netlink socket made there stays valid after the
thread moves on. The event loop's threads never leave the host namespace.

A namespace is pinned by bind-mounting /proc/thread-self/ns/net onto a file
(what `unshare --net=FILE` does), in the daemon's private mount namespace, so
it outlives every process in it and survives daemon restarts while the shim
launcher holds that mount namespace.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from runtimed.snapshots import _mount

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
MS_BIND = 4096

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns_path(path: str | Path) -> None:
    """Move the calling thread into the network namespace pinned at `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns {path}")
    finally:
        os.close(fd)


def is_pinned(path: Path) -> bool:
    """True when a namespace is bind-mounted at `path` (it then lives on nsfs)."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def unpin(path: Path) -> None:
    """Drop the pin (processes still inside keep the namespace) and remove the file."""
    # Peel every mount: a retried pin may have stacked one on another.
    while is_pinned(path):
        _mount.umount(path, _mount.MNT_DETACH | _mount.UMOUNT_NOFOLLOW)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class NetnsWorker:
    """One thread that owns every namespace switch; `home` is where it rests."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="netns"
        )
        self.home: Path | None = None

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args))

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """Blocking form, for code already off the event loop."""
        return self._pool.submit(lambda: fn(*args)).result()

    # -- the functions below run on the worker thread ---------------------------------

    def go_home(self) -> None:
        if self.home is not None:
            setns_path(self.home)

    @contextlib.contextmanager
    def inside(self, path: str | Path) -> Iterator[None]:
        """Worker thread only: be in `path`'s namespace for the block, then back home."""
        setns_path(path)
        try:
            yield
        finally:
            self.go_home()

    def pin_new(self, path: Path) -> None:
        """Worker thread only: make a new namespace and pin it at `path` (links.attach brings
        lo up).

        The thread is left inside the new namespace; callers go home after
        configuring it.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        if is_pinned(path):
            unpin(path)
        path.touch(mode=0o600)
        try:
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            source = f"/proc/self/task/{threading.get_native_id()}/ns/net"
            _check(
                _libc.mount(source.encode(), os.fsencode(path), None, MS_BIND, None),
                f"pin network namespace at {path}",
            )
        except BaseException:
            with contextlib.suppress(OSError):
                unpin(path)
            raise

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)

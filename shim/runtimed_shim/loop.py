"""A minimal readiness loop over epoll: per-fd read and write callbacks.

The shim needs no coroutines: every event is short and non-blocking, and
asyncio would cost memory in every shim.
"""

from __future__ import annotations

import selectors
from collections.abc import Callable

Callback = Callable[[], None]


class Loop:
    __slots__ = ("_sel", "_readers", "_writers")

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._readers: dict[int, Callback] = {}
        self._writers: dict[int, Callback] = {}

    def _update(self, fd: int) -> None:
        mask = (selectors.EVENT_READ if fd in self._readers else 0) | (
            selectors.EVENT_WRITE if fd in self._writers else 0
        )
        try:
            self._sel.get_key(fd)
        except KeyError:
            if mask:
                self._sel.register(fd, mask)
            return
        if mask:
            self._sel.modify(fd, mask)
        else:
            self._sel.unregister(fd)

    def set_reader(self, fd: int, callback: Callback | None) -> None:
        if callback is None:
            if self._readers.pop(fd, None) is not None:
                self._update(fd)
        else:
            new = fd not in self._readers
            self._readers[fd] = callback
            if new:
                self._update(fd)

    def set_writer(self, fd: int, callback: Callback | None) -> None:
        if callback is None:
            if self._writers.pop(fd, None) is not None:
                self._update(fd)
        else:
            new = fd not in self._writers
            self._writers[fd] = callback
            if new:
                self._update(fd)

    def forget(self, fd: int) -> None:
        """Drop both callbacks (call before closing the fd)."""
        self._readers.pop(fd, None)
        self._writers.pop(fd, None)
        self._update(fd)

    def run_once(self, timeout: float | None = None) -> None:
        for key, mask in self._sel.select(timeout):
            fd = key.fd
            # A callback may have closed or replaced this fd meanwhile: look up afresh.
            if mask & selectors.EVENT_READ and (cb := self._readers.get(fd)) is not None:
                cb()
            if mask & selectors.EVENT_WRITE and (cb := self._writers.get(fd)) is not None:
                cb()

    def close(self) -> None:
        self._sel.close()

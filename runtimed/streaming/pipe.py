"""A one-way byte pipe from a connection's reader loop to the task that consumes it."""

from __future__ import annotations

import asyncio
import collections

# Unread input one channel may hold before its connection stops being read.
BUFFER = 1 << 20


class InputPipe:
    """Fed by the connection's read loop, read by one consumer; b"" means the end.

    `room` is clear while more than BUFFER bytes wait: the read loop awaits it,
    so a slow consumer slows the sender instead of filling memory.
    """

    def __init__(self) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self.ended = False
        self._readable = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    def feed(self, data: bytes) -> None:
        if self.ended or not data:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        self._readable.set()
        if self._buffered >= BUFFER:
            self.room.clear()

    def end(self) -> None:
        self.ended = True
        self._readable.set()
        self.room.set()

    async def read(self) -> bytes:
        """Everything that is waiting, as one piece (one write downstream, not one per
        frame the sender happened to cut)."""
        while not self._chunks:
            if self.ended:
                return b""
            self._readable.clear()
            await self._readable.wait()
        if len(self._chunks) == 1:
            data = self._chunks.popleft()
        else:
            data = b"".join(self._chunks)
            self._chunks.clear()
        self._buffered = 0
        self.room.set()
        return data

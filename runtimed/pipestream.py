"""A byte stream written by blocking code in a thread, read as async chunks (save, export).

The writer gets a file to write into (one end of a pipe); the reader yields
what arrives, a chunk at a time, so nothing is held whole in memory. When the
reader stops early (the client hung up) the pipe breaks and the writer ends;
when the writer fails, its error ends the stream after what it wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Callable
from typing import IO

CHUNK = 1 << 20


async def thread_stream(
    produce: Callable[[IO[bytes]], None], chunk: int = CHUNK
) -> AsyncIterator[bytes]:
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):
        # A pipe as big as a chunk: a thread hop per chunk, not per 64 KiB.
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, chunk)

    def run() -> None:
        out = open(write_fd, "wb", buffering=chunk)  # noqa: SIM115 - closed below
        try:
            produce(out)
            out.flush()
        except BrokenPipeError:
            pass  # the reader went away
        finally:
            with contextlib.suppress(BrokenPipeError):
                out.close()

    task = asyncio.create_task(asyncio.to_thread(run))
    reader = open(read_fd, "rb", buffering=0)  # noqa: SIM115 - closing it stops the writer
    try:
        while data := await asyncio.to_thread(_read_full, reader, chunk):
            yield data
        await task
    finally:
        reader.close()
        if not task.done():
            with contextlib.suppress(Exception):
                await task


def _read_full(reader: IO[bytes], size: int) -> bytes:
    parts, have = [], 0
    while have < size:
        data = reader.read(size - have)
        if not data:
            break
        parts.append(data)
        have += len(data)
    return b"".join(parts)

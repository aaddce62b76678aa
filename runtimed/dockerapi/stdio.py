"""A process's stdio on a Docker API connection: framing, detach keys, the relay.

Without a tty, output is Docker's multiplexed stream: each piece is preceded
by 8 bytes (stream 1 stdout or 2 stderr, three zero bytes, a big-endian
32-bit length). With a tty it is the raw bytes of the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable

from runtimed.core.shim_client import EXIT, STDERR, STDOUT, AttachStream
from runtimed.detachkeys import DEFAULT_DETACH_KEYS, DetachScanner, parse_detach_keys
from runtimed.dockerapi.http import RawStream, Request
from runtimed.dockerapi.router import at_least

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"
_HEADER = struct.Struct(">BxxxL")
_STREAMS = {STDOUT: 1, STDERR: 2}


def frame(stream: int, data: bytes) -> bytes:
    """One piece of output in the multiplexed format (stream: 1 stdout, 2 stderr)."""
    return _HEADER.pack(stream, len(data)) + data


def media_type(request: Request, tty: bool) -> str:
    """API 1.42 named the multiplexed stream; older clients were told raw-stream for both."""
    return MULTIPLEXED if not tty and at_least(request, "1.42") else RAW


def detach_keys(spec: str) -> bytes:
    return parse_detach_keys(spec or DEFAULT_DETACH_KEYS)


async def relay(
    conn: RawStream,
    stream: AttachStream,
    *,
    tty: bool,
    stdin: bool,
    keys: bytes,
    on_exit: Callable[[bytes], None] = lambda _payload: None,
    on_output: Callable[[bytes], None] = lambda _data: None,
) -> None:
    """Output to the client and its input to the process, until the process ends (all its
    output sent), the client types the detach keys, or the client goes away.

    A client that ends its input (a half-close: the docker CLI does so even without
    stdin) still gets the output to the end; one that left is noticed when a write fails.
    """

    async def outbound() -> None:
        while (piece := await stream.read()) is not None:
            kind, data = piece
            if kind in _STREAMS and data:
                on_output(data)
                await conn.write(data if tty else frame(_STREAMS[kind], data))
            elif kind == EXIT:
                on_exit(data)
                return

    async def inbound() -> bool:
        """True when the client detached; False when it ended its input."""
        scanner = DetachScanner(keys) if keys else None
        while data := await conn.read():
            if not stdin:
                continue
            detached = False
            if scanner is not None:
                data, detached = scanner.feed(data)
            if data:
                await stream.write_stdin(data)
            if detached:
                return True
        if stdin:
            if scanner is not None and (held := scanner.flush()):
                await stream.write_stdin(held)
            await stream.close_stdin()
        return False

    out_task = asyncio.create_task(outbound())
    in_task = asyncio.create_task(inbound())
    try:
        done, _ = await asyncio.wait({out_task, in_task}, return_when=asyncio.FIRST_COMPLETED)
        if in_task in done and not in_task.cancelled() and in_task.exception() is None:
            if not in_task.result():
                await out_task  # input ended: the output goes on to its end
        elif out_task in done:
            out_task.result()
    except (ConnectionError, OSError):
        pass  # the client went away mid-write
    finally:
        for task in (in_task, out_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await stream.close()

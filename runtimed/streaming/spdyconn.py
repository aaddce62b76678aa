"""The server side of a SPDY/3.1 session on asyncio: streams the client opens, each a
pair of byte pipes.

The client (client-go over moby/spdystream) opens every stream; we answer
each SYN_STREAM with a SYN_REPLY at once, as kubelet does, because the client
waits for that reply before it uses the stream. spdystream implements no flow
control, so neither do we: WINDOW_UPDATE frames are ignored and none are sent.
Input backs up instead: while one stream holds more unread input than
pipe.BUFFER, the session stops reading the connection (spdystream blocks the
same way).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import structlog

from runtimed.streaming import spdy
from runtimed.streaming.pipe import InputPipe

log = structlog.get_logger(__name__)

# Data frames we send are cut to this size: big enough for throughput, small enough
# that one stream cannot hold the connection for long.
SEND_CHUNK = 256 * 1024


class Wire(Protocol):
    """A byte pipe the session runs on: a TCP connection, or a WebSocket tunnel."""

    async def recv(self) -> bytes:
        """The next bytes; b"" once the peer has finished sending."""

    def send(self, data: bytes) -> None: ...

    async def drain(self) -> None:
        """Wait until the bytes sent so far are on their way (raises if the peer is gone)."""

    def shutdown(self) -> None:
        """No more sending (a TCP half-close; a WebSocket close frame)."""

    async def close(self) -> None: ...


class SpdyStream:
    """One stream the client opened: its headers, its input, our output."""

    def __init__(self, session: SpdySession, stream_id: int, headers: spdy.Headers) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self.input = InputPipe()
        self.output_closed = False
        self.was_reset = False

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    async def read(self) -> bytes:
        """The next piece of input; b"" when the client half-closed or reset the stream."""
        return await self.input.read()

    # -- output ------------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Send data; dropped once the stream is closed or reset (the client is gone)."""
        for start in range(0, len(data), SEND_CHUNK):
            if self.output_closed or self.was_reset:
                return
            self.session.send(spdy.encode_data(self.id, data[start : start + SEND_CHUNK]))
            await self.session.drain()

    async def close(self) -> None:
        """Half-close: the client reads EOF on this stream."""
        if self.output_closed or self.was_reset:
            return
        self.output_closed = True
        self.session.send(spdy.encode_data(self.id, b"", fin=True))
        await self.session.drain()

    def reset(self, status: int = spdy.CANCEL) -> None:
        if self.was_reset:
            return
        self.was_reset = True
        self.input.end()
        self.session.send(spdy.encode_rst_stream(self.id, status))


class SpdySession:
    """Runs the frame loop of one connection; new streams arrive on `incoming`."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.incoming: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self.streams: dict[int, SpdyStream] = {}
        self.ended = asyncio.Event()
        self._frames = spdy.FrameReader()
        self._headers = spdy.HeaderCompressor()
        self._last_stream = 0
        self._broken = False

    def send(self, data: bytes) -> None:
        if not self._broken:
            self.wire.send(data)

    async def drain(self) -> None:
        try:
            await self.wire.drain()
        except (ConnectionError, RuntimeError):
            self._broken = True

    @property
    def lost(self) -> bool:
        """The connection is gone (the peer hung up or a write failed)."""
        return self._broken or self.ended.is_set()

    async def run(self) -> None:
        """Read and dispatch frames until the client hangs up; every stream's input ends."""
        try:
            while data := await self.wire.recv():
                for frame in self._frames.feed(data):
                    await self._dispatch(frame)
        except spdy.SpdyError as exc:
            log.info("spdy_protocol_error", error=str(exc))
            self.send(spdy.encode_goaway(self._last_stream, spdy.PROTOCOL_ERROR))
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.ended.set()
            for stream in self.streams.values():
                stream.input.end()
            self.incoming.put_nowait(None)

    async def _dispatch(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.Data):
            stream = self.streams.get(frame.stream_id)
            if stream is None:
                return  # a stream we reset or finished: its late data goes nowhere
            stream.input.feed(frame.data)
            if frame.fin:
                stream.input.end()
            if not stream.input.room.is_set():
                await stream.input.room.wait()
        elif isinstance(frame, spdy.SynStream):
            self._open(frame)
        elif isinstance(frame, spdy.RstStream):
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                stream.was_reset = True
                stream.input.end()
        elif isinstance(frame, spdy.Ping) and frame.ping_id & 1:
            # The client's pings are odd: echo them (we send none).
            self.send(spdy.encode_ping(frame.ping_id))
        # GOAWAY needs nothing: the client opens no more streams and hangs up when done.
        # SETTINGS, WINDOW_UPDATE, HEADERS and unknown frames carry nothing we use.

    def _open(self, frame: spdy.SynStream) -> None:
        if frame.stream_id % 2 == 0 or frame.stream_id <= self._last_stream:
            self.send(spdy.encode_rst_stream(frame.stream_id, spdy.PROTOCOL_ERROR))
            return
        self._last_stream = frame.stream_id
        stream = SpdyStream(self, frame.stream_id, frame.headers)
        self.streams[frame.stream_id] = stream
        self.send(spdy.encode_syn_reply(self._headers, frame.stream_id, {}))
        if frame.fin:
            stream.input.end()
        self.incoming.put_nowait(stream)

    def forget(self, stream: SpdyStream) -> None:
        """A finished stream: late frames for it are dropped (a long port-forward session
        opens two streams per connection; they must not pile up)."""
        self.streams.pop(stream.id, None)

    async def next_stream(self) -> SpdyStream | None:
        """The next stream the client opens; None once the connection has ended."""
        if self.ended.is_set() and self.incoming.empty():
            return None
        stream = await self.incoming.get()
        if stream is None:
            self.incoming.put_nowait(None)  # every later caller sees the end too
        return stream

    async def finish(self, linger: float = 10.0) -> None:
        """Say goodbye (GOAWAY, then our half of the connection), give the client
        `linger` seconds to read everything and hang up, then close."""
        self.send(spdy.encode_goaway(self._last_stream))
        await self.drain()
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            self.wire.shutdown()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ended.wait(), linger)
        await self.wire.close()


class TcpWire:
    """A session's byte pipe on the upgraded HTTP connection itself."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, early: bytes = b""
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._early = early  # bytes that arrived with the upgrade request

    async def recv(self) -> bytes:
        if self._early:
            data, self._early = self._early, b""
            return data
        return await self.reader.read(256 * 1024)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def shutdown(self) -> None:
        if self.writer.can_write_eof():
            self.writer.write_eof()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

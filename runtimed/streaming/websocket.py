"""WebSocket connections for the streaming server: the `websockets` library's sans-I/O
protocol on an asyncio connection, and the two ways Kubernetes uses one.

- Channel framing (`v5.channel.k8s.io`, `v4.channel.k8s.io`, ...): every binary
  message starts with a channel byte (0 stdin, 1 stdout, 2 stderr, 3 error,
  4 resize; for port forwarding 2n data and 2n+1 error of the n-th port). v5
  adds message 255 CH: the sender will write no more on channel CH (how a v5
  client ends stdin).
- A tunnel (`SPDY/3.1+portforward.k8s.io`): the messages carry a SPDY session's
  bytes, cut anywhere, with no channel byte (client-go's TunnelingConnection).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

from websockets.frames import Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from runtimed.streaming.pipe import InputPipe

CLOSE_CHANNEL = 255
CLOSE_LINGER = 5.0


class WsConnection:
    """A server-side WebSocket after its handshake: whole messages in, binary out."""

    def __init__(
        self,
        protocol: ServerProtocol,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.protocol = protocol
        self.reader = reader
        self.writer = writer
        self._messages: collections.deque[bytes] = collections.deque()
        self._partial: bytearray | None = None
        self.closed = False

    def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.writer.write(chunk)
            elif self.writer.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    self.writer.write_eof()

    def feed(self, data: bytes) -> None:
        """Bytes that arrived with the handshake request."""
        if data:
            self._receive(data)

    def _receive(self, data: bytes) -> None:
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        for frame in self.protocol.events_received():
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                self._partial = bytearray(frame.data)
            elif frame.opcode == Opcode.CONT and self._partial is not None:
                self._partial += frame.data
            elif frame.opcode == Opcode.CLOSE:
                self.closed = True
                continue
            else:
                continue  # PING is answered by the protocol itself; PONG needs nothing
            if frame.fin and self._partial is not None:
                self._messages.append(bytes(self._partial))
                self._partial = None
        self._flush()
        if not data or self.protocol.state is State.CLOSED:
            self.closed = True

    async def receive(self) -> bytes | None:
        """The next message (text ones as their bytes); None once the connection closed."""
        while not self._messages:
            if self.closed:
                return None
            try:
                data = await self.reader.read(256 * 1024)
            except (ConnectionError, OSError):
                data = b""
            self._receive(data)
        return self._messages.popleft()

    def send_nowait(self, data: bytes) -> None:
        if self.protocol.state is State.OPEN:
            self.protocol.send_binary(data)
            self._flush()

    async def send(self, data: bytes) -> None:
        self.send_nowait(data)
        try:
            await self.writer.drain()
        except (ConnectionError, RuntimeError):
            self.closed = True

    def start_close(self) -> None:
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)
            self._flush()

    async def close(self, reading: asyncio.Task | None = None) -> None:
        """Close handshake, then the socket. `reading` is the task that reads this
        connection (it ends when the peer answers); it gets CLOSE_LINGER seconds."""
        self.start_close()
        if reading is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(reading), CLOSE_LINGER)
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


class WsWire:
    """A SPDY session's byte pipe through a WebSocket tunnel (spdyconn.Wire)."""

    def __init__(self, ws: WsConnection) -> None:
        self.ws = ws

    async def recv(self) -> bytes:
        while (message := await self.ws.receive()) is not None:
            if message:
                return message
        return b""

    def send(self, data: bytes) -> None:
        self.ws.send_nowait(data)

    async def drain(self) -> None:
        await self.ws.writer.drain()

    def shutdown(self) -> None:
        self.ws.start_close()

    async def close(self) -> None:
        # The session's read loop has seen the peer's close (or given up) by now.
        await self.ws.close()


class ChannelWriter:
    """Output on one channel: each write is one message, the channel byte first."""

    def __init__(self, ws: WsConnection, channel: int) -> None:
        self.ws = ws
        self.prefix = bytes([channel])

    async def write(self, data: bytes) -> None:
        await self.ws.send(self.prefix + data)

    async def close(self) -> None:
        pass  # the connection's close ends every channel; kubelet sends no close message


class WsChannels:
    """Demultiplexes a channel-framed WebSocket into one InputPipe per input channel."""

    def __init__(self, ws: WsConnection, inputs: set[int], *, close_messages: bool) -> None:
        self.ws = ws
        self.inputs = {channel: InputPipe() for channel in inputs}
        self.close_messages = close_messages
        self.hangup = asyncio.Event()

    def writer(self, channel: int) -> ChannelWriter:
        return ChannelWriter(self.ws, channel)

    async def run(self) -> None:
        """Read messages until the client closes; then every input ends and `hangup` is set."""
        try:
            while (message := await self.ws.receive()) is not None:
                if not message:
                    continue
                channel, data = message[0], message[1:]
                if channel == CLOSE_CHANNEL and self.close_messages:
                    if data and data[0] in self.inputs:
                        self.inputs[data[0]].end()
                    continue
                pipe = self.inputs.get(channel)
                if pipe is None:
                    continue
                pipe.feed(data)
                if not pipe.room.is_set():
                    await pipe.room.wait()
        finally:
            for pipe in self.inputs.values():
                pipe.end()
            self.hangup.set()

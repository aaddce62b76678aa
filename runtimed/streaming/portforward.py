"""Port forwarding: connections to 127.0.0.1:PORT inside a pod's network namespace.

The sockets are made inside the pod's namespace (nsthread.py); the event loop
connects and relays. A host-network pod's namespace is the one the sandbox
service says it shares (runtimed's rootless namespace, where kubelet runs).

Two client protocols carry the forwarded bytes:
- SPDY (`portforward.k8s.io`, also tunnelled through a WebSocket): per
  forwarded connection the client opens an error stream and a data stream,
  both with headers streamType, port and requestID;
- WebSocket channels (`v4.channel.k8s.io`): for the n-th port of the request,
  channel 2n carries data and 2n+1 errors; each starts with the port number
  (two bytes, little-endian).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from runtimed.core.sandboxes import SandboxService
from runtimed.errors import RuntimedError
from runtimed.streaming.nsthread import run_in_netns
from runtimed.streaming.remotecommand import Reader, Writer
from runtimed.streaming.spdyconn import SpdySession, SpdyStream
from runtimed.streaming.websocket import WsChannels, WsConnection

log = structlog.get_logger(__name__)

CHUNK = 256 * 1024
# How long a data and an error stream may wait for their partner (kubelet's default).
PAIR_TIMEOUT = 30.0
# After the pod's side ended, how long the client's side may still send (socat's 0.5 s
# is containerd's choice; a little more costs nothing).
LINGER = 2.0
_LOOPBACK = ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))


def _sockets_here() -> list[tuple[socket.socket, str]]:
    made = []
    for family, host in _LOOPBACK:
        with contextlib.suppress(OSError):  # no IPv6 in this namespace
            made.append((socket.socket(family, socket.SOCK_STREAM), host))
    return made


def _close_all(made: list[tuple[socket.socket, str]]) -> None:
    for sock, _host in made:
        sock.close()


class PodDialer:
    """Connects to a port on a pod's loopback."""

    def __init__(self, sandboxes: SandboxService) -> None:
        self.sandboxes = sandboxes

    async def dial(
        self, pod_id: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sandbox = self.sandboxes.get(pod_id)
        netns = self.sandboxes.namespaces(sandbox).network
        if netns:
            candidates = await run_in_netns(netns, _sockets_here, _close_all)
        else:
            candidates = _sockets_here()
        loop = asyncio.get_running_loop()
        error: OSError | None = None
        chosen = None
        for sock, host in candidates:
            if chosen is not None:
                sock.close()
                continue
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (host, port))
            except OSError as exc:
                sock.close()
                error = error or exc  # IPv4's says it best
                continue
            chosen = sock
        if chosen is None:
            raise error or ConnectionRefusedError(f"no loopback to reach port {port} on")
        return await asyncio.open_connection(sock=chosen, limit=CHUNK)


async def relay(
    channel_in: Reader,
    channel_out: Writer,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    aborted: Callable[[], bool],
) -> None:
    """Copy both ways between a client channel and a pod connection.

    The client's end of input half-closes the pod connection; the pod's end
    closes the channel, and the client then has LINGER seconds to finish. An
    aborted channel (reset, or the client gone) ends everything at once.
    """

    async def upstream() -> None:
        while data := await channel_in.read():
            writer.write(data)
            await writer.drain()
        if not aborted() and writer.can_write_eof():
            writer.write_eof()

    async def downstream() -> None:
        while data := await reader.read(CHUNK):
            await channel_out.write(data)
        await channel_out.close()

    up = asyncio.create_task(upstream())
    down = asyncio.create_task(downstream())
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if up in done and not aborted():
            await asyncio.wait({down})
        elif down in done and not up.done():
            await asyncio.wait({up}, timeout=LINGER)
    finally:
        for task in (up, down):
            task.cancel()
        for task in (up, down):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return port


# -- SPDY -----------------------------------------------------------------------------------


@dataclass
class _Pair:
    data: SpdyStream | None = None
    error: SpdyStream | None = None
    timer: asyncio.TimerHandle | None = None


async def _forward_pair(pair: _Pair, dialer: PodDialer, pod_id: str) -> None:
    assert pair.data is not None and pair.error is not None
    data, error = pair.data, pair.error
    try:
        try:
            port = _port(data.header("port"))
            reader, writer = await dialer.dial(pod_id, port)
        except (ValueError, OSError, RuntimedError) as exc:
            message = f"error forwarding port {data.header('port')} to pod {pod_id}: {exc}"
            log.debug("port_forward_failed", pod_id=pod_id, error=str(exc))
            await error.write(message.encode())
            await error.close()
            await data.close()
            return
        await relay(data, data, reader, writer, lambda: data.was_reset or data.session.lost)
        await error.close()
    finally:
        data.session.forget(data)
        data.session.forget(error)


async def serve_spdy(session: SpdySession, dialer: PodDialer, pod_id: str) -> None:
    """Forward every stream pair the client opens, until it hangs up."""
    pending: dict[str, _Pair] = {}
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    def expire(request_id: str) -> None:
        pair = pending.pop(request_id, None)
        for stream in (pair.data, pair.error) if pair else ():
            if stream is not None:
                stream.reset()

    try:
        while (stream := await session.next_stream()) is not None:
            kind = stream.header("streamtype")
            request_id = stream.header("requestid")
            if not request_id:
                # Clients before Kubernetes 1.4 send no requestID: a pair is an error
                # stream and the data stream opened right after it.
                request_id = str(stream.id - 2 if kind == "data" else stream.id)
            if kind not in ("data", "error"):
                stream.reset()
                continue
            pair = pending.setdefault(request_id, _Pair())
            if getattr(pair, kind) is not None:
                stream.reset()
                continue
            setattr(pair, kind, stream)
            if pair.data is None or pair.error is None:
                pair.timer = loop.call_later(PAIR_TIMEOUT, expire, request_id)
                continue
            del pending[request_id]
            if pair.timer is not None:
                pair.timer.cancel()
            task = asyncio.create_task(_forward_pair(pair, dialer, pod_id))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        for pair in pending.values():
            if pair.timer is not None:
                pair.timer.cancel()
        for task in list(tasks):
            task.cancel()
        for task in list(tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# -- WebSocket channels ------------------------------------------------------------------------


class _Silent:
    """The data channel's writer without a close message (the connection's close ends it)."""

    def __init__(self, inner: Writer) -> None:
        self.inner = inner

    async def write(self, data: bytes) -> None:
        await self.inner.write(data)

    async def close(self) -> None:
        pass


async def serve_websocket(
    ws: WsConnection, dialer: PodDialer, pod_id: str, ports: list[int]
) -> None:
    """One connection per port, for the life of the WebSocket."""
    channels = WsChannels(ws, {2 * i for i in range(len(ports))}, close_messages=False)
    reading = asyncio.create_task(channels.run())

    async def forward(index: int, port: int) -> None:
        data_out, error_out = channels.writer(2 * index), channels.writer(2 * index + 1)
        prefix = struct.pack("<H", port)
        await data_out.write(prefix)
        await error_out.write(prefix)
        try:
            reader, writer = await dialer.dial(pod_id, port)
        except (OSError, RuntimedError) as exc:
            await error_out.write(f"error forwarding port {port} to pod {pod_id}: {exc}".encode())
            return
        pipe = channels.inputs[2 * index]
        await relay(pipe, _Silent(data_out), reader, writer, channels.hangup.is_set)

    forwards = asyncio.gather(*(forward(i, p) for i, p in enumerate(ports)))
    gone = asyncio.create_task(channels.hangup.wait())
    try:
        await asyncio.wait({forwards, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        forwards.cancel()
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await forwards
        await ws.close(reading)
        reading.cancel()

"""A container's stdio: attach (hijacked, or a WebSocket), logs, and its terminal's size."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from websockets.datastructures import Headers as WsHeaders
from websockets.http11 import Request as WsRequest
from websockets.protocol import State
from websockets.server import ServerProtocol

from runtimed.api.containerview import rfc3339
from runtimed.core.logs import parse_since, read_logs
from runtimed.core.model import Container, Status
from runtimed.core.shim_client import EXIT, STDOUT, AttachStream
from runtimed.detachkeys import DetachScanner
from runtimed.dockerapi.context import Context
from runtimed.dockerapi.http import (
    HIJACKED,
    Hijacked,
    Request,
    Response,
    StreamResponse,
    no_content,
)
from runtimed.dockerapi.router import Router
from runtimed.dockerapi.stdio import detach_keys, frame, media_type, relay
from runtimed.errors import FailedPrecondition, InvalidArgument, NotFound
from runtimed.streaming.websocket import WsConnection

_STREAM_NUMBER = {"stdout": 1, "stderr": 2}
MAX_WS_MESSAGE = 16 << 20
LOGS_AFTER_HEAD = 0.05  # seconds between a hijack's head and the log replay (see attach)


def register(router: Router, ctx: Context) -> None:
    h = AttachHandlers(ctx)
    router.add("POST", "/containers/{id}/attach", h.attach)
    router.add("GET", "/containers/{id}/attach/ws", h.attach_ws)
    router.add("GET", "/containers/{id}/logs", h.logs)
    router.add("POST", "/containers/{id}/resize", h.resize)


def _stdio_flags(request: Request) -> tuple[bool, bool, bool]:
    stdin, stdout, stderr = request.flag("stdin"), request.flag("stdout"), request.flag("stderr")
    return stdin, stdout, stderr


class AttachHandlers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.containers = ctx.services.containers

    async def _connect(
        self, container: Container, stdin: bool, stdout: bool, stderr: bool
    ) -> asyncio.Task[AttachStream]:
        """Register the attach; returns once it is registered (the container may start now)
        or connected. A failure to attach is raised here, before any answer."""
        registered = asyncio.Event()

        async def waiting() -> None:
            registered.set()

        connect = asyncio.create_task(
            self.containers.attach(
                container.id,
                stdin=stdin,
                stdout=stdout or not (stdout or stderr),
                stderr=stderr or not (stdout or stderr),
                on_waiting=waiting,
            )
        )
        gate = asyncio.create_task(registered.wait())
        try:
            await asyncio.wait({connect, gate}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gate.cancel()
        if connect.done():
            connect.result()
        return connect

    async def _history(
        self, container: Container, stdout: bool, stderr: bool
    ) -> AsyncIterator[tuple[str, bytes]]:
        """attach?logs=1: what the container wrote so far."""
        source = self.containers.log_drivers.source(
            container, self.containers.files_dir(container.id)
        )
        streams = frozenset(s for s, on in (("stdout", stdout), ("stderr", stderr)) if on)
        async for rec in read_logs(source.path, source.format, streams=streams):
            yield rec.stream, rec.data

    async def attach(self, request: Request) -> Hijacked:
        container = self.containers.get(request.params["id"])
        stdin, stdout, stderr = _stdio_flags(request)
        keys = detach_keys(request.arg("detachKeys"))
        want_logs, want_stream = request.flag("logs"), request.flag("stream")
        if not (want_logs or want_stream):
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        tty = container.config.tty
        connect = await self._connect(container, stdin, stdout, stderr) if want_stream else None
        try:
            conn = await request.hijack(media_type(request, tty))
        except BaseException:
            if connect is not None:
                connect.cancel()
            raise
        try:
            if want_logs:
                # docker-py reads the answer's head through a buffered file, then the socket:
                # bytes that came with the head are lost. Our first ones come a moment later.
                await asyncio.sleep(LOGS_AFTER_HEAD)
                async for stream, data in self._history(container, stdout, stderr):
                    await conn.write(data if tty else frame(_STREAM_NUMBER[stream], data))
            if connect is not None:
                await relay(conn, await connect, tty=tty, stdin=stdin, keys=keys)
        except (ConnectionError, OSError):
            pass
        finally:
            if connect is not None and not connect.done():
                connect.cancel()
        return HIJACKED

    async def attach_ws(self, request: Request) -> Hijacked | Response:
        """The WebSocket variant: output as binary messages (raw, as with a tty), input from
        the client's messages."""
        container = self.containers.get(request.params["id"])
        stdin, stdout, stderr = _stdio_flags(request)
        keys = detach_keys(request.arg("detachKeys"))
        connect = await self._connect(container, stdin, stdout, stderr)
        raw = await request.take_over()
        handshake = ServerProtocol()
        response = handshake.accept(
            WsRequest(path=request.raw_path, headers=WsHeaders(request.ws_headers()))
        )
        handshake.send_response(response)
        await raw.write(b"".join(handshake.data_to_send()))
        if response.status_code != 101:
            connect.cancel()
            return HIJACKED
        ws = WsConnection(
            ServerProtocol(state=State.OPEN, max_size=MAX_WS_MESSAGE), raw.reader, raw.writer
        )
        ws.feed(raw.take_initial())
        stream = await connect
        await _ws_relay(ws, stream, stdin=stdin, keys=keys)
        return HIJACKED

    async def logs(self, request: Request) -> StreamResponse:
        container = self.containers.get(request.params["id"])
        stdout, stderr = request.flag("stdout"), request.flag("stderr")
        if not (stdout or stderr):
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        tail_text = request.arg("tail", "all").strip()
        try:
            tail = -1 if tail_text in ("", "all") else int(tail_text)
        except ValueError:
            raise InvalidArgument(f"invalid tail {tail_text!r}: a number or all") from None
        now = time.time_ns()
        since = (
            parse_since(request.arg("since"), now) if request.arg("since") not in ("", "0") else 0
        )
        until = (
            parse_since(request.arg("until"), now) if request.arg("until") not in ("", "0") else 0
        )
        source = self.containers.log_drivers.source(
            container, self.containers.files_dir(container.id)
        )
        tty, stamps = container.config.tty, request.flag("timestamps")
        streams = frozenset(s for s, on in (("stdout", stdout), ("stderr", stderr)) if on)

        def running() -> bool:
            try:
                return self.containers.get(container.id).state.status == Status.RUNNING
            except NotFound:
                return False

        async def chunks() -> AsyncIterator[bytes]:
            yield b""  # the headers now: a quiet `logs -f` is still an answer
            async for rec in read_logs(
                source.path,
                source.format,
                follow=request.flag("follow"),
                tail=tail,
                since_ns=since,
                until_ns=until,
                streams=streams,
                running=running,
            ):
                data = rec.data
                if stamps:
                    data = rfc3339(rec.time_ns).encode() + b" " + data
                yield data if tty else frame(_STREAM_NUMBER.get(rec.stream, 1), data)

        return StreamResponse(chunks(), content_type=media_type(request, tty))

    async def resize(self, request: Request) -> Response:
        container = self.containers.get(request.params["id"])
        rows, cols = request.int_arg("h", 0), request.int_arg("w", 0)
        if not container.running:
            raise FailedPrecondition(f"Container {container.id} is not running")
        if rows <= 0 or cols <= 0:
            raise InvalidArgument(f"invalid terminal size {rows}x{cols}")
        if container.config.tty:
            # A resize travels on an attach connection of its own, which takes no stdio.
            stream = await self.containers.shim(container).attach(
                stdin=False, stdout=False, stderr=False
            )
            try:
                await stream.resize(rows, cols)
            finally:
                await stream.close()
        return no_content(200)


async def _ws_relay(ws: WsConnection, stream: AttachStream, *, stdin: bool, keys: bytes) -> None:
    async def outbound() -> None:
        while (piece := await stream.read()) is not None:
            kind, data = piece
            if kind == EXIT:
                return
            if kind >= STDOUT and data:
                await ws.send(data)

    async def inbound() -> None:
        scanner = DetachScanner(keys) if keys else None
        while (message := await ws.receive()) is not None:
            if not stdin:
                continue
            detached = False
            if scanner is not None:
                message, detached = scanner.feed(message)
            if message:
                await stream.write_stdin(message)
            if detached:
                return

    tasks = {asyncio.create_task(outbound()), asyncio.create_task(inbound())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await stream.close()
        with contextlib.suppress(Exception):
            await ws.close()

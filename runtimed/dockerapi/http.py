"""HTTP/1.1 for the Docker API: h11 on asyncio streams.

Docker's API is plain HTTP/1.1 with keep-alive, chunked bodies both ways, and
*hijacking*: attach and exec answer `101 UPGRADED` (or `200 OK` for old
clients) and the same connection then carries raw stdio both ways. A client
that runs out of input half-closes (the docker CLI's CloseWrite) and still
reads the output to the end, so a hijacked connection must survive a
half-close. asyncio's stream protocol keeps it open (its `eof_received` says
so); aiohttp's server protocol does not (its transport closes itself on EOF)
and reaches a hijack only through its private parser hooks, so this server
drives h11, the sans-I/O parser the CRI streaming server uses too.

While a response is being made or streamed the connection is watched: a
client that hangs up (ctrl-c on `docker logs -f`, a `docker run` that went
away while waiting) cancels its handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import structlog

from runtimed.errors import InvalidArgument

log = structlog.get_logger(__name__)

READ_SIZE = 64 * 1024
MAX_HEAD = 64 * 1024  # request line and headers
MAX_JSON = 16 << 20  # a JSON request body
JSON_TYPE = "application/json"


@dataclass
class Response:
    """A whole response; `body` is sent with its length."""

    status: int = 200
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class StreamResponse:
    """A response whose body is sent chunk by chunk as `chunks` yields (chunked encoding)."""

    chunks: AsyncIterator[bytes]
    status: int = 200
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)


class Hijacked:
    """What a handler returns once it has served the connection itself."""


HIJACKED = Hijacked()
Reply = Response | StreamResponse | Hijacked


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status=status, body=json.dumps(obj).encode() + b"\n")


def no_content(status: int = 204) -> Response:
    return Response(status=status, content_type="text/plain; charset=utf-8")


def json_line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


def _declares_body(headers: dict[str, str]) -> bool:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return True
    return headers.get("content-length", "0").strip() not in ("", "0")


def _response(status: int, headers: list[tuple[str, str]]) -> h11.Response:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return h11.Response(status_code=status, headers=headers, reason=reason)


class RawStream:
    """A hijacked connection: bytes both ways, and a half-close each way."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, initial: bytes
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._initial = initial

    async def read(self) -> bytes:
        """What arrived (b"" once the client has closed its side)."""
        if self._initial:
            data, self._initial = self._initial, b""
            return data
        try:
            return await self.reader.read(READ_SIZE)
        except ConnectionError:
            return b""

    def take_initial(self) -> bytes:
        """What arrived with the request, for a handler that reads the socket itself."""
        data, self._initial = self._initial, b""
        return data

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close_write(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            if self.writer.can_write_eof():
                self.writer.write_eof()


class Request:
    """One request: method, path (without the version prefix), query, headers, body."""

    def __init__(self, conn: Connection, event: h11.Request) -> None:
        self._conn = conn
        self.method = event.method.decode("ascii")
        target = urlsplit(event.target.decode("latin-1"))
        self.raw_path = target.path
        self.path = unquote(target.path)
        self.query = parse_qs(target.query, keep_blank_values=True)
        self.headers = {n.decode("latin-1").lower(): v.decode("latin-1") for n, v in event.headers}
        self.http_version = event.http_version
        self.version: str | None = None  # the API version named in the path, if any
        self.params: dict[str, str] = {}

    # -- query -------------------------------------------------------------------------

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[-1] if values else default

    def has(self, name: str) -> bool:
        return name in self.query

    def flag(self, name: str, default: bool = False) -> bool:
        """Docker's boolean query values: absent -> default; "", 0, no, false, none -> false."""
        if name not in self.query:
            return default
        return self.arg(name).strip().lower() not in ("", "0", "no", "false", "none")

    def int_arg(self, name: str, default: int) -> int:
        text = self.arg(name).strip()
        if not text:
            return default
        try:
            return int(text)
        except ValueError:
            raise InvalidArgument(f"invalid value for {name}: {text!r} is not a number") from None

    def filters(self) -> dict[str, list[str]]:
        """The `filters` query: {"key": {"value": true}} or the older {"key": ["value"]}."""
        text = self.arg("filters")
        if not text:
            return {}
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise InvalidArgument(f"invalid filter: {exc}") from None
        if not isinstance(raw, dict):
            raise InvalidArgument("invalid filter: not a JSON object")
        out: dict[str, list[str]] = {}
        for key, value in raw.items():
            if isinstance(value, dict):
                out[key] = [str(v) for v, on in value.items() if on]
            elif isinstance(value, list):
                out[key] = [str(v) for v in value]
            else:
                raise InvalidArgument(f"invalid filter {key!r}: want a list or a map of values")
        return out

    # -- body --------------------------------------------------------------------------

    async def read(self) -> bytes:
        """The next piece of the body; b"" at its end."""
        return await self._conn.read_body()

    async def body_chunks(self) -> AsyncIterator[bytes]:
        while data := await self.read():
            yield data

    async def body(self, limit: int = MAX_JSON) -> bytes:
        parts, size = [], 0
        async for data in self.body_chunks():
            size += len(data)
            if size > limit:
                raise InvalidArgument(f"request body is larger than {limit} bytes")
            parts.append(data)
        return b"".join(parts)

    async def json(self, default: Any = None) -> Any:
        data = await self.body()
        if not data.strip():
            return default
        try:
            return json.loads(data)
        except ValueError as exc:
            raise InvalidArgument(f"invalid JSON in the request body: {exc}") from None

    # -- hijack ------------------------------------------------------------------------

    @property
    def wants_upgrade(self) -> bool:
        return "upgrade" in self.headers.get("connection", "").lower()

    async def hijack(self, content_type: str) -> RawStream:
        """Answer as dockerd does (101 UPGRADED, or 200 OK without an Upgrade request) and
        take the connection over: what follows is the handler's, raw."""
        stream = await self._conn.take_over()
        if self.wants_upgrade:
            head = (
                "HTTP/1.1 101 UPGRADED\r\n"
                f"Content-Type: {content_type}\r\n"
                "Connection: Upgrade\r\n"
                f"Upgrade: {self.headers.get('upgrade', 'tcp')}\r\n\r\n"
            )
        else:
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\r\n"
        await stream.write(head.encode("latin-1"))
        return stream

    async def take_over(self) -> RawStream:
        """The connection as it is, for a handler that answers by itself (WebSocket)."""
        return await self._conn.take_over()

    def ws_headers(self) -> list[tuple[str, str]]:
        return list(self._conn.last_headers)


Handler = Callable[[Request], Awaitable[Reply]]


class Connection:
    """One client connection: requests in turn (keep-alive) until it closes or is hijacked."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handle: Handler,
        extra_headers: Callable[[], list[tuple[str, str]]],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.handle = handle
        self.extra_headers = extra_headers
        self.http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.last_headers: list[tuple[str, str]] = []
        self._body_done = asyncio.Event()
        self._watch: asyncio.Task[bytes] | None = None
        self._hijacked = False
        self._pipelined = False

    async def _next_event(self) -> Any:
        while (event := self.http.next_event()) is h11.NEED_DATA:
            try:
                data = await self.reader.read(READ_SIZE)
            except ConnectionError:
                data = b""
            self.http.receive_data(data)
        return event

    async def serve(self) -> None:
        while True:
            try:
                event = await self._next_event()
            except h11.RemoteProtocolError as exc:
                await self._send_error(400, f"bad request: {exc}")
                return
            if not isinstance(event, h11.Request):
                return
            self.last_headers = [
                (n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers
            ]
            request = Request(self, event)
            self._body_done.clear()
            self._pipelined = False
            if not _declares_body(request.headers):
                self.http.next_event()  # its EndOfMessage: nothing to read for it
            if self.http.their_state is not h11.SEND_BODY:
                self._body_done.set()
            await self._supervise(asyncio.create_task(self._exchange(request)))
            if self._hijacked or self.http.our_state is not h11.DONE:
                return
            if not await self._drain_body():
                return
            try:
                self.http.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _exchange(self, request: Request) -> None:
        reply = await self.handle(request)
        if isinstance(reply, Hijacked):
            return
        await self._send(request, reply)

    async def _supervise(self, task: asyncio.Task[None]) -> None:
        """Wait for the exchange, cancelling it when the client hangs up meanwhile."""
        try:
            while not task.done():
                if self._hijacked or self._pipelined:
                    await asyncio.wait({task})
                    break
                if not self._body_done.is_set():
                    waiter = asyncio.create_task(self._body_done.wait())
                    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    continue
                self._watch = asyncio.create_task(self._read_quietly())
                await asyncio.wait({task, self._watch}, return_when=asyncio.FIRST_COMPLETED)
                watch, self._watch = self._watch, None
                if watch is None:  # taken over by a hijack
                    continue
                if not watch.done():
                    watch.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watch
                    continue
                data = watch.result()
                if not data:
                    # The client went away: nobody waits for the answer.
                    self._hijacked = True
                    task.cancel()
                    break
                self.http.receive_data(data)  # the next request already: keep it
                self._pipelined = True
        except asyncio.CancelledError:
            task.cancel()
            raise
        try:
            await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise  # the server is closing, not just this exchange
        except (ConnectionError, h11.LocalProtocolError):
            self._hijacked = True  # nothing more can be said on this connection

    async def _read_quietly(self) -> bytes:
        try:
            return await self.reader.read(READ_SIZE)
        except ConnectionError:
            return b""

    async def take_over(self) -> RawStream:
        self._hijacked = True
        extra = b""
        watch, self._watch = self._watch, None
        if watch is not None:
            if watch.done() and not watch.cancelled():
                extra = watch.result()
            else:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
        initial = bytes(self.http.trailing_data[0]) + extra
        return RawStream(self.reader, self.writer, initial)

    async def read_body(self) -> bytes:
        if self._body_done.is_set():
            return b""
        event = await self._next_event()
        if isinstance(event, h11.Data):
            return bytes(event.data)
        self._body_done.set()
        if isinstance(event, h11.EndOfMessage):
            return b""
        raise ConnectionResetError("the client closed the connection in the middle of a body")

    async def _drain_body(self) -> bool:
        """Skip what the handler did not read of the body, so the next request parses."""
        try:
            while await self.read_body():
                pass
        except (ConnectionError, h11.RemoteProtocolError):
            return False
        return self.http.their_state is h11.DONE

    def _headers(self, content_type: str, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [("Content-Type", content_type), *self.extra_headers(), *extra]

    async def _send(self, request: Request, reply: Response | StreamResponse) -> None:
        head_only = request.method == "HEAD"
        if isinstance(reply, Response):
            headers = self._headers(reply.content_type, reply.headers)
            headers.append(("Content-Length", str(len(reply.body))))
            self.writer.write(self.http.send(_response(reply.status, headers)))
            if reply.body and not head_only:
                self.writer.write(self.http.send(h11.Data(data=reply.body)))
            self.writer.write(self.http.send(h11.EndOfMessage()))
            await self.writer.drain()
            return
        headers = self._headers(reply.content_type, reply.headers)
        self.writer.write(self.http.send(_response(reply.status, headers)))
        await self.writer.drain()
        try:
            async for chunk in reply.chunks:
                if chunk and not head_only:
                    self.writer.write(self.http.send(h11.Data(data=chunk)))
                    await self.writer.drain()
        finally:
            close = getattr(reply.chunks, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        self.writer.write(self.http.send(h11.EndOfMessage()))
        await self.writer.drain()

    async def _send_error(self, status: int, message: str) -> None:
        body = json.dumps({"message": message}).encode() + b"\n"
        with contextlib.suppress(h11.LocalProtocolError, ConnectionError):
            headers = [
                ("Content-Type", JSON_TYPE),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
            ]
            self.writer.write(self.http.send(_response(status, headers)))
            self.writer.write(self.http.send(h11.Data(data=body)))
            self.writer.write(self.http.send(h11.EndOfMessage()))
            await self.writer.drain()

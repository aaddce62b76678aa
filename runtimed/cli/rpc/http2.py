"""A client HTTP/2 connection over a unix socket, just big enough for gRPC.

hyperframe parses and builds frames and hpack codes headers (the two libraries
the h2 package is built on; h2 itself costs 60 ms to import, which is the whole
point of not using grpcio here). One reader thread dispatches frames to their
streams; any thread may send. Flow control both ways: sends wait for window,
and receive window is handed back as the caller consumes messages, so a slow
reader (`logs | less`) holds the daemon back instead of filling memory.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import hpack
from hyperframe import frame as fr

from runtimed.cli.rpc.status import (
    ConnectError,
    RpcError,
    StatusCode,
    status_from_http,
    status_from_reset,
    status_from_trailers,
)

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DEFAULT_WINDOW = 65535
# Large windows and frames: one unix socket, one client, few streams.
_RECV_WINDOW = 16 * 1024 * 1024
_RECV_FRAME = 1024 * 1024
_CANCEL = 0x8
_MESSAGE_HEADER = struct.Struct(">BI")  # gRPC framing: compressed flag, length
# HTTP/2 frame header: 24-bit length (16 + 8), type, flags, stream id.
_FRAME_HEADER = struct.Struct(">HBBBL")
_DATA = 0x0
_END_STREAM = 0x1
_COALESCE = 64 * 1024  # smaller frames and messages are joined into one write


class Stream:
    """One call: messages arrive in `inbox`, the status last."""

    def __init__(self, conn: Connection, stream_id: int, send_window: int) -> None:
        self.conn = conn
        self.id = stream_id
        self.send_window = send_window
        # gRPC message bytes not yet complete, as the frames brought them (no copy yet).
        self.pending: collections.deque[memoryview] = collections.deque()
        self.pending_size = 0
        self.inbox: collections.deque[bytes] = collections.deque()
        self.status: RpcError | None = None  # set once the call ended (OK is code OK)
        self.headers_seen = False
        self.unacked = 0  # consumed bytes not yet handed back as window

    @property
    def done(self) -> bool:
        return self.status is not None

    def finish(self, status: RpcError) -> None:
        """Record how the call ended (the first ending wins) and wake its waiters."""
        with self.conn.cond:
            if self.status is None:
                self.status = status
            self.conn.streams.pop(self.id, None)
            self.conn.cond.notify_all()

    # --- sending ------------------------------------------------------------------

    def send_message(self, payload: bytes, *, end: bool = False) -> None:
        prefix = _MESSAGE_HEADER.pack(0, len(payload))
        if len(payload) < _COALESCE:
            self.conn.send_data(self, prefix + payload, end=end)
        else:  # a build context's megabytes: not copied again on their way out
            self.conn.send_data(self, prefix, payload, end=end)

    def end_requests(self) -> None:
        self.conn.send_data(self, end=True)

    def cancel(self) -> None:
        self.abort(RpcError(StatusCode.CANCELLED, "Locally cancelled by application!"))

    def abort(self, error: RpcError) -> None:
        """End the call on our side with `error`, and tell the server (RST_STREAM CANCEL)."""
        if not self.done:
            self.finish(error)
            self.conn.reset(self, _CANCEL)

    # --- receiving ----------------------------------------------------------------

    def next_message(self, deadline: float | None) -> bytes | None:
        """The next whole message, or None when the call ended with OK; raises the
        call's error otherwise (DEADLINE_EXCEEDED, after a reset, when `deadline` passes)."""
        increment = 0
        expired = False
        with self.conn.cond:
            while not self.inbox and not self.done:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    expired = True
                    self.finish(RpcError(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
                    break
                self.conn.cond.wait(remaining)
            message = self.inbox.popleft() if self.inbox else None
            if message is not None:
                self.unacked += len(message) + _MESSAGE_HEADER.size
                if self.unacked >= self.conn.stream_window // 2 and not self.done:
                    increment, self.unacked = self.unacked, 0
        if expired:
            self.conn.reset(self, _CANCEL)
        if increment:
            self.conn.send_frame(fr.WindowUpdateFrame(self.id, window_increment=increment))
        if message is not None:
            return message
        assert self.status is not None
        if self.status.code() is StatusCode.OK:
            return None
        raise self.status

    def feed(self, data: bytes, max_message: int) -> RpcError | None:
        """Data from the reader thread, with the connection's lock held: whole messages
        go to the inbox. Returns the error that ends the call, if the data is unusable."""
        if data:
            self.pending.append(memoryview(data))
            self.pending_size += len(data)
        while self.pending_size >= _MESSAGE_HEADER.size:
            compressed, length = _MESSAGE_HEADER.unpack(self._peek(_MESSAGE_HEADER.size))
            if length > max_message:
                return RpcError(
                    StatusCode.RESOURCE_EXHAUSTED,
                    f"received message larger than max ({length} vs. {max_message})",
                )
            if compressed:
                return RpcError(StatusCode.INTERNAL, "compressed message, never negotiated")
            if self.pending_size < _MESSAGE_HEADER.size + length:
                break
            self._take(_MESSAGE_HEADER.size)
            self.inbox.append(self._take(length))
        return None

    def _peek(self, n: int) -> bytes:
        """The first `n` pending bytes (n is small: a message header)."""
        out = b""
        for piece in self.pending:
            out += piece[: n - len(out)]
            if len(out) == n:
                break
        return out

    def _take(self, n: int) -> bytes:
        """The first `n` pending bytes, copied once into the message they make."""
        parts: list[memoryview] = []
        left = n
        while left:
            piece = self.pending.popleft()
            if len(piece) > left:
                self.pending.appendleft(piece[left:])
                piece = piece[:left]
            parts.append(piece)
            left -= len(piece)
        self.pending_size -= n
        return parts[0].tobytes() if len(parts) == 1 else b"".join(parts)


class Connection:
    """The one HTTP/2 connection of a runtimectl process, opened on the first call.

    Lock order: `wlock` (socket writes) before `cond` (state); nothing blocks on the
    socket while holding `cond`, so the reader thread can always dispatch."""

    def __init__(
        self,
        path: str,
        max_message: int,
        *,
        dial: Callable[[], Any] | None = None,
        authority: str = "localhost",
    ) -> None:
        """`path`: the daemon's unix socket; or `dial`, which returns a connected socket-like
        object (sendall, makefile("rb"), shutdown, close: the TLS one for tcp://)."""
        self.path = path
        self.dial = dial
        self.scheme = "https" if dial is not None else "http"
        self.authority = authority
        self.max_message = max_message
        # A stream's window comes back only as whole messages are read: the largest
        # message we accept, with its framing, must fit in it, or its sender waits forever.
        self.stream_window = max(_RECV_WINDOW, max_message + _MESSAGE_HEADER.size)
        self.cond = threading.Condition(threading.RLock())
        self.wlock = threading.Lock()
        self.sock: Any = None  # socket.socket, or runtimed.cli.rpc.tls.TlsSocket
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.send_window = _DEFAULT_WINDOW  # connection level
        self.peer_initial_window = _DEFAULT_WINDOW
        self.peer_max_frame = 16384
        self.recv_unacked = 0  # connection-level receive window to hand back
        self.error: RpcError | None = None  # the connection is gone
        self.goaway = False
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.reader: threading.Thread | None = None

    # --- opening and closing ------------------------------------------------------

    def open_stream(
        self, path: str, metadata: Iterable[tuple[str, str]] | None, timeout: float | None
    ) -> Stream:
        headers = [
            (":method", "POST"),
            (":scheme", self.scheme),
            (":path", path),
            (":authority", self.authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        if timeout is not None:
            headers.append(("grpc-timeout", f"{max(1, int(timeout * 1000))}m"))
        headers += [(key.lower(), value) for key, value in metadata or ()]
        with self.wlock:  # ids must reach the wire in order, and hpack state with them
            if self.error is not None:  # closed, or the connection was lost
                raise self.error
            if self.sock is None:
                self._connect()
            with self.cond:
                if self.error is not None:
                    raise self.error
                if self.goaway:
                    raise RpcError(StatusCode.UNAVAILABLE, "the daemon is shutting down")
                stream = Stream(self, self.next_id, self.peer_initial_window)
                self.next_id += 2
                self.streams[stream.id] = stream
            block = self.encoder.encode(headers)
            self._write(fr.HeadersFrame(stream.id, data=block, flags=["END_HEADERS"]).serialize())
        return stream

    def _connect(self) -> None:
        if self.dial is not None:
            sock = self.dial()
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                raise ConnectError(f"unix:{self.path}", exc) from None
        self.sock = sock
        settings = fr.SettingsFrame(
            0,
            settings={
                fr.SettingsFrame.ENABLE_PUSH: 0,
                fr.SettingsFrame.INITIAL_WINDOW_SIZE: self.stream_window,
                fr.SettingsFrame.MAX_FRAME_SIZE: _RECV_FRAME,
            },
        )
        grow = fr.WindowUpdateFrame(0, window_increment=_RECV_WINDOW - _DEFAULT_WINDOW)
        self._write(_PREFACE + settings.serialize() + grow.serialize())
        self.reader = threading.Thread(target=self._read_loop, name="rpc-reader", daemon=True)
        self.reader.start()

    def close(self) -> None:
        with self.cond:
            sock, self.sock = self.sock, None
        # Calls still waiting (a request thread on flow control, say) end now.
        self._fail(RpcError(StatusCode.CANCELLED, "channel closed"))
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self.reader is not None and self.reader is not threading.current_thread():
            self.reader.join(timeout=1)

    # --- sending ------------------------------------------------------------------

    def _write(self, data: bytes | memoryview) -> None:
        """Write with `wlock` held; a broken socket ends every call."""
        try:
            assert self.sock is not None
            self.sock.sendall(data)
        except ConnectError as exc:  # TLS: refused by the daemon
            self._fail(exc)
        except (OSError, AssertionError) as exc:
            self._fail(RpcError(StatusCode.UNAVAILABLE, f"connection to the daemon lost: {exc}"))

    def send_frame(self, frame: fr.Frame) -> None:
        with self.wlock:
            if self.sock is not None:
                self._write(frame.serialize())

    def reset(self, stream: Stream, error_code: int) -> None:
        self.send_frame(fr.RstStreamFrame(stream.id, error_code=error_code))

    def send_data(self, stream: Stream, *parts: bytes, end: bool) -> None:
        """Send `parts` as one run of DATA frames within the flow-control windows; stops
        quietly if the call ends meanwhile (the caller then reads its status)."""
        views = collections.deque(memoryview(p) for p in parts if p)
        remaining = sum(len(v) for v in views)
        while True:
            with self.cond:
                size = 0
                while remaining:
                    if stream.done:
                        return
                    size = min(remaining, self.send_window, stream.send_window)
                    size = min(size, self.peer_max_frame)
                    if size > 0:
                        break
                    self.cond.wait()
                if stream.done:
                    return
                self.send_window -= size
                stream.send_window -= size
            pieces: list[memoryview] = []
            left = size
            while left:
                view = views.popleft()
                if len(view) > left:
                    views.appendleft(view[left:])
                    view = view[:left]
                pieces.append(view)
                left -= len(view)
            remaining -= size
            flags = _END_STREAM if end and not remaining else 0
            header = _FRAME_HEADER.pack(size >> 8, size & 0xFF, _DATA, flags, stream.id)
            with self.wlock:
                if self.sock is None:
                    return
                if size < _COALESCE:
                    self._write(header + b"".join(pieces))
                else:  # the frame's bytes go out as they are, no joined copy
                    self._write(header)
                    for piece in pieces:
                        if self.error is None:
                            self._write(piece)
            if not remaining:
                return

    # --- receiving ----------------------------------------------------------------

    def _read_loop(self) -> None:
        sock = self.sock
        assert sock is not None
        rfile = sock.makefile("rb", buffering=256 * 1024)
        block = bytearray()  # a header block spread over HEADERS + CONTINUATION
        try:
            while True:
                head = rfile.read(9)
                if len(head) < 9:
                    raise ConnectionError("the daemon closed the connection")
                frame, length = fr.Frame.parse_frame_header(memoryview(head))
                body = rfile.read(length) if length else b""
                if len(body) < length:
                    raise ConnectionError("the daemon closed the connection")
                if isinstance(frame, fr.DataFrame) and "PADDED" not in frame.flags:
                    frame.data = body  # as read: hyperframe's parse_body would copy it
                    frame.body_len = length
                else:
                    frame.parse_body(memoryview(body))
                if isinstance(frame, fr.HeadersFrame | fr.ContinuationFrame):
                    if isinstance(frame, fr.HeadersFrame):
                        block.clear()
                        end_stream = "END_STREAM" in frame.flags
                    block += frame.data
                    if "END_HEADERS" in frame.flags:
                        # Decode every block, even for forgotten streams: hpack state.
                        self._on_headers(frame.stream_id, self._decode(block), end_stream)
                else:
                    self._on_frame(frame)
        except ConnectError as exc:  # TLS: the daemon refused our certificate, say
            self._fail(exc)
        except Exception as exc:  # noqa: BLE001 - any failure here ends every call
            self._fail(RpcError(StatusCode.UNAVAILABLE, f"connection to the daemon lost: {exc}"))
        finally:
            rfile.close()

    def _decode(self, block: bytearray) -> dict[str, str]:
        return {str(name): str(value) for name, value in self.decoder.decode(bytes(block))}

    def _on_headers(self, stream_id: int, headers: dict[str, str], end_stream: bool) -> None:
        with self.cond:
            stream = self.streams.get(stream_id)
            if stream is None:
                return
            first = not stream.headers_seen
            stream.headers_seen = True
            if first and headers.get(":status", "200") != "200":
                stream.finish(status_from_http(headers.get(":status", "")))
            elif end_stream:
                stream.finish(status_from_trailers(headers) or RpcError(StatusCode.OK, ""))

    def _on_frame(self, frame: fr.Frame) -> None:
        if isinstance(frame, fr.SettingsFrame) and "ACK" not in frame.flags:
            # Acknowledge before using: grpc-core holds us to the old limits (frame
            # size, windows) until our ACK arrives, and writes keep their order.
            with self.wlock:
                if self.sock is not None:
                    self._write(fr.SettingsFrame(0, flags=["ACK"]).serialize())
                with self.cond:
                    self._apply_settings(frame.settings)
            return
        reply: fr.Frame | None = None
        reset: Stream | None = None
        with self.cond:
            stream = self.streams.get(frame.stream_id)
            if isinstance(frame, fr.DataFrame):
                self.recv_unacked += frame.flow_controlled_length
                if self.recv_unacked >= _RECV_WINDOW // 2:
                    reply = fr.WindowUpdateFrame(0, window_increment=self.recv_unacked)
                    self.recv_unacked = 0
                if stream is not None:
                    error = stream.feed(frame.data, self.max_message)
                    if error is not None:
                        stream.finish(error)
                        reset = stream
                    elif "END_STREAM" in frame.flags:
                        stream.finish(RpcError(StatusCode.INTERNAL, "call ended without status"))
                    self.cond.notify_all()
            elif isinstance(frame, fr.WindowUpdateFrame):
                if frame.stream_id == 0:
                    self.send_window += frame.window_increment
                elif stream is not None:
                    stream.send_window += frame.window_increment
                self.cond.notify_all()
            elif isinstance(frame, fr.PingFrame) and "ACK" not in frame.flags:
                reply = fr.PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"])
            elif isinstance(frame, fr.RstStreamFrame) and stream is not None:
                stream.finish(status_from_reset(frame.error_code))
            elif isinstance(frame, fr.GoAwayFrame):
                self.goaway = True
                for late in [s for s in self.streams.values() if s.id > frame.last_stream_id]:
                    late.finish(RpcError(StatusCode.UNAVAILABLE, "the daemon is shutting down"))
        if reply is not None:
            self.send_frame(reply)
        if reset is not None:
            self.reset(reset, _CANCEL)

    def _apply_settings(self, settings: dict[int, int]) -> None:
        """The daemon's settings; called with `cond` held."""
        if fr.SettingsFrame.INITIAL_WINDOW_SIZE in settings:
            value = settings[fr.SettingsFrame.INITIAL_WINDOW_SIZE]
            delta, self.peer_initial_window = value - self.peer_initial_window, value
            for stream in self.streams.values():
                stream.send_window += delta
        if fr.SettingsFrame.MAX_FRAME_SIZE in settings:
            self.peer_max_frame = settings[fr.SettingsFrame.MAX_FRAME_SIZE]
        if fr.SettingsFrame.HEADER_TABLE_SIZE in settings:
            self.encoder.header_table_size = settings[fr.SettingsFrame.HEADER_TABLE_SIZE]
        self.cond.notify_all()

    def _fail(self, error: RpcError) -> None:
        with self.cond:
            if self.error is None:
                self.error = error
            for stream in list(self.streams.values()):
                stream.finish(error)
            self.cond.notify_all()

"""One connection to the shim socket: a request line, then maybe a frame stream.

Output to a client goes through a bounded buffer: a client that reads too
slowly loses output frames rather than slowing the container (its log has
everything). Control answers and exit frames are never dropped.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable

from runtimed_shim.loop import Loop
from runtimed_shim.protocol import MAX_REQUEST, FrameDecoder, encode_line

TYPE_CHECKING = False  # typing costs every shim ~2 MB; annotations are strings
if TYPE_CHECKING:
    from typing import Any

    RequestHandler = Callable[["Client", dict[str, Any]], None]
    FrameHandler = Callable[["Client", int, bytes], None]
    CloseHandler = Callable[["Client"], None]

OUTPUT_LIMIT = 1 << 20


class Client:
    __slots__ = (
        "loop",
        "sock",
        "fd",
        "inbuf",
        "out",
        "decoder",
        "on_request",
        "on_frame",
        "on_close",
        "closing",
        "paused",
        "dropped",
        "wants",
        "stdin",
    )

    def __init__(self, loop: Loop, sock: socket.socket, on_request: RequestHandler) -> None:
        sock.setblocking(False)
        self.loop = loop
        self.sock: socket.socket | None = sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.out = bytearray()
        self.decoder: FrameDecoder | None = None
        self.on_request: RequestHandler | None = on_request
        self.on_frame: FrameHandler | None = None
        self.on_close: CloseHandler | None = None
        self.closing = False
        self.paused = False
        self.dropped = 0
        self.wants: frozenset[int] = frozenset()  # output stream types it gets
        self.stdin = False  # whether its stdin frames are taken
        loop.set_reader(self.fd, self._readable)

    @property
    def open(self) -> bool:
        return self.sock is not None

    # -- input -----------------------------------------------------------------

    def _readable(self) -> None:
        if self.sock is None:
            return
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        if self.decoder is not None:
            self._frames(data)
            return
        self.inbuf += data
        nl = self.inbuf.find(b"\n")
        if nl < 0:
            if len(self.inbuf) > MAX_REQUEST:
                self.reply_error("request too large")
            return
        line, rest = bytes(self.inbuf[:nl]), bytes(self.inbuf[nl + 1 :])
        self.inbuf.clear()
        self.loop.set_reader(self.fd, self._after_request)
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            self.reply_error(f"bad request: {exc}")
            return
        handler, self.on_request = self.on_request, None
        if handler is not None:
            handler(self, request)
        if rest and self.decoder is not None:
            self._frames(rest)

    def _after_request(self) -> None:
        """After the request: frames if the op streams, else only watch for the peer leaving."""
        if self.decoder is not None:
            self._readable()
            return
        if self.sock is None:
            return
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()

    def _frames(self, data: bytes) -> None:
        assert self.decoder is not None
        try:
            frames = self.decoder.feed(data)
        except ValueError:
            self.close()
            return
        for kind, payload in frames:
            if self.on_frame is not None and self.sock is not None:
                self.on_frame(self, kind, payload)

    def start_frames(self, on_frame: FrameHandler) -> None:
        self.decoder = FrameDecoder()
        self.on_frame = on_frame
        self.loop.set_reader(self.fd, self._readable)

    def pause(self) -> None:
        """Stop reading frames (the stdin they feed is full) until resume()."""
        if self.sock is not None and not self.paused:
            self.paused = True
            self.loop.set_reader(self.fd, None)

    def resume(self) -> None:
        if self.sock is not None and self.paused:
            self.paused = False
            self.loop.set_reader(self.fd, self._readable)

    # -- output ----------------------------------------------------------------

    def send(self, data: bytes, droppable: bool = False) -> None:
        if self.sock is None:
            return
        if droppable and len(self.out) + len(data) > OUTPUT_LIMIT:
            self.dropped += len(data)
            return
        if not self.out:
            try:
                n = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self.close()
                return
            if n == len(data):
                return
            data = data[n:]
        self.out += data
        self.loop.set_writer(self.fd, self._writable)

    def _writable(self) -> None:
        if self.sock is None:
            return
        try:
            n = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        del self.out[:n]
        if not self.out:
            self.loop.set_writer(self.fd, None)
            if self.closing:
                self.close()

    def reply(self, obj: dict[str, Any]) -> None:
        self.send(encode_line(obj))

    def reply_error(self, message: str) -> None:
        self.send(encode_line({"ok": False, "error": message}))
        self.finish()

    def finish(self) -> None:
        """Close once everything queued has been sent."""
        self.closing = True
        if not self.out:
            self.close()

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is None:
            return
        self.loop.forget(self.fd)
        with contextlib.suppress(OSError):
            sock.close()
        self.out.clear()
        handler, self.on_close = self.on_close, None
        if handler is not None:
            handler(self)

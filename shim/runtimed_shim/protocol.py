"""Wire format of the shim socket and helpers for long unix socket paths.

Requests and answers are one JSON object per line. After an `attach` or
`exec` answer the connection carries frames: 1 byte type, 4 bytes big-endian
payload length, payload.
"""

from __future__ import annotations

import json
import os
import socket
import struct

STDIN = 0  # client -> shim: data for the process's stdin
STDOUT = 1  # shim -> client (with a tty, all output)
STDERR = 2  # shim -> client
RESIZE = 3  # client -> shim: JSON {"rows", "cols"}
CLOSE_STDIN = 4  # client -> shim: no more stdin
EXIT = 5  # shim -> client: JSON state object, then EOF

HEADER = struct.Struct("!BI")
MAX_FRAME = 1 << 20
MAX_REQUEST = 1 << 20
# sun_path holds 108 bytes including the terminating NUL.
MAX_SUN_PATH = 107


def encode_frame(kind: int, payload: bytes) -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: feed bytes, get complete (type, payload) frames."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        frames: list[tuple[int, bytes]] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= HEADER.size:
            kind, size = HEADER.unpack_from(buf, pos)
            if size > MAX_FRAME:
                raise ValueError(f"frame of {size} bytes is larger than {MAX_FRAME}")
            end = pos + HEADER.size + size
            if len(buf) < end:
                break
            frames.append((kind, bytes(buf[pos + HEADER.size : end])))
            pos = end
        del buf[:pos]
        return frames


def encode_line(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _short(path: str) -> tuple[str, int | None]:
    """A path usable as sun_path: long ones go through /proc/self/fd/N of an O_PATH dir."""
    if len(os.fsencode(path)) <= MAX_SUN_PATH:
        return path, None
    parent, name = os.path.split(path)
    fd = os.open(parent or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{name}", fd


def bind_unix(sock: socket.socket, path: str) -> None:
    short, fd = _short(path)
    try:
        sock.bind(short)
    finally:
        if fd is not None:
            os.close(fd)


def connect_unix(sock: socket.socket, path: str) -> None:
    short, fd = _short(path)
    try:
        sock.connect(short)
    finally:
        if fd is not None:
            os.close(fd)

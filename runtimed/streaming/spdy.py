"""SPDY/3.1 framing and header compression, as kubelet's streaming clients speak it.

No maintained Python library speaks SPDY, and Kubernetes still uses it for
exec, attach and port-forward (client-go's SPDY executor, moby/spdystream), so
the wire format lives here. Sans I/O: `FrameReader.feed()` turns bytes into
frames, the `encode_*` functions turn frames into bytes; the session on top
(spdyconn.py) owns the socket.

Facts of the format (SPDY draft 3 and 3.1):
- every frame has an 8-byte header. A control frame starts with the bit 1,
  15 bits of version (3), 16 bits of type, then 8 bits of flags and 24 bits of
  length; a data frame starts with the bit 0 and a 31-bit stream id, then
  flags and length alike;
- SYN_STREAM, SYN_REPLY and HEADERS carry a name/value header block: a 32-bit
  count, then for each pair a 32-bit length and the lower-case name, a 32-bit
  length and the value (several values joined by NUL);
- header blocks are zlib-compressed with one stream per direction for the
  whole session, primed with a fixed dictionary, each block ending in a sync
  flush.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

VERSION = 3

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes used here.
PROTOCOL_ERROR = 1
REFUSED_STREAM = 3
CANCEL = 5
INTERNAL_ERROR = 6

# GOAWAY status codes.
GOAWAY_OK = 0

MAX_DATA = (1 << 24) - 1
MAX_STREAM_ID = (1 << 31) - 1
# Header blocks are small (a handful of k8s headers); a bigger one is an attack.
MAX_HEADER_BLOCK = 256 * 1024

_FRAME_HEAD = struct.Struct("!II")
_U32 = struct.Struct("!I")


def _dictionary() -> bytes:
    """The spec's zlib dictionary: length-prefixed header names and common values, then
    a run of status codes, dates and media types with no prefixes (1423 bytes)."""
    words = (  # noqa: SIM905 - the spec's list, readable as written
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control connection "
        "content-base content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires from host if-match "
        "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
        "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
        "server te trailer transfer-encoding upgrade user-agent vary via warning "
        "www-authenticate method get status 200_OK version HTTP/1.1 url public set-cookie "
        "keep-alive origin"
    ).split()
    prefixed = b"".join(_U32.pack(len(w)) + w.replace("_", " ").encode() for w in words)
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
        "charset=iso-8859-1,utf-,*,enq=0."
    )
    return prefixed + tail.encode()


DICTIONARY = _dictionary()


class SpdyError(Exception):
    """The peer broke the protocol; the session must end (with GOAWAY if possible)."""


Headers = dict[str, list[str]]


# -- frames -------------------------------------------------------------------------


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    associated_id: int
    priority: int
    headers: Headers
    fin: bool
    unidirectional: bool


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers
    fin: bool


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    fin: bool


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: list[tuple[int, int, int]] = field(default_factory=list)  # (flags, id, value)


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_stream_id: int
    status: int


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class Unknown:
    """A control frame of a type we do not handle (CREDENTIAL, future ones): ignored."""

    frame_type: int


Frame = (
    Data
    | SynStream
    | SynReply
    | HeadersFrame
    | RstStream
    | Settings
    | Ping
    | GoAway
    | WindowUpdate
    | Unknown
)


# -- header blocks --------------------------------------------------------------------


class HeaderCompressor:
    """One direction's header compression: a single zlib stream for the session."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zdict=DICTIONARY)

    def compress(self, headers: Mapping[str, str | Iterable[str]]) -> bytes:
        parts = [_U32.pack(len(headers))]
        for name, value in headers.items():
            raw_name = name.lower().encode()
            values = [value] if isinstance(value, str) else list(value)
            raw_value = b"\0".join(v.encode() for v in values)
            parts += [_U32.pack(len(raw_name)), raw_name, _U32.pack(len(raw_value)), raw_value]
        block = b"".join(parts)
        return self._z.compress(block) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The other direction: inflate with the dictionary, then parse the pairs."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(zdict=DICTIONARY)

    def decompress(self, compressed: bytes) -> Headers:
        try:
            block = self._z.decompress(compressed, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise SpdyError(f"bad header block compression: {exc}") from None
        if self._z.unconsumed_tail:
            raise SpdyError("header block too large")
        return parse_header_block(block)


def parse_header_block(block: bytes) -> Headers:
    try:
        (count,) = _U32.unpack_from(block, 0)
        pos = 4
        headers: Headers = {}
        for _ in range(count):
            (size,) = _U32.unpack_from(block, pos)
            name = block[pos + 4 : pos + 4 + size].decode()
            pos += 4 + size
            (size,) = _U32.unpack_from(block, pos)
            value = block[pos + 4 : pos + 4 + size].decode()
            pos += 4 + size
            if pos > len(block) or not name:
                raise SpdyError("truncated header block")
            headers.setdefault(name.lower(), []).extend(value.split("\0"))
    except (struct.error, UnicodeDecodeError) as exc:
        raise SpdyError(f"malformed header block: {exc}") from None
    return headers


# -- encoding -----------------------------------------------------------------------------


def _control(frame_type: int, flags: int, payload: bytes) -> bytes:
    return _FRAME_HEAD.pack(0x80000000 | VERSION << 16 | frame_type, flags << 24 | len(payload)) + (
        payload
    )


def encode_data(stream_id: int, data: bytes, fin: bool = False) -> bytes:
    """One or more data frames (a frame holds at most MAX_DATA bytes)."""
    if len(data) <= MAX_DATA:
        flags = FLAG_FIN if fin else 0
        return _FRAME_HEAD.pack(stream_id & MAX_STREAM_ID, flags << 24 | len(data)) + data
    chunks = [data[i : i + MAX_DATA] for i in range(0, len(data), MAX_DATA)]
    return b"".join(
        encode_data(stream_id, chunk, fin and i == len(chunks) - 1)
        for i, chunk in enumerate(chunks)
    )


def encode_syn_stream(
    compressor: HeaderCompressor,
    stream_id: int,
    headers: Mapping[str, str | Iterable[str]],
    *,
    fin: bool = False,
    associated_id: int = 0,
    priority: int = 0,
) -> bytes:
    flags = FLAG_FIN if fin else 0
    payload = struct.pack("!IIBB", stream_id, associated_id, (priority & 7) << 5, 0)
    return _control(SYN_STREAM, flags, payload + compressor.compress(headers))


def encode_syn_reply(
    compressor: HeaderCompressor,
    stream_id: int,
    headers: Mapping[str, str | Iterable[str]],
    *,
    fin: bool = False,
) -> bytes:
    flags = FLAG_FIN if fin else 0
    return _control(SYN_REPLY, flags, _U32.pack(stream_id) + compressor.compress(headers))


def encode_rst_stream(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack("!II", stream_id, status))


def encode_ping(ping_id: int) -> bytes:
    return _control(PING, 0, _U32.pack(ping_id))


def encode_goaway(last_stream_id: int, status: int = GOAWAY_OK) -> bytes:
    return _control(GOAWAY, 0, struct.pack("!II", last_stream_id, status))


def encode_window_update(stream_id: int, delta: int) -> bytes:
    return _control(WINDOW_UPDATE, 0, struct.pack("!II", stream_id, delta))


# -- decoding -------------------------------------------------------------------------------


class FrameReader:
    """Incremental parser of one direction of a session."""

    def __init__(self, max_frame: int = MAX_DATA) -> None:
        self._buf = bytearray()
        self._headers = HeaderDecompressor()
        self._max_frame = max_frame

    def feed(self, data: bytes) -> list[Frame]:
        # Parse straight from `data` when nothing is pending (the common case with big
        # reads): each payload is copied once, and only an unfinished frame is kept.
        if self._buf:
            self._buf += data
            source: bytes | bytearray = self._buf
        else:
            source = data
        frames: list[Frame] = []
        view = memoryview(source)
        pos = 0
        try:
            while len(source) - pos >= 8:
                first, second = _FRAME_HEAD.unpack_from(source, pos)
                length = second & 0xFFFFFF
                if length > self._max_frame:
                    raise SpdyError(f"frame of {length} bytes is too large")
                if len(source) - pos < 8 + length:
                    break
                payload = view[pos + 8 : pos + 8 + length].tobytes()
                pos += 8 + length
                flags = second >> 24
                if first & 0x80000000:
                    version = (first >> 16) & 0x7FFF
                    if version != VERSION:
                        raise SpdyError(f"unsupported SPDY version {version}")
                    frames.append(self._control(first & 0xFFFF, flags, payload))
                else:
                    frames.append(Data(first, payload, bool(flags & FLAG_FIN)))
            rest = view[pos:].tobytes() if pos < len(source) else b""
        finally:
            view.release()
        self._buf = bytearray(rest)
        return frames

    def _control(self, frame_type: int, flags: int, payload: bytes) -> Frame:
        fin = bool(flags & FLAG_FIN)
        try:
            if frame_type == SYN_STREAM:
                stream_id, associated, prio = struct.unpack_from("!IIB", payload)
                return SynStream(
                    stream_id & MAX_STREAM_ID,
                    associated & MAX_STREAM_ID,
                    prio >> 5,
                    self._headers.decompress(payload[10:]),
                    fin,
                    bool(flags & FLAG_UNIDIRECTIONAL),
                )
            if frame_type in (SYN_REPLY, HEADERS):
                (stream_id,) = _U32.unpack_from(payload)
                headers = self._headers.decompress(payload[4:])
                cls = SynReply if frame_type == SYN_REPLY else HeadersFrame
                return cls(stream_id & MAX_STREAM_ID, headers, fin)
            if frame_type == RST_STREAM:
                stream_id, status = struct.unpack_from("!II", payload)
                return RstStream(stream_id & MAX_STREAM_ID, status)
            if frame_type == SETTINGS:
                (count,) = _U32.unpack_from(payload)
                entries = []
                for i in range(count):
                    head, value = struct.unpack_from("!II", payload, 4 + 8 * i)
                    entries.append((head >> 24, head & 0xFFFFFF, value))
                return Settings(entries)
            if frame_type == PING:
                return Ping(_U32.unpack_from(payload)[0])
            if frame_type == GOAWAY:
                last, status = struct.unpack_from("!II", payload)
                return GoAway(last & MAX_STREAM_ID, status)
            if frame_type == WINDOW_UPDATE:
                stream_id, delta = struct.unpack_from("!II", payload)
                return WindowUpdate(stream_id & MAX_STREAM_ID, delta & MAX_STREAM_ID)
        except struct.error as exc:
            raise SpdyError(f"short control frame of type {frame_type}: {exc}") from None
        return Unknown(frame_type)

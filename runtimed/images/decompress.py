"""Streams in any compression a docker user may send (gzip, zstd, bzip2, xz or none),
known by their first bytes and decompressed chunk by chunk.

Every format may hold several streams back to back (gzip members, bzip2 and xz
streams, zstd frames), as `cat a.gz b.gz` makes: each is restarted at its end.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from typing import Any, Protocol

import zstandard

SNIFF = 6  # bytes that tell the formats apart
ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError)


class Decompressor(Protocol):
    def feed(self, data: bytes) -> bytes: ...


class _Plain:
    def feed(self, data: bytes) -> bytes:
        return data


class _Restarting:
    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
        self.current = make()

    def feed(self, data: bytes) -> bytes:
        out = []
        while data:
            out.append(self.current.decompress(data))
            if not self.current.eof:
                break
            data = self.current.unused_data
            self.current = self.make()
        return b"".join(out)


def _zstd() -> Any:
    return zstandard.ZstdDecompressor().decompressobj()


def decompressor(head: bytes) -> tuple[str, Decompressor]:
    """The format whose magic `head` (at least SNIFF bytes, unless the stream is shorter)
    starts with, and a decompressor for it; ("tar", pass-through) for anything else."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip", _Restarting(lambda: zlib.decompressobj(wbits=31))
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd", _Restarting(_zstd)
    if head.startswith(b"BZh"):
        return "bzip2", _Restarting(bz2.BZ2Decompressor)
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz", _Restarting(lzma.LZMADecompressor)
    return "tar", _Plain()


class Sniffing:
    """A decompressor for a stream of unknown format, fed chunk by chunk: the first
    SNIFF bytes are held until they tell the format (`kind`, "tar" until then)."""

    def __init__(self) -> None:
        self.kind = "tar"
        self._head = b""
        self._decoder: Decompressor | None = None

    def feed(self, data: bytes) -> bytes:
        if self._decoder is None:
            self._head += data
            if len(self._head) < SNIFF:
                return b""
            data, self._head = self._head, b""
            self.kind, self._decoder = decompressor(data)
        return self._decoder.feed(data)

    def end(self) -> bytes:
        """The stream is over: what a stream shorter than SNIFF bytes decompresses to."""
        if self._decoder is not None or not self._head:
            return b""
        data, self._head = self._head, b""
        self.kind, self._decoder = decompressor(data)
        return self._decoder.feed(data)

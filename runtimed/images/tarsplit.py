"""A layer's tar stream, kept as its framing so it can be rebuilt byte for byte.

An unpacked layer keeps only files; `save` (and later `push`) must hand out
the very tar stream whose sha256 is the diff_id in the image config, or no
other tool will accept the image. Docker solves this with tar-split; this is
the same idea: while a layer is unpacked, every byte of the uncompressed
stream that is not regular-file content (headers, PAX records, padding, the
end-of-archive blocks) is recorded, and each file's content is recorded as a
reference to the file the unpacker wrote. Rebuilding reads the two back in
order. The framing is a few hundred bytes per entry, gzip-compressed.

A layer whose stream cannot be rebuilt from what was unpacked (a path written
twice, a file deleted again by a later entry, a sparse file) gets no framing,
and saving it later fails with a clear error; pulling it does not.

File format (inside gzip): MAGIC, then records: b"R" u32 length, raw bytes;
b"F" u16 length, path (UTF-8, surrogateescape), u64 size; b"E" u64 total size.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import struct
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from runtimed.errors import DataLoss

MAGIC = b"RTSPLIT1"
FRAMING_NAME = "tar-split.gz"
_FLUSH = 1 << 20
# Headers and padding of a sane layer are small; more than this is garbage after the archive.
_MAX_RAW = 64 << 20
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WHITEOUT = ".wh."

Parts = tuple[str, ...]


def _parts(name: str) -> Parts:
    """Lexical clean-up of a member name (the unpacker refuses the bad ones itself)."""
    out: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if out:
                out.pop()
        else:
            out.append(comp)
    return tuple(out)


class FramingRecorder:
    """Fed every uncompressed byte of a layer in order, and every member before its data is read.

    Regular-file content is dropped as it streams past (its bytes are in the
    unpacked file); everything else is written to the framing file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out: IO[bytes] | None = gzip.open(  # noqa: SIM115 - closed by finish/close
            path, "wb", compresslevel=6
        )
        self._out.write(MAGIC)
        self._pending = bytearray()
        self._buf = bytearray()  # stream bytes [_base, _base + len(_buf)) not yet framed
        self._base = 0
        self._pos = 0  # stream bytes seen so far
        self._skip_until = 0
        self._raw_total = 0
        self.unusable: str | None = None
        self._refs: set[Parts] = set()
        self._ref_dirs: set[Parts] = set()

    # -- stream ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        start = self._pos
        self._pos += len(data)
        if self.unusable is not None:
            return
        if self._skip_until > start:
            drop = min(len(data), self._skip_until - start)
            data = data[drop:]
        self._buf += data

    def member(self, member: tarfile.TarInfo) -> None:
        """Call as tarfile yields `member`, before its content is read."""
        if self.unusable is not None:
            return
        parts = _parts(member.name)
        self._check_overwrite(member, parts)
        if self.unusable is not None:
            return
        self._raw_upto(member.offset_data)
        name = parts[-1] if parts else ""
        if (
            member.isreg()
            and member.size > 0
            and not member.sparse
            and parts
            and not name.startswith(_WHITEOUT)
        ):
            self._flush_pending()
            encoded = "/".join(parts).encode("utf-8", "surrogateescape")
            assert self._out is not None
            self._out.write(b"F" + struct.pack(">H", len(encoded)) + encoded)
            self._out.write(struct.pack(">Q", member.size))
            end = member.offset_data + member.size
            have = self._base + len(self._buf)
            if have >= end:
                del self._buf[: end - self._base]
            else:
                self._buf.clear()
                self._skip_until = end
            self._base = end
            self._refs.add(parts)
            for i in range(1, len(parts)):
                self._ref_dirs.add(parts[:i])
        elif member.sparse:
            self._give_up(f"entry {member.name!r} is a sparse file")

    def _check_overwrite(self, member: tarfile.TarInfo, parts: Parts) -> None:
        if parts in self._refs or (parts in self._ref_dirs and not member.isdir()):
            self._give_up(f"entry {member.name!r} replaces content written earlier in the layer")
            return
        name = parts[-1] if parts else ""
        if name.startswith(_WHITEOUT) and name != ".wh..wh..opq":
            hidden = (*parts[:-1], name[len(_WHITEOUT) :])
            if hidden in self._refs or hidden in self._ref_dirs:
                self._give_up(f"entry {member.name!r} deletes content written earlier in the layer")

    def _raw_upto(self, end: int) -> None:
        take = end - self._base
        if take <= 0:
            return
        self._pending += self._buf[:take]
        del self._buf[:take]
        self._base = end
        self._raw_total += take
        if self._raw_total > _MAX_RAW:
            self._give_up("its headers and padding exceed 64 MiB")
        elif len(self._pending) >= _FLUSH:
            self._flush_pending()

    def _flush_pending(self) -> None:
        if self._pending and self._out is not None:
            self._out.write(b"R" + struct.pack(">I", len(self._pending)))
            self._out.write(self._pending)
            self._pending.clear()

    def _give_up(self, why: str) -> None:
        self.unusable = why
        self._buf.clear()
        self._pending.clear()

    # -- end ------------------------------------------------------------------

    def finish(self) -> None:
        """After the whole stream was fed: write the tail and the total, or drop the file."""
        if self.unusable is None:
            self._raw_upto(self._pos)
        if self.unusable is None:
            self._flush_pending()
            assert self._out is not None
            self._out.write(b"E" + struct.pack(">Q", self._pos))
        self.close()
        if self.unusable is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def _records(framing: Path) -> Iterator[tuple[str, bytes, int]]:
    """(kind, payload, number) per record: ("R", raw, len), ("F", path, size), ("E", b"", total)."""
    with gzip.open(framing, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise DataLoss(f"layer framing {framing} is not in a known format")
        while kind := f.read(1):
            if kind == b"R":
                (length,) = struct.unpack(">I", f.read(4))
                yield "R", f.read(length), length
            elif kind == b"F":
                (length,) = struct.unpack(">H", f.read(2))
                path = f.read(length)
                (size,) = struct.unpack(">Q", f.read(8))
                yield "F", path, size
            elif kind == b"E":
                (total,) = struct.unpack(">Q", f.read(8))
                yield "E", b"", total
                return
            else:
                break
    raise DataLoss(f"layer framing {framing} is truncated")


def tar_size(framing: Path) -> int:
    """Bytes of the rebuilt tar stream (the layer's uncompressed size)."""
    for kind, _payload, number in _records(framing):
        if kind == "E":
            return number
    raise DataLoss(f"layer framing {framing} is truncated")  # pragma: no cover - _records raises


def _open_file(root_fd: int, path: bytes) -> int:
    """Open a file of the layer by its recorded path, following no symlink on the way."""
    parts = path.split(b"/")
    fd = os.dup(root_fd)
    try:
        for comp in parts[:-1]:
            nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


def rebuild(diff_dir: Path, framing: Path, expected_diff_id: str) -> Iterator[bytes]:
    """The layer's original tar stream, in chunks; DataLoss if it does not hash to its diff_id."""
    digest = hashlib.sha256()
    root_fd = os.open(diff_dir, _DIR_FLAGS)
    try:
        for kind, payload, number in _records(framing):
            if kind == "R":
                digest.update(payload)
                yield payload
            elif kind == "F":
                yield from _file_chunks(root_fd, payload, number, digest, diff_dir)
    finally:
        os.close(root_fd)
    actual = "sha256:" + digest.hexdigest()
    if actual != expected_diff_id:
        raise DataLoss(
            f"layer {expected_diff_id} rebuilt to {actual}: its files changed on disk since "
            "it was unpacked; remove the image and pull or load it again"
        )


def _file_chunks(
    root_fd: int, path: bytes, size: int, digest: hashlib._Hash, diff_dir: Path
) -> Iterator[bytes]:
    try:
        fd = _open_file(root_fd, path)
    except OSError as exc:
        raise DataLoss(
            f"layer file {path.decode(errors='replace')!r} in {diff_dir} is missing "
            f"({exc.strerror}); remove the image and pull or load it again"
        ) from None
    try:
        left = size
        while left:
            data = os.read(fd, min(_CHUNK, left))
            if not data:
                raise DataLoss(
                    f"layer file {path.decode(errors='replace')!r} in {diff_dir} is shorter "
                    "than when it was unpacked; remove the image and pull or load it again"
                )
            left -= len(data)
            digest.update(data)
            yield data
    finally:
        os.close(fd)

"""Container log files: the CRI format kubelet reads, Docker's json-file and local.

All formats split output into lines the same way: a line longer than
MAX_LINE is written as partial chunks followed by its final piece; an
unterminated tail is written as a partial when its stream ends. Files are
appended with plain write(2) on an O_APPEND descriptor, never fsynced per
line: a container's output must not wait for the disk.

Written log pages leave the page cache soon after they reach the disk (see
LogFile.trim): a chatty container neither fills the node's memory with its log
nor keeps asking the kernel for fresh pages, which on VMs that hand freed
memory back to the host cost several times what reused ones do. (A file
rotated below that step is never trimmed: max-size x max-file bounds it.)

Rotation (json-file, local) follows Docker: before a write that would pass
max-size the file is renamed to `<path>.1` (older ones shift to `.2` ...
`.N-1`), and with compress the rotated file becomes `<path>.1.gz` in the
background.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time

from runtimed_shim.atomicfile import create_temp
from runtimed_shim.logdriver import PartialTracker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

MAX_LINE = 16 * 1024
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
# Every TRIM_STEP bytes a log file's newest pages start writeback and older written-back
# ones are dropped: about the newest two steps stay cached for followers.
TRIM_STEP = 16 << 20


Run = tuple[list[bytes], bool]  # consecutive pieces (without newline), all complete or not


def _add(runs: list[Run], piece: bytes, complete: bool) -> None:
    if runs and runs[-1][1] is complete:
        runs[-1][0].append(piece)
    else:
        runs.append(([piece], complete))


class LineSplitter:
    """Cut a byte stream into runs of lines (complete) or chunks (partial).

    Works per read, not per line: the common case (no line longer than
    MAX_LINE) is one split() in C, which is what makes logging fast.
    """

    __slots__ = ("_buf", "_max")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = b""
        self._max = max_line

    def feed(self, data: bytes) -> list[Run]:
        buf = self._buf + data if self._buf else data
        limit = self._max
        runs: list[Run] = []
        last = buf.rfind(b"\n")
        if last >= 0:
            lines = buf[:last].split(b"\n")
            if max(map(len, lines)) <= limit:
                runs.append((lines, True))
            else:
                for line in lines:
                    start = 0
                    while len(line) - start > limit:
                        _add(runs, line[start : start + limit], False)
                        start += limit
                    _add(runs, line[start:] if start else line, True)
            buf = buf[last + 1 :]
        # Hold an unterminated tail up to one full line, so how the output was
        # chunked by reads does not change where lines are split.
        start = 0
        while len(buf) - start > limit:
            _add(runs, buf[start : start + limit], False)
            start += limit
        self._buf = buf[start:] if start else buf
        return runs

    def feed_block(self, data: bytes) -> bytes | None:
        """The common case in one piece: the complete lines so far joined by newlines
        (without the last one), when none is longer than the limit and the rest fits in
        the buffer; else None, and nothing was consumed (call feed())."""
        buf = self._buf + data if self._buf else data
        last = buf.rfind(b"\n")
        limit = self._max
        if last < 0 or len(buf) - last - 1 > limit:
            return None
        # Every window of limit+1 bytes up to the last newline must hold a newline.
        start = 0
        while last - start >= limit:
            found = buf.rfind(b"\n", start, start + limit + 1)
            if found < 0:
                return None
            start = found + 1
        self._buf = buf[last + 1 :]
        return buf[:last]

    def flush(self) -> list[Run]:
        tail, self._buf = self._buf, b""
        return [([tail], False)] if tail else []


_second_cache: tuple[int, str] = (-1, "")


def rfc3339nano(ns: int) -> str:
    """UTC time as Go's time.RFC3339Nano prints it: trailing zeros of the fraction trimmed."""
    global _second_cache
    sec, frac = divmod(ns, 1_000_000_000)
    if _second_cache[0] != sec:
        t = time.gmtime(sec)
        _second_cache = (
            sec,
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}",
        )
    digits = f"{frac:09d}".rstrip("0")
    return f"{_second_cache[1]}.{digits}Z" if digits else f"{_second_cache[1]}Z"


# -- formats -------------------------------------------------------------------


def cri_run(stream: str, pieces: list[bytes], complete: bool, stamp: str) -> bytes:
    """`<time> <stream> <F|P> <content>\\n` per piece, the format kubelet parses."""
    prefix = f"{stamp} {stream} {'F' if complete else 'P'} ".encode()
    return prefix + (b"\n" + prefix).join(pieces) + b"\n"


def cri_line(stream: str, content: bytes, complete: bool, stamp: str) -> bytes:
    return cri_run(stream, [content], complete, stamp)


def _json_escapes() -> dict[int, str]:
    # Docker's json-file writer: Go's HTML-safe escaping, lowercase hex, and
    # one \ufffd per byte that is not valid UTF-8 (surrogateescape'd here).
    table = {c: f"\\u{c:04x}" for c in range(0x20)}
    table.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
    table.update({ord('"'): '\\"', ord("\\"): "\\\\"})
    table.update({ord(c): f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"})
    table.update({c: "\\ufffd" for c in range(0xDC80, 0xDD00)})
    return table


_JSON_ESCAPES = _json_escapes()
# For a run, pieces are joined with raw newlines (no piece holds one) that
# then become record boundaries.
_JSON_RUN_ESCAPES = {c: e for c, e in _JSON_ESCAPES.items() if c != ord("\n")}


def json_attrs(attrs: dict[str, str]) -> str:
    """The `"attrs":{...}` member as Go's json.Marshal writes a map: sorted, HTML-safe."""
    if not attrs:
        return ""
    text = json.dumps(attrs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return f',"attrs":{text}'


def json_run(
    stream: str, pieces: list[bytes], complete: bool, stamp: str, attrs: str = ""
) -> bytes:
    """json-file records, keys in Docker's order; partial chunks carry no trailing newline.

    Pieces come from LineSplitter and hold no newline; `attrs` is json_attrs().
    """
    return json_block(stream, b"\n".join(pieces), complete, stamp, attrs)


# Bytes JSON escapes in ASCII text (Go's HTML-safe set; \n separates the lines of a block).
# Ints, not 1-byte strings: `int in bytes` is a bare memchr, three times faster on a read's
# worth of output than a substring search.
_JSON_SPECIAL = [c for c in range(0x20) if c != 0x0A] + [ord(c) for c in '"\\<>&']


def json_block(stream: str, block: bytes, complete: bool, stamp: str, attrs: str = "") -> bytes:
    """json-file records of the newline-separated lines of `block` (no final newline)."""
    return b"".join(json_block_parts(stream, block, complete, stamp, attrs))


def json_block_parts(
    stream: str, block: bytes, complete: bool, stamp: str, attrs: str = ""
) -> tuple[bytes, ...]:
    """json_block in pieces that are written as they are (writev), never joined.

    Plain ASCII needs no escaping and is framed with one bytes.replace in C: that is
    what keeps json-file fast (joining the frame around it would copy the whole
    block twice more, as much as the replace costs). Anything else goes through
    Go-compatible escaping.
    """
    newline = "\\n" if complete else ""
    end = f'{newline}","stream":"{stream}"{attrs},"time":"{stamp}"}}\n'
    if block.isascii() and not any(map(block.__contains__, _JSON_SPECIAL)):
        tail = end.encode()
        return (b'{"log":"', block.replace(b"\n", tail + b'{"log":"'), tail)
    text = block.decode("utf-8", "surrogateescape").translate(_JSON_RUN_ESCAPES)
    return (('{"log":"' + text.replace("\n", end + '{"log":"') + end).encode(),)


def json_line(stream: str, content: bytes, complete: bool, stamp: str) -> bytes:
    return json_run(stream, [content], complete, stamp)


# -- Docker's local format: length-framed protobuf LogEntry records ----------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_VARINTS = [bytes([n]) for n in range(128)]


def _field_bytes(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def local_attrs(attrs: dict[str, str]) -> bytes:
    """The repeated LogAttr field (6) of every record, sorted like Docker's."""
    return b"".join(
        _field_bytes(6, _field_bytes(1, k.encode()) + _field_bytes(2, v.encode()))
        for k, v in sorted(attrs.items())
    )


def local_record(
    stream: str,
    time_ns: int,
    line: bytes,
    partial: tuple[str, int, bool] | None = None,
    attrs: bytes = b"",
) -> bytes:
    """One record: 4-byte big-endian size, protobuf LogEntry, the same size again.

    LogEntry: source=1, time_nano=2, line=3, partial=4, partial_log_metadata=5
    {last=1, id=2, ordinal=3}, attrs=6 {key=1, value=2}.
    """
    body = _field_bytes(1, stream.encode()) if stream else b""
    if time_ns:
        body += b"\x10" + _varint(time_ns)
    if line:
        body += _field_bytes(3, line)
    if partial is not None:
        pid, ordinal, last = partial
        meta = (b"\x08\x01" if last else b"") + _field_bytes(2, pid.encode())
        if ordinal:
            meta += b"\x18" + _varint(ordinal)
        body += b"\x20\x01" + _field_bytes(5, meta)
    body += attrs
    size = len(body).to_bytes(4, "big")
    return size + body + size


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        kind = key & 7
        if kind == 0:
            value, pos = _read_varint(data, pos)
        elif kind == 2:
            size, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif kind == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif kind == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {kind}")
        out.append((key >> 3, value))
    return out


def decode_local(body: bytes) -> dict[str, Any]:
    """A LogEntry body as {"source", "time_nano", "line", "partial", "last", "attrs"}."""
    entry: dict[str, Any] = {
        "source": "",
        "time_nano": 0,
        "line": b"",
        "partial": False,
        "last": False,
        "attrs": {},
    }
    for number, value in _fields(body):
        if number == 1:
            entry["source"] = value.decode("utf-8", "replace")
        elif number == 2:
            entry["time_nano"] = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 3:
            entry["line"] = bytes(value)
        elif number == 4:
            entry["partial"] = bool(value)
        elif number == 5:
            entry["last"] = any(n == 1 and v for n, v in _fields(value))
        elif number == 6:
            pair = dict(_fields(value))
            key = pair.get(1, b"").decode("utf-8", "replace")
            entry["attrs"][key] = pair.get(2, b"").decode("utf-8", "replace")
    return entry


# -- files -----------------------------------------------------------------------


class LogFile:
    """An append-only file with Docker's max-size / max-file rotation."""

    def __init__(
        self, path: str, max_size: int = 0, max_file: int = 1, compress: bool = False
    ) -> None:
        self.path = path
        self.max_size = max(0, max_size)
        self.max_file = max(1, max_file)
        self.compress = compress and self.max_file > 1 and self.max_size > 0
        self.fd = -1
        self.size = 0
        self.dropped = 0
        self.trimmed = 0  # the size at the last trim()
        self._trim_ok = False  # a regular file (a FIFO or a tty has no pages to drop)
        self._compressor: Any = None
        self.reopen()

    def reopen(self) -> None:
        """Open (again) at the same path: after kubelet or logrotate renamed the file."""
        fd = os.open(self.path, _OPEN_FLAGS, 0o640)
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = fd
        st = os.fstat(fd)
        self.size = self.trimmed = st.st_size
        self._trim_ok = stat.S_ISREG(st.st_mode)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._wait_compressor()

    def append(self, blob: bytes, records: Callable[[], list[bytes]]) -> None:
        """Write blob; if it would pass max-size, rotate between the records it is made of."""
        if not self.max_size or self.size + len(blob) <= self.max_size:
            self._write_all(blob)
            return
        batch: list[bytes] = []
        pending = 0
        for record in records():
            if self.size + pending + len(record) > self.max_size and self.size + pending > 0:
                self._write_all(b"".join(batch))
                batch, pending = [], 0
                self._rotate()
            batch.append(record)
            pending += len(record)
        if batch:
            self._write_all(b"".join(batch))

    def append_text(self, parts: tuple[bytes, ...]) -> None:
        """Newline-ended records given in pieces: written as they are, no join, unless this
        write rotates the file (then the records are split out as append does)."""
        if self.max_size and self.size + sum(map(len, parts)) > self.max_size:
            blob = b"".join(parts)
            self.append(blob, _lines(blob))
            return
        self._write_all(*parts)

    def _write_all(self, *parts: bytes) -> None:
        """Write every part, in order, with writev (one part is a plain write)."""
        try:
            n = os.writev(self.fd, parts)
            self.size += n
            if n < sum(map(len, parts)):  # a short write: go on from where it stopped
                self._write_rest(parts, n)
        except OSError:
            # A full disk must not stop the container: count what was lost.
            self.dropped += sum(map(len, parts))
        if self.size - self.trimmed >= TRIM_STEP and self._trim_ok:
            self.trim()

    def _write_rest(self, parts: tuple[bytes, ...], done: int) -> None:
        # Rare (a full disk, a signal): one joined copy is simpler than slicing the parts.
        rest = memoryview(b"".join(parts))[done:]
        try:
            while rest:
                n = os.write(self.fd, rest)
                self.size += n
                rest = rest[n:]
        except OSError:
            self.dropped += len(rest)

    def trim(self) -> None:
        """Start writeback of what was written since the last trim, and drop from the page
        cache what earlier trims sent to the disk and is clean by now.

        One POSIX_FADV_DONTNEED over the whole file does both without waiting: it starts
        writeback of the dirty pages (the newest step) and drops only clean ones (the steps
        before it, once written; any still being written go at the next trim).
        """
        with contextlib.suppress(OSError):
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        self.trimmed = self.size

    def _rotate(self) -> None:
        if self.max_file < 2:
            os.ftruncate(self.fd, 0)
            self.size = self.trimmed = 0
            return
        self._wait_compressor()
        suffix = ".gz" if self.compress else ""
        # Shift only the rotated files that exist (.1 .. .n, contiguous): the cost follows
        # what is on disk, not max-file (which may be huge).
        present = 0
        while present < self.max_file - 1 and os.path.exists(f"{self.path}.{present + 1}{suffix}"):
            present += 1
        for i in range(min(present + 1, self.max_file - 1), 1, -1):
            os.rename(f"{self.path}.{i - 1}{suffix}", f"{self.path}.{i}{suffix}")
        os.rename(self.path, f"{self.path}.1")
        self.reopen()
        if self.compress:
            import threading

            self._compressor = threading.Thread(
                target=compress_file, args=(f"{self.path}.1",), daemon=True
            )
            self._compressor.start()

    def _wait_compressor(self) -> None:
        if self._compressor is not None:
            self._compressor.join()
            self._compressor = None


def compress_file(path: str) -> None:
    """path -> path.gz (written under a temporary name), then path goes; readers that see
    both read only the plain one."""
    import zlib

    fd, tmp = create_temp(f"{path}.gz", 0o640)
    try:
        with open(fd, "wb") as dst, open(path, "rb") as src:
            # Level 1: a rotated log is compressed while the container keeps logging,
            # in the shim's own CPU time; the fastest level costs a third of the default.
            packer = zlib.compressobj(1, zlib.DEFLATED, 31)
            while chunk := src.read(1 << 20):
                dst.write(packer.compress(chunk))
            dst.write(packer.flush())
        os.rename(tmp, f"{path}.gz")
        os.unlink(path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# -- writers -------------------------------------------------------------------


class LogWriter:
    """Base of the file drivers: format runs of lines and append them.

    `emit(stream, runs, time_ns)` is the driver interface (runs already split);
    `write(stream, data)` / `end(stream)` split a raw stream first.
    """

    max_line = MAX_LINE
    threaded = False

    def __init__(self, path: str, max_size: int = 0, max_file: int = 1, compress: bool = False):
        self.path = path
        self.file = LogFile(path, max_size, max_file, compress)
        self._splitters: dict[str, LineSplitter] = {}

    @property
    def dropped(self) -> int:
        return self.file.dropped

    @property
    def fd(self) -> int:
        return self.file.fd

    def reopen(self) -> None:
        self.file.reopen()

    def close(self) -> None:
        self.file.close()

    def write(self, stream: str, data: bytes, now_ns: int | None = None) -> None:
        splitter = self._splitters.get(stream)
        if splitter is None:
            splitter = self._splitters[stream] = LineSplitter(self.max_line)
        runs = splitter.feed(data)
        if runs:
            self.emit(stream, runs, time.time_ns() if now_ns is None else now_ns)

    def end(self, stream: str, now_ns: int | None = None) -> None:
        """The stream closed: its unterminated tail is written as a partial line."""
        splitter = self._splitters.get(stream)
        if splitter is not None:
            runs = splitter.flush()
            if runs:
                self.emit(stream, runs, time.time_ns() if now_ns is None else now_ns)

    def emit(self, stream: str, runs: list[Run], time_ns: int) -> None:
        raise NotImplementedError


def _lines(blob: bytes) -> Callable[[], list[bytes]]:
    # Text formats end every record with a newline and hold none inside one.
    return lambda: [line + b"\n" for line in blob.split(b"\n")[:-1]]


class CriLog(LogWriter):
    def emit(self, stream: str, runs: list[Run], time_ns: int) -> None:
        stamp = rfc3339nano(time_ns)
        blob = b"".join([cri_run(stream, pieces, complete, stamp) for pieces, complete in runs])
        self.file.append(blob, _lines(blob))

    def emit_block(self, stream: str, block: bytes, time_ns: int) -> None:
        """Complete lines joined by newlines (see LineSplitter.feed_block)."""
        prefix = f"{rfc3339nano(time_ns)} {stream} F ".encode()
        self.file.append_text((prefix, block.replace(b"\n", b"\n" + prefix), b"\n"))


class JsonFileLog(LogWriter):
    """Docker's json-file, rotated by size like Docker's max-size / max-file."""

    def __init__(
        self,
        path: str,
        max_size: int = 0,
        max_file: int = 1,
        compress: bool = False,
        attrs: dict[str, str] | None = None,
    ) -> None:
        self.attrs = json_attrs(attrs or {})
        super().__init__(path, max_size, max_file, compress)

    def emit(self, stream: str, runs: list[Run], time_ns: int) -> None:
        stamp = rfc3339nano(time_ns)
        attrs = self.attrs
        blob = b"".join(
            [json_run(stream, pieces, complete, stamp, attrs) for pieces, complete in runs]
        )
        self.file.append(blob, _lines(blob))

    def emit_block(self, stream: str, block: bytes, time_ns: int) -> None:
        parts = json_block_parts(stream, block, True, rfc3339nano(time_ns), self.attrs)
        self.file.append_text(parts)


class LocalLog(LogWriter):
    """Docker's local driver (and the cache of drivers that cannot be read back)."""

    def __init__(
        self,
        path: str,
        max_size: int = 20 * 1024 * 1024,
        max_file: int = 5,
        compress: bool = True,
        attrs: dict[str, str] | None = None,
    ) -> None:
        self.attrs = local_attrs(attrs or {})
        self.partials = PartialTracker()
        super().__init__(path, max_size, max_file, compress)

    def emit(self, stream: str, runs: list[Run], time_ns: int) -> None:
        records: list[bytes] = []
        mark, attrs = self.partials.mark, self.attrs
        # Source and time are the same for every record of a read: encode them once.
        head = (_field_bytes(1, stream.encode()) if stream else b"") + (
            b"\x10" + _varint(time_ns) if time_ns else b""
        )
        fixed = len(head) + len(attrs)
        for pieces, complete in runs:
            if not complete:  # chunks of a long line: partial metadata (rare)
                records += [local_record(stream, time_ns, p, mark(stream, False), attrs)
                            for p in pieces]  # fmt: skip
                continue
            lines = pieces
            last_chunk = mark(stream, True)  # the first piece may end a split line
            if last_chunk is not None:
                records.append(local_record(stream, time_ns, pieces[0], last_chunk, attrs))
                lines = pieces[1:]
            for line in lines:
                n = len(line)
                field = b"\x1a" + (_VARINTS[n] if n < 128 else _varint(n)) + line if n else b""
                size = (fixed + len(field)).to_bytes(4, "big")
                records.append(size + head + field + attrs + size)
        self.file.append(b"".join(records), lambda: records)


class NoLog:
    """Driver "none": output only goes to attached clients."""

    max_line = MAX_LINE
    threaded = False
    path = ""
    dropped = 0
    fd = -1

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass

    def emit(self, stream: str, runs: list[Run], time_ns: int) -> None:
        pass

    def write(self, stream: str, data: bytes, now_ns: int | None = None) -> None:
        pass

    def end(self, stream: str, now_ns: int | None = None) -> None:
        pass


def open_builtin(config: dict[str, Any]) -> LogWriter | NoLog:
    """A legacy ShimConfig "log" object ({"driver", "path", "max_size", "max_file"}):
    the writers the shim has built in, for callers that name no plugin."""
    driver = config.get("driver") or "none"
    if driver == "none":
        return NoLog()
    path = config.get("path") or ""
    if not path:
        raise ValueError(f"log driver {driver} needs a path")
    if driver == "cri":
        return CriLog(path)
    if driver == "json-file":
        return JsonFileLog(path, int(config.get("max_size") or 0), int(config.get("max_file") or 1))
    raise ValueError(f"unknown log driver {driver!r} (the shim writes json-file, cri or none)")

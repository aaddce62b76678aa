"""Container log files: the CRI format kubelet reads and Docker's json-file.

Both split output into lines the same way: a line longer than MAX_LINE is
written as partial chunks followed by its final piece; an unterminated tail
is written as a partial when its stream ends. Files are appended with plain
write(2) on an O_APPEND descriptor, never fsynced per line: a container's
output must not wait for the disk.
"""

from __future__ import annotations

import contextlib
import os
import time

MAX_LINE = 16 * 1024
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC


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


def json_run(stream: str, pieces: list[bytes], complete: bool, stamp: str) -> bytes:
    """json-file records, keys in Docker's order; partial chunks carry no trailing newline.

    Pieces come from LineSplitter and hold no newline.
    """
    newline = "\\n" if complete else ""
    end = f'{newline}","stream":"{stream}","time":"{stamp}"}}\n'
    text = b"\n".join(pieces).decode("utf-8", "surrogateescape").translate(_JSON_RUN_ESCAPES)
    return ('{"log":"' + text.replace("\n", end + '{"log":"') + end).encode()


def json_line(stream: str, content: bytes, complete: bool, stamp: str) -> bytes:
    return json_run(stream, [content], complete, stamp)


# -- writers -------------------------------------------------------------------


class LogWriter:
    """Base: split per stream, format, append. Subclasses choose the format."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._splitters: dict[str, LineSplitter] = {}
        self.dropped = 0
        self.fd = -1
        self.size = 0
        self.reopen()

    def reopen(self) -> None:
        """Open (again) at the same path: after kubelet or logrotate renamed the file."""
        fd = os.open(self.path, _OPEN_FLAGS, 0o640)
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = fd
        self.size = os.fstat(fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def write(self, stream: str, data: bytes, now_ns: int | None = None) -> None:
        splitter = self._splitters.get(stream)
        if splitter is None:
            splitter = self._splitters[stream] = LineSplitter()
        runs = splitter.feed(data)
        if runs:
            self._emit(stream, runs, now_ns)

    def end(self, stream: str, now_ns: int | None = None) -> None:
        """The stream closed: its unterminated tail is written as a partial line."""
        splitter = self._splitters.get(stream)
        if splitter is not None:
            runs = splitter.flush()
            if runs:
                self._emit(stream, runs, now_ns)

    def _emit(self, stream: str, runs: list[Run], now_ns: int | None) -> None:
        stamp = rfc3339nano(time.time_ns() if now_ns is None else now_ns)
        fmt = self.format
        self._append(b"".join([fmt(stream, pieces, complete, stamp) for pieces, complete in runs]))

    def format(self, stream: str, pieces: list[bytes], complete: bool, stamp: str) -> bytes:
        raise NotImplementedError

    def _append(self, blob: bytes) -> None:
        self._write_all(blob)

    def _write_all(self, blob: bytes) -> None:
        view = memoryview(blob)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
                self.size += n
        except OSError:
            # A full disk must not stop the container: count what was lost.
            self.dropped += len(view)


class CriLog(LogWriter):
    format = staticmethod(cri_run)


class JsonFileLog(LogWriter):
    """Docker's json-file, rotated by size like Docker's max-size / max-file."""

    format = staticmethod(json_run)

    def __init__(self, path: str, max_size: int = 0, max_file: int = 1) -> None:
        self.max_size = max(0, max_size)
        self.max_file = max(1, max_file)
        super().__init__(path)

    def _append(self, blob: bytes) -> None:
        if not self.max_size or self.size + len(blob) <= self.max_size:
            self._write_all(blob)
            return
        # Rotation falls between records; a record holds no raw newline (JSON escapes it).
        batch: list[bytes] = []
        pending = 0
        for record in blob.split(b"\n")[:-1]:
            size = len(record) + 1
            if self.size + pending + size > self.max_size and self.size + pending > 0:
                self._write_all(b"\n".join(batch) + b"\n" if batch else b"")
                batch, pending = [], 0
                self._rotate()
            batch.append(record)
            pending += size
        if batch:
            self._write_all(b"\n".join(batch) + b"\n")

    def _rotate(self) -> None:
        if self.max_file < 2:
            os.ftruncate(self.fd, 0)
            self.size = 0
            return
        for i in range(self.max_file - 1, 0, -1):
            older = f"{self.path}.{i - 1}" if i > 1 else self.path
            with contextlib.suppress(FileNotFoundError):
                os.rename(older, f"{self.path}.{i}")
        self.reopen()


class NoLog(LogWriter):
    """Driver "none": output only goes to attached clients."""

    def __init__(self) -> None:
        self.path = ""
        self.dropped = 0
        self.fd = -1

    def reopen(self) -> None:
        pass

    def write(self, stream: str, data: bytes, now_ns: int | None = None) -> None:
        pass

    def end(self, stream: str, now_ns: int | None = None) -> None:
        pass


def open_log(config: dict) -> LogWriter:
    """The writer a ShimConfig's "log" object asks for; OSError if the file cannot be opened."""
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

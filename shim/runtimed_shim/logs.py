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


class LineSplitter:
    """Cut a byte stream into (content, complete) pieces without their newline."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = b""
        self._max = max_line

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        buf = self._buf + data if self._buf else data
        out: list[tuple[bytes, bool]] = []
        start = 0
        limit = self._max
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            while nl - start > limit:
                out.append((buf[start : start + limit], False))
                start += limit
            out.append((buf[start:nl], True))
            start = nl + 1
        # Hold an unterminated tail up to one full line, so how the output was
        # chunked by reads does not change where lines are split.
        while len(buf) - start > limit:
            out.append((buf[start : start + limit], False))
            start += limit
        self._buf = buf[start:]
        return out

    def flush(self) -> list[tuple[bytes, bool]]:
        tail, self._buf = self._buf, b""
        return [(tail, False)] if tail else []


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


def cri_line(stream: str, content: bytes, complete: bool, stamp: str) -> bytes:
    """`<time> <stream> <F|P> <content>\\n`, the format kubelet parses."""
    tag = b" F " if complete else b" P "
    return b"".join((stamp.encode(), b" ", stream.encode(), tag, content, b"\n"))


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


def json_escape(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape").translate(_JSON_ESCAPES)


def json_line(stream: str, content: bytes, complete: bool, stamp: str) -> bytes:
    """One json-file record; partial chunks carry no trailing newline."""
    text = json_escape(content)
    nl = "\\n" if complete else ""
    return f'{{"log":"{text}{nl}","stream":"{stream}","time":"{stamp}"}}\n'.encode()


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
        pieces = splitter.feed(data)
        if pieces:
            self._emit(stream, pieces, now_ns)

    def end(self, stream: str, now_ns: int | None = None) -> None:
        """The stream closed: its unterminated tail is written as a partial line."""
        splitter = self._splitters.get(stream)
        if splitter is not None:
            pieces = splitter.flush()
            if pieces:
                self._emit(stream, pieces, now_ns)

    def _emit(self, stream: str, pieces: list[tuple[bytes, bool]], now_ns: int | None) -> None:
        stamp = rfc3339nano(time.time_ns() if now_ns is None else now_ns)
        fmt = self.format
        self._append([fmt(stream, content, complete, stamp) for content, complete in pieces])

    def format(self, stream: str, content: bytes, complete: bool, stamp: str) -> bytes:
        raise NotImplementedError

    def _append(self, records: list[bytes]) -> None:
        self._write_all(b"".join(records))

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
    format = staticmethod(cri_line)


class JsonFileLog(LogWriter):
    """Docker's json-file, rotated by size like Docker's max-size / max-file."""

    format = staticmethod(json_line)

    def __init__(self, path: str, max_size: int = 0, max_file: int = 1) -> None:
        self.max_size = max(0, max_size)
        self.max_file = max(1, max_file)
        super().__init__(path)

    def _append(self, records: list[bytes]) -> None:
        if not self.max_size:
            self._write_all(b"".join(records))
            return
        batch: list[bytes] = []
        pending = 0
        for record in records:
            if self.size + pending + len(record) > self.max_size and self.size + pending > 0:
                self._write_all(b"".join(batch))
                batch, pending = [], 0
                self._rotate()
            batch.append(record)
            pending += len(record)
        self._write_all(b"".join(batch))

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

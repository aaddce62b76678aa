"""Reading what the shim wrote: json-file, Docker's local format and the CRI format.

The daemon only reads logs; the shim writes them. Rotated files
(`<path>.1` newest ... `.N`, plain or `.gz`) are read oldest first, as Docker
does. `--tail` reads backwards from the end, so the last lines of a large
log come without reading all of it. `--follow` keeps the current file open:
when the writer rotates it, the rest of the old file is read first, then any
file rotated past us meanwhile, then the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import json
import os
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from runtimed_shim.logs import decode_local

from runtimed.errors import InvalidArgument

FOLLOW_POLL = 0.05
# gRPC metadata a ContainerLogs caller sends for `logs --details` (the request has no field).
DETAILS_METADATA = "runtimed-log-details"
BATCH = 2000
BLOCK = 1 << 16


@dataclass(frozen=True)
class LogRecord:
    stream: str
    data: bytes
    time_ns: int
    attrs: dict[str, str] = field(default_factory=dict)


def parse_time(text: str) -> int:
    """RFC 3339 (up to nanoseconds) to nanoseconds since the epoch."""
    text = text.strip()
    head, dot, rest = text.partition(".")
    nanos = 0
    zone = ""
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        nanos = int((digits + "000000000")[:9])
    else:
        for sep in ("Z", "+", "-"):
            idx = head.rfind(sep)
            if idx > 10:
                head, zone = head[:idx], head[idx:]
                break
    zone = "+00:00" if zone in ("Z", "") else zone
    try:
        base = dt.datetime.fromisoformat(head + zone)
    except ValueError:
        raise InvalidArgument(f"invalid timestamp {text!r}") from None
    return int(base.timestamp()) * 1_000_000_000 + nanos


def parse_since(text: str, now_ns: int) -> int:
    """docker logs --since/--until: RFC 3339, unix seconds[.frac], or a duration (10m, 1h30m)."""
    if not text:
        return 0
    units = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    total, number, i = 0, "", 0
    is_duration = text[-1] in "smh" and not text.replace(".", "").isdigit()
    if is_duration:
        while i < len(text):
            c = text[i]
            if c.isdigit() or c == ".":
                number += c
                i += 1
                continue
            unit = text[i : i + 2] if text[i : i + 2] in units else text[i]
            if unit not in units or not number:
                raise InvalidArgument(f"invalid duration {text!r}")
            total += int(float(number) * units[unit])
            number = ""
            i += len(unit)
        if number:
            raise InvalidArgument(f"invalid duration {text!r}: missing unit")
        return now_ns - total
    try:
        return int(float(text) * 1_000_000_000)
    except ValueError:
        return parse_time(text)


def details_prefix(attrs: dict[str, str]) -> bytes:
    """`logs --details`: Docker's `k=v,k2=v2 ` (sorted, query-escaped) before the line."""
    pairs = [
        f"{urllib.parse.quote_plus(k)}={urllib.parse.quote_plus(v)}"
        for k, v in sorted(attrs.items())
    ]
    return ",".join(pairs).encode() + b" "


# -- formats ----------------------------------------------------------------------


def _json_record(line: bytes) -> LogRecord | None:
    try:
        doc = json.loads(line)
        attrs = doc.get("attrs") or {}
        return LogRecord(doc["stream"], doc["log"].encode(), parse_time(doc["time"]), attrs)
    except (ValueError, KeyError, TypeError, AttributeError, InvalidArgument):
        return None


def _cri_record(line: bytes) -> LogRecord | None:
    """`<time> <stream> <P|F> <content>`: F ends a line, P is a piece of a longer one."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    content = parts[3] if len(parts) == 4 else b""
    if parts[2] == b"F":
        content += b"\n"
    try:
        return LogRecord(parts[1].decode(), content, parse_time(parts[0].decode()))
    except (InvalidArgument, UnicodeDecodeError):
        return None


def _local_record(body: bytes) -> LogRecord | None:
    try:
        entry = decode_local(body)
    except (ValueError, IndexError):
        return None
    data = entry["line"]
    if not entry["partial"] or entry["last"]:
        data += b"\n"
    return LogRecord(entry["source"], data, entry["time_nano"], entry["attrs"])


class _Format:
    """Record framing of one format: forwards and backwards over a readable file."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.binary = name == "local"
        self.parse_line = _cri_record if name == "cri" else _json_record

    def forward(self, f: IO[bytes]) -> Iterator[tuple[LogRecord | None, int]]:
        """(record, bytes consumed) for every complete record from the position of f."""
        if self.binary:
            while True:
                head = f.read(4)
                if len(head) < 4:
                    return
                size = int.from_bytes(head, "big")
                rest = f.read(size + 4)
                if len(rest) < size + 4:
                    return  # a record still being written
                yield _local_record(rest[:size]), size + 8
        else:
            for line in f:
                if not line.endswith(b"\n"):
                    return  # a record still being written
                yield self.parse_line(line), len(line)

    def split(self, buf: bytes) -> tuple[list[LogRecord | None], int]:
        """Complete records at the start of buf and how many bytes they took."""
        records: list[LogRecord | None] = []
        if self.binary:
            pos = 0
            while len(buf) - pos >= 8:
                size = int.from_bytes(buf[pos : pos + 4], "big")
                if len(buf) - pos < size + 8:
                    break
                records.append(_local_record(buf[pos + 4 : pos + 4 + size]))
                pos += size + 8
            return records, pos
        end = buf.rfind(b"\n") + 1
        if end:
            records = [self.parse_line(line + b"\n") for line in buf[: end - 1].split(b"\n")]
        return records, end

    def backward(self, f: IO[bytes], size: int) -> Iterator[LogRecord | None]:
        """Records from the end of a plain file to its start."""
        if self.binary:
            end = size
            while end >= 8:
                f.seek(end - 4)
                length = int.from_bytes(f.read(4), "big")
                start = end - length - 8
                if start < 0:
                    return
                f.seek(start + 4)
                yield _local_record(f.read(length))
                end = start
            return
        end, tail = size, b""
        while end > 0:
            start = max(0, end - BLOCK)
            f.seek(start)
            chunk = f.read(end - start) + tail
            lines = chunk.split(b"\n")
            tail = lines[0] if start > 0 else b""
            body = lines[1:] if start > 0 else lines
            for line in reversed(body):
                if line:
                    yield self.parse_line(line + b"\n")
            end = start
        if tail:
            yield self.parse_line(tail + b"\n")


def log_files(path: Path) -> list[Path]:
    """Rotated files oldest first, then the current one; `.N` wins over a `.N.gz` being made."""
    rotated: dict[int, Path] = {}
    for p in path.parent.glob(path.name + ".*"):
        rest = p.name[len(path.name) + 1 :]
        number, _, gz = rest.partition(".")
        if not number.isdigit() or gz not in ("", "gz"):
            continue
        if int(number) not in rotated or gz == "":
            rotated[int(number)] = p
    return [rotated[n] for n in sorted(rotated, reverse=True)] + [path]


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")  # type: ignore[return-value]


def _first_record(path: Path, fmt: _Format) -> bytes:
    """The first record's raw bytes: a rotated file's identity, however it was renamed."""
    try:
        with _open(path) as f:
            if fmt.binary:
                head = f.read(4)
                return head + f.read(int.from_bytes(head, "big") + 4) if len(head) == 4 else b""
            return f.readline()
    except (OSError, EOFError):
        return b""


# -- reading ------------------------------------------------------------------------


@dataclass
class _Filter:
    streams: frozenset[str]
    since_ns: int
    until_ns: int

    def __call__(self, rec: LogRecord | None) -> bool:
        return (
            rec is not None
            and rec.stream in self.streams
            and rec.time_ns >= self.since_ns
            and (not self.until_ns or rec.time_ns <= self.until_ns)
        )


def _tail(
    sources: list[Path | tuple[Path, int]], fmt: _Format, wanted: _Filter, count: int
) -> list[LogRecord]:
    """The last `count` wanted records, reading backwards from the end."""
    found: list[LogRecord] = []
    for source in reversed(sources):
        if len(found) >= count:
            break
        file, limit = _source(source)
        try:
            if file.suffix == ".gz":
                with gzip.open(file, "rb") as g:
                    records, _ = fmt.split(g.read())
                candidates: Iterator[LogRecord | None] = reversed(records)
            else:
                f = file.open("rb")
                size = os.fstat(f.fileno()).st_size
                candidates = fmt.backward(f, size if limit < 0 else min(size, limit))
            for rec in candidates:
                if wanted(rec):
                    found.append(rec)  # type: ignore[arg-type]
                    if len(found) >= count:
                        break
            if file.suffix != ".gz":
                f.close()
        except (FileNotFoundError, EOFError, gzip.BadGzipFile):
            continue
    found.reverse()
    return found


class _Follower:
    """Position in the current file, kept across rotations.

    The file followed is held open: when the writer rotates it, the rest of it is still
    read through our descriptor, then the files rotated after it (found by their first
    record, which survives renames and compression), then the new current file, which
    is opened before the rotated ones are listed so that nothing falls in between.
    """

    def __init__(self, path: Path, fmt: _Format) -> None:
        self.path = path
        self.fmt = fmt
        self.f: IO[bytes] | None = None
        self.pending = b""

    def open_current(self) -> int:
        """Open the current file and stand at its end; returns that size (-1: no file)."""
        with contextlib.suppress(FileNotFoundError):
            self.f = self.path.open("rb")
            return self.f.seek(0, os.SEEK_END)
        return -1

    def history(self, limit: int) -> list[Path | tuple[Path, int]]:
        """What was written before following began: the rotated files older than ours,
        then ours up to `limit` (read through /proc/self/fd: the same file, whatever
        its name is by then)."""
        rotated = log_files(self.path)[:-1]
        if self.f is None:
            return list(rotated)
        mine = os.fstat(self.f.fileno())
        for i, file in enumerate(rotated):
            with contextlib.suppress(OSError):
                st = file.stat()
                if (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev):
                    rotated = rotated[:i]  # ours was rotated meanwhile
                    break
        return [*rotated, (Path(f"/proc/self/fd/{self.f.fileno()}"), limit)]

    def read_new(self) -> list[LogRecord | None]:
        """Whatever was appended since the last call, across any rotation meanwhile."""
        if self.f is None:
            if self.open_current() < 0:
                return []
            assert self.f is not None
            self.f.seek(0)
        out = self._drain()
        try:
            current = self.path.stat()
        except FileNotFoundError:
            return out
        mine = os.fstat(self.f.fileno())
        if (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
            if mine.st_size < self.f.tell():  # truncated in place (max-file 1)
                self.f.seek(0)
                self.pending = b""
            return out
        # Rotated: ours is complete now. Open the new current file before looking at the
        # rotated ones, so a rotation meanwhile cannot slip a file between them.
        out += self._drain()
        first = _first_record_of_open(self.f, self.fmt)
        old = self.f
        try:
            self.f = self.path.open("rb")
        except FileNotFoundError:
            self.f = None
        self.pending = b""
        for file in self._rotated_between(first, old):
            with contextlib.suppress(OSError, EOFError), _open(file) as f:
                out += [rec for rec, _ in self.fmt.forward(f)]
        old.close()
        if self.f is not None:
            out += self._drain()
        return out

    def _drain(self) -> list[LogRecord | None]:
        assert self.f is not None
        data = self.f.read()
        if not data:
            return []
        buf = self.pending + data
        records, used = self.fmt.split(buf)
        self.pending = buf[used:]
        return records

    def _rotated_between(self, first: bytes, old: IO[bytes]) -> list[Path]:
        """Rotated files newer than the old one (its first record is `first`) and older
        than the one now open, oldest first."""
        rotated = log_files(self.path)[:-1]
        start = 0
        if first:
            for i, file in enumerate(rotated):
                if _first_record(file, self.fmt) == first:
                    start = i + 1
                    break
            else:
                return []  # ours is gone (rotated away): nothing newer can be told apart
        between = rotated[start:]
        if self.f is not None:
            new = os.fstat(self.f.fileno())
            new_first = _first_record_of_open(self.f, self.fmt)
            for i, file in enumerate(between):
                with contextlib.suppress(OSError):
                    st = file.stat()
                    same = (st.st_ino, st.st_dev) == (new.st_ino, new.st_dev)
                    if same or (new_first and _first_record(file, self.fmt) == new_first):
                        return between[:i]
        return between

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


def _first_record_of_open(f: IO[bytes], fmt: _Format) -> bytes:
    pos = f.tell()
    try:
        f.seek(0)
        if fmt.binary:
            head = f.read(4)
            return head + f.read(int.from_bytes(head, "big") + 4) if len(head) == 4 else b""
        line = f.readline()
        return line if line.endswith(b"\n") else b""
    finally:
        f.seek(pos)


async def read_logs(
    path: Path,
    driver: str,
    *,
    follow: bool = False,
    tail: int = -1,
    since_ns: int = 0,
    until_ns: int = 0,
    streams: frozenset[str] = frozenset({"stdout", "stderr"}),
    running: Callable[[], bool] = lambda: False,
) -> AsyncIterator[LogRecord]:
    """Records of the log at `path`, written in format `driver` (json-file, local, cri)."""
    if driver not in ("json-file", "cri", "local"):
        raise InvalidArgument(f'configured logging driver does not support reading: "{driver}"')
    fmt = _Format(driver)
    wanted = _Filter(streams, since_ns, until_ns)
    follower = _Follower(path, fmt)
    try:
        sources: list[Path | tuple[Path, int]]
        if follow:
            # Opened before the history is read: nothing written meanwhile is missed.
            limit = await asyncio.to_thread(follower.open_current)
            sources = await asyncio.to_thread(follower.history, limit)
        else:
            sources = list(log_files(path))
        if tail >= 0:
            records = await asyncio.to_thread(_tail, sources, fmt, wanted, tail) if tail else []
            for rec in records:
                yield rec
        else:
            batches = _history(sources, fmt, wanted)
            while True:
                batch = await asyncio.to_thread(next, batches, None)
                if batch is None:
                    break
                for rec in batch:
                    yield rec
        if not follow:
            return
        while True:
            alive = running()
            records = await asyncio.to_thread(follower.read_new)
            for rec in records:
                if until_ns and rec is not None and rec.time_ns > until_ns:
                    return
                if wanted(rec):
                    yield rec  # type: ignore[misc]
            if records:
                continue
            if not alive:
                return
            await asyncio.sleep(FOLLOW_POLL)
    finally:
        follower.close()


def _source(source: Path | tuple[Path, int]) -> tuple[Path, int]:
    """(file, bytes to read at most: -1 for all)."""
    return source if isinstance(source, tuple) else (source, -1)


def _history(
    sources: list[Path | tuple[Path, int]], fmt: _Format, wanted: _Filter
) -> Iterator[list[LogRecord]]:
    """Batches of records, oldest first."""
    batch: list[LogRecord] = []
    for source in sources:
        file, limit = _source(source)
        try:
            with _open(file) as f:
                read = 0
                for rec, size in fmt.forward(f):
                    if limit >= 0 and read + size > limit:
                        break
                    read += size
                    if wanted(rec):
                        batch.append(rec)  # type: ignore[arg-type]
                        if len(batch) >= BATCH:
                            yield batch
                            batch = []
        except (FileNotFoundError, EOFError, gzip.BadGzipFile):
            continue
    if batch:
        yield batch

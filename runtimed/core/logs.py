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
import time
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


class _Held:
    """A log file held open: whatever the writer renames, compresses or deletes meanwhile,
    this is the file that gets read."""

    def __init__(self, path: Path, raw: IO[bytes], limit: int = -1) -> None:
        self.path = path  # its name when opened (".gz" tells how to read it)
        self.raw = raw
        self.limit = limit  # bytes to read at most (-1: all)
        st = os.fstat(raw.fileno())
        self.key = (st.st_dev, st.st_ino)

    @property
    def gz(self) -> bool:
        return self.path.suffix == ".gz"

    def reader(self) -> IO[bytes]:
        self.raw.seek(0)
        return gzip.GzipFile(fileobj=self.raw, mode="rb") if self.gz else self.raw  # type: ignore[return-value]

    def first(self, fmt: _Format) -> bytes:
        """The first record's raw bytes: the file's identity, however it was renamed."""
        try:
            f = self.reader()
            if fmt.binary:
                head = f.read(4)
                return head + f.read(int.from_bytes(head, "big") + 4) if len(head) == 4 else b""
            line = f.readline()
            return line if line.endswith(b"\n") else b""
        except (OSError, EOFError):
            return b""

    def close(self) -> None:
        self.raw.close()


def _hold(path: Path) -> _Held | None:
    try:
        return _Held(path, path.open("rb"))
    except FileNotFoundError:
        return None


def _hold_rotated(path: Path) -> list[_Held]:
    """The rotated files, oldest first, held open. The names are checked again after
    opening: a rotation in between would have handed us the wrong files, so try again."""
    held: list[_Held] = []
    for attempt in range(20):
        listed = log_files(path)[:-1]
        numbers = [int(p.name[len(path.name) + 1 :].partition(".")[0]) for p in listed]
        opened = [_hold(p) for p in listed]
        held = [h for h in opened if h is not None]
        # A file that went away meanwhile (compressed, rotated out), or a gap in the
        # numbers (a directory listing can miss a file renamed while it is read): again.
        stable = len(held) == len(listed) and numbers == list(range(len(numbers), 0, -1))
        for h in held if stable else ():
            try:
                st = h.path.stat()
            except FileNotFoundError:
                stable = False
                break
            if (st.st_dev, st.st_ino) != h.key:
                stable = False
                break
        if stable or attempt == 19:
            return held  # the last attempt's view is the best there is
        for h in held:
            h.close()
        time.sleep(0.001 * (attempt + 1))  # let the writer finish its renames
    return held


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


def _tail(sources: list[_Held], fmt: _Format, wanted: _Filter, count: int) -> list[LogRecord]:
    """The last `count` wanted records, reading backwards from the end."""
    found: list[LogRecord] = []
    for source in reversed(sources):
        if len(found) >= count:
            break
        try:
            if source.gz:
                records, _ = fmt.split(source.reader().read())
                candidates: Iterator[LogRecord | None] = reversed(records)
            else:
                size = os.fstat(source.raw.fileno()).st_size
                if source.limit >= 0:
                    size = min(size, source.limit)
                candidates = fmt.backward(source.raw, size)
            for rec in candidates:
                if wanted(rec):
                    found.append(rec)  # type: ignore[arg-type]
                    if len(found) >= count:
                        break
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
    found.reverse()
    return found


def _history(sources: list[_Held], fmt: _Format, wanted: _Filter) -> Iterator[list[LogRecord]]:
    """Batches of records, oldest first."""
    batch: list[LogRecord] = []
    for source in sources:
        try:
            read = 0
            for rec, size in fmt.forward(source.reader()):
                if source.limit >= 0 and read + size > source.limit:
                    break
                read += size
                if wanted(rec):
                    batch.append(rec)  # type: ignore[arg-type]
                    if len(batch) >= BATCH:
                        yield batch
                        batch = []
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
    if batch:
        yield batch


class _Follower:
    """Position in the current file, kept across rotations.

    The file followed is held open: when the writer rotates it, the rest of it is still
    read through our descriptor, then the files rotated after it (found by identity,
    which survives renames and compression), then the new current file, which is opened
    before the rotated ones are looked at so that nothing falls in between.
    """

    def __init__(self, path: Path, fmt: _Format) -> None:
        self.path = path
        self.fmt = fmt
        self.f: _Held | None = None
        self.pending = b""

    def open_current(self) -> int:
        """Open the current file and stand at its end; returns that size (-1: no file)."""
        self.f = _hold(self.path)
        return self.f.raw.seek(0, os.SEEK_END) if self.f is not None else -1

    def history(self, limit: int) -> list[_Held]:
        """What was written before following began: the rotated files older than ours,
        then ours up to `limit`."""
        rotated = _hold_rotated(self.path)
        if self.f is None:
            return rotated
        for i, held in enumerate(rotated):
            if held.key == self.f.key:  # ours was rotated meanwhile: newer ones come later
                for newer in rotated[i:]:
                    newer.close()
                rotated = rotated[:i]
                break
        # The same file through a descriptor of its own, whatever its name is by now.
        again = Path(f"/proc/self/fd/{self.f.raw.fileno()}").open("rb")  # noqa: SIM115
        return [*rotated, _Held(self.path, again, limit)]

    def read_new(self) -> list[LogRecord | None]:
        """Whatever was appended since the last call, across any rotation meanwhile."""
        if self.f is None:
            if self.open_current() < 0:
                return []
            assert self.f is not None
            self.f.raw.seek(0)
        out = self._drain()
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return out  # between the writer's rename and its new file
        if (st.st_dev, st.st_ino) == self.f.key:
            if st.st_size < self.f.raw.tell():  # truncated in place (max-file 1)
                self.f.raw.seek(0)
                self.pending = b""
            return out
        out += self._drain()  # rotated: the rest of ours is all there will be
        old = self.f
        first = old.first(self.fmt)
        old.raw.seek(0, os.SEEK_END)
        self.f, self.pending = _hold(self.path), b""
        for held in self._rotated_between(old, first):
            with contextlib.suppress(OSError, EOFError, gzip.BadGzipFile):
                out += [rec for rec, _ in self.fmt.forward(held.reader())]
            held.close()
        old.close()
        if self.f is not None:
            out += self._drain()
        return out

    def _drain(self) -> list[LogRecord | None]:
        assert self.f is not None
        data = self.f.raw.read()
        if not data:
            return []
        buf = self.pending + data
        records, used = self.fmt.split(buf)
        self.pending = buf[used:]
        return records

    def _rotated_between(self, old: _Held, first: bytes) -> list[_Held]:
        """Files rotated after `old` and before the current one, oldest first (held open;
        the caller closes them). When `old` is no longer among the rotated files it was
        rotated away, and all of them are newer."""
        rotated = _hold_rotated(self.path)
        start, end = 0, len(rotated)
        for i, held in enumerate(rotated):
            if held.key == old.key or (first and held.first(self.fmt) == first):
                start = i + 1
                break
        if self.f is not None:
            new_first = self.f.first(self.fmt)
            self.f.raw.seek(0)
            for i in range(start, len(rotated)):
                held = rotated[i]
                if held.key == self.f.key or (new_first and held.first(self.fmt) == new_first):
                    end = i
                    break
        for i, held in enumerate(rotated):
            if not start <= i < end:
                held.close()
        return rotated[start:end]

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


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
    sources: list[_Held] = []
    try:
        if follow:
            # Opened before the history is read: nothing written meanwhile is missed.
            limit = await asyncio.to_thread(follower.open_current)
            sources = await asyncio.to_thread(follower.history, limit)
        else:
            sources = await asyncio.to_thread(_snapshot, path)
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
        for source in sources:
            source.close()
        sources = []
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
        for source in sources:
            source.close()
        follower.close()


def _snapshot(path: Path) -> list[_Held]:
    rotated = _hold_rotated(path)
    current = _hold(path)
    return [*rotated, current] if current is not None else rotated

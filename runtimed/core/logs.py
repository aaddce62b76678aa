"""Reading what the shim wrote: docker's json-file and the CRI format, with tail and follow.

The daemon only reads logs; the shim writes them. Rotated json-file logs
(`<path>.1` newest ... `.N`) are read oldest first, as docker does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from runtimed.errors import InvalidArgument

FOLLOW_POLL = 0.05


@dataclass(frozen=True)
class LogRecord:
    stream: str
    data: bytes
    time_ns: int


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


def _json_record(line: bytes) -> LogRecord | None:
    try:
        doc = json.loads(line)
        return LogRecord(doc["stream"], doc["log"].encode(), parse_time(doc["time"]))
    except (ValueError, KeyError, InvalidArgument):
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
    except InvalidArgument:
        return None


def _files(path: Path) -> list[Path]:
    rotated = sorted(
        (p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
        key=lambda p: int(p.suffix[1:]),
        reverse=True,
    )
    return [*rotated, path]


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
    parse = _cri_record if driver == "cri" else _json_record
    if driver not in ("json-file", "cri", "local"):
        raise InvalidArgument(f'configured logging driver does not support reading: "{driver}"')

    def wanted(rec: LogRecord | None) -> bool:
        return (
            rec is not None
            and rec.stream in streams
            and rec.time_ns >= since_ns
            and (not until_ns or rec.time_ns <= until_ns)
        )

    def existing() -> tuple[list[LogRecord], int, int]:
        records: deque[LogRecord] | list[LogRecord]
        records = deque(maxlen=tail) if tail >= 0 else []
        offset, inode = 0, 0
        for file in _files(path):
            try:
                with file.open("rb") as f:
                    for line in f:
                        if not line.endswith(b"\n"):
                            break  # a record still being written
                        rec = parse(line)
                        if wanted(rec):
                            records.append(rec)  # type: ignore[arg-type]
                        if file == path:
                            offset += len(line)
                    if file == path:
                        inode = os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                continue
        return list(records), offset, inode

    records, offset, inode = await asyncio.to_thread(existing)
    for rec in records:
        yield rec
    if not follow:
        return
    pending = b""
    while True:
        alive = running()
        try:
            st = path.stat()
            if st.st_ino != inode:  # rotated or reopened: start the new file from its top
                inode, offset, pending = st.st_ino, 0, b""
            if st.st_size > offset:
                with path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read(st.st_size - offset)
                offset += len(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    rec = parse(line + b"\n")
                    if wanted(rec):
                        yield rec  # type: ignore[misc]
                    if until_ns and rec is not None and rec.time_ns > until_ns:
                        return
                continue
        except FileNotFoundError:
            pass
        if not alive:
            return
        await asyncio.sleep(FOLLOW_POLL)

"""The awslogs driver: Amazon CloudWatch Logs through boto3.

Every line is an event (or, with awslogs-multiline-pattern or
awslogs-datetime-format, lines are joined until the next line that matches);
events longer than 262,118 bytes are split at character boundaries, counting
each byte that is not valid UTF-8 as the 3-byte replacement character it will
become. Events are sent every awslogs-force-flush-interval-seconds (default
5) or as soon as a full batch is there, in PutLogEvents batches that respect
the API's limits: at most 10,000 events and 1,048,576 bytes counting 26 bytes
per event, within 24 hours, sorted by time (stable).

The stream (awslogs-stream, default the tag, default the full container id)
is created at start unless awslogs-create-stream=false; with
awslogs-create-group=true a missing group is created too. boto3 is imported
only in shims of containers that use this driver.
"""

from __future__ import annotations

import contextlib
import os
import re

from runtimed_shim.logdriver import LogInfo, OptionError, Undelivered, check_keys, parse_bool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

REGION = "awslogs-region"
GROUP = "awslogs-group"
STREAM = "awslogs-stream"
CREATE_GROUP = "awslogs-create-group"
CREATE_STREAM = "awslogs-create-stream"
ENDPOINT = "awslogs-endpoint"
DATETIME_FORMAT = "awslogs-datetime-format"
MULTILINE_PATTERN = "awslogs-multiline-pattern"
FLUSH_INTERVAL = "awslogs-force-flush-interval-seconds"
MAX_BUFFERED = "awslogs-max-buffered-events"
OPTS = (
    REGION,
    GROUP,
    STREAM,
    CREATE_GROUP,
    CREATE_STREAM,
    ENDPOINT,
    DATETIME_FORMAT,
    MULTILINE_PATTERN,
    FLUSH_INTERVAL,
    MAX_BUFFERED,
    "tag",
)

PER_EVENT_BYTES = 26
MAX_BYTES_PER_PUT = 1_048_576
MAX_EVENTS_PER_PUT = 10_000
MAX_BYTES_PER_EVENT = 262_144 - PER_EVENT_BYTES
MAX_SPAN_MS = 24 * 3600 * 1000
DEFAULT_FLUSH_INTERVAL = 5
DEFAULT_MAX_BUFFERED = 4096

# strftime sequences of awslogs-datetime-format as regular expressions (Docker's table).
STRFTIME = {
    "%a": r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)",
    "%A": r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)",
    "%w": r"[0-6]",
    "%d": r"(?:0[1-9]|[1,2][0-9]|3[0,1])",
    "%b": r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)",
    "%B": r"(?:January|February|March|April|May|June|July|August|September|October|November"
    r"|December)",
    "%m": r"(?:0[1-9]|1[0-2])",
    "%Y": r"\d{4}",
    "%y": r"\d{2}",
    "%H": r"(?:[0,1][0-9]|2[0-3])",
    "%I": r"(?:0[0-9]|1[0-2])",
    "%p": r"[A,P]M",
    "%M": r"[0-5][0-9]",
    "%S": r"[0-5][0-9]",
    "%f": r"\d{6}",
    "%z": r"[+-]\d{4}",
    "%Z": r"[A-Z]{1,4}T",
    "%j": r"(?:0[0-9][1-9]|[1,2][0-9][0-9]|3[0-5][0-9]|36[0-6])",
    "%L": r"\.\d{3}",
}


def _positive(opts: dict[str, str], key: str) -> None:
    value = opts.get(key, "")
    if value and not (value.isdigit() and int(value) > 0):
        raise OptionError(f"must specify a positive integer for log opt '{key}': {value}")


def multiline_pattern(opts: dict[str, str]) -> re.Pattern[bytes] | None:
    pattern = opts.get(MULTILINE_PATTERN, "")
    if opts.get(DATETIME_FORMAT):
        pattern = re.sub("%.", lambda m: STRFTIME.get(m.group(0), ""), opts[DATETIME_FORMAT])
    if not pattern:
        return None
    try:
        return re.compile(pattern.encode())
    except re.error as exc:
        raise OptionError(
            f"awslogs could not parse multiline pattern key {pattern!r}: {exc}"
        ) from None


class Plugin:
    name = "awslogs"
    read_format = None

    def validate(self, opts: dict[str, str]) -> None:
        check_keys(opts, OPTS, self.name)
        if not opts.get(GROUP):
            raise OptionError(f"must specify a value for log opt '{GROUP}'")
        for key in (CREATE_GROUP, CREATE_STREAM):
            if opts.get(key):
                try:
                    parse_bool(opts[key])
                except OptionError as exc:
                    raise OptionError(
                        f"must specify valid value for log opt '{key}': {exc}"
                    ) from None
        _positive(opts, FLUSH_INTERVAL)
        _positive(opts, MAX_BUFFERED)
        if DATETIME_FORMAT in opts and MULTILINE_PATTERN in opts:
            raise OptionError(
                f"you cannot configure log opt '{DATETIME_FORMAT}' and '{MULTILINE_PATTERN}' "
                "at the same time"
            )
        multiline_pattern(opts)

    def open(self, info: LogInfo) -> AwsLogsDriver:
        self.validate({k: v for k, v in info.config.items() if k in OPTS})
        driver = AwsLogsDriver(info)
        if info.mode != "non-blocking":
            driver.create()  # Docker creates the stream at start: errors fail the start
        return driver


# -- events and batches (pure; tested without AWS) ---------------------------------


def split_event(line: bytes) -> list[str]:
    """Pieces of at most MAX_BYTES_PER_EVENT bytes once encoded, cut between characters;
    every byte that is not valid UTF-8 becomes U+FFFD (3 bytes), as CloudWatch stores it."""
    if len(line) <= MAX_BYTES_PER_EVENT:
        try:
            return [line.decode()]
        except UnicodeDecodeError:
            pass
    text = line.decode("utf-8", "surrogateescape")
    text = re.sub("[\udc80-\udcff]", "\ufffd", text)
    pieces: list[str] = []
    start, size = 0, 0
    for i, char in enumerate(text):
        width = 1 if char < "\x80" else len(char.encode())
        if size + width > MAX_BYTES_PER_EVENT:
            pieces.append(text[start:i])
            start, size = i, 0
        size += width
    if start < len(text) or not pieces:
        pieces.append(text[start:])
    return pieces


def batches(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive PutLogEvents batches within the API's limits, each sorted by time."""
    out: list[list[dict[str, Any]]] = []
    batch: list[dict[str, Any]] = []
    size = 0
    low = high = 0
    for event in events:
        cost = len(event["message"].encode()) + PER_EVENT_BYTES
        stamp = event["timestamp"]
        if batch and (
            len(batch) >= MAX_EVENTS_PER_PUT
            or size + cost > MAX_BYTES_PER_PUT
            or max(high, stamp) - min(low, stamp) > MAX_SPAN_MS
        ):
            out.append(batch)
            batch, size = [], 0
        if not batch:
            low = high = stamp
        batch.append(event)
        size += cost
        low, high = min(low, stamp), max(high, stamp)
    if batch:
        out.append(batch)
    # sorted() is stable: events of the same millisecond keep their order.
    return [sorted(b, key=lambda e: e["timestamp"]) for b in out]


class Multiline:
    """Joins lines into events; a line matching the pattern starts a new one."""

    def __init__(self, pattern: re.Pattern[bytes], interval: float) -> None:
        self.pattern = pattern
        self.interval = interval
        self.buffer = bytearray()
        self.stamp = 0
        self.since = 0.0

    def add(self, line: bytes, stamp: int, now: float) -> list[tuple[bytes, int]]:
        out = []
        if self.buffer and (
            self.pattern.search(line) or len(self.buffer) + len(line) > MAX_BYTES_PER_EVENT
        ):
            out.append(self.take())
        if not self.buffer:
            self.stamp, self.since = stamp, now
        self.buffer += line + b"\n" if len(line) < MAX_BYTES_PER_EVENT else line
        return out

    def expired(self, now: float) -> list[tuple[bytes, int]]:
        if self.buffer and now - self.since >= self.interval:
            return [self.take()]
        return []

    def take(self) -> tuple[bytes, int]:
        event = (bytes(self.buffer), self.stamp)
        self.buffer.clear()
        return event


# -- the driver ----------------------------------------------------------------------


class AwsLogsDriver:
    threaded = True
    max_line = 1 << 20  # lines are split into events here, at character boundaries
    max_pending = MAX_EVENTS_PER_PUT

    def __init__(self, info: LogInfo) -> None:
        opts = info.config
        self.group = opts[GROUP]
        self.stream = opts.get(STREAM) or info.tag("{{.FullID}}")
        self.create_group = parse_bool(opts[CREATE_GROUP]) if opts.get(CREATE_GROUP) else False
        self.create_stream = parse_bool(opts[CREATE_STREAM]) if opts.get(CREATE_STREAM) else True
        self.flush_interval = float(opts.get(FLUSH_INTERVAL) or DEFAULT_FLUSH_INTERVAL)
        self.max_queued_lines = int(opts.get(MAX_BUFFERED) or DEFAULT_MAX_BUFFERED)
        pattern = multiline_pattern(opts)
        self.multiline = Multiline(pattern, self.flush_interval) if pattern else None
        self.poll_interval = self.flush_interval if pattern else 0
        self.created = False
        self.rejected = 0
        self.client = _client(opts.get(REGION) or os.environ.get("AWS_REGION"), opts.get(ENDPOINT))

    def create(self) -> None:
        if self.created or not self.create_stream:
            self.created = True
            return
        errors = self.client.exceptions
        try:
            try:
                self.client.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
            except errors.ResourceAlreadyExistsException:
                pass
            except errors.ResourceNotFoundException:
                if not self.create_group:
                    raise
                with contextlib.suppress(errors.ResourceAlreadyExistsException):
                    self.client.create_log_group(logGroupName=self.group)
                with contextlib.suppress(errors.ResourceAlreadyExistsException):
                    self.client.create_log_stream(
                        logGroupName=self.group, logStreamName=self.stream
                    )
        except Exception as exc:  # noqa: BLE001 - botocore's errors share no OSError base
            raise ConnectionError(f"failed to create Cloudwatch log stream: {exc}") from None
        self.created = True

    def _events(self, line: bytes, stamp: int) -> list[dict[str, Any]]:
        return [{"timestamp": stamp, "message": m} for m in split_event(line) if m]

    def encode(self, stream: str, runs: list[Any], time_ns: int) -> list[dict[str, Any]]:
        stamp = time_ns // 1_000_000
        events: list[dict[str, Any]] = []
        if self.multiline is None:
            for pieces, _complete in runs:
                for line in pieces:
                    if line:
                        events.extend(self._events(line, stamp))
            return events
        import time

        now = time.monotonic()
        for pieces, _complete in runs:
            for line in pieces:
                for text, when in self.multiline.add(line, stamp, now):
                    events.extend(self._events(text, when))
        return events

    def poll(self) -> list[dict[str, Any]]:
        if self.multiline is None:
            return []
        import time

        expired = self.multiline.expired(time.monotonic())
        return [event for text, when in expired for event in self._events(text, when)]

    def drain(self) -> list[dict[str, Any]]:
        if self.multiline is None or not self.multiline.buffer:
            return []
        text, when = self.multiline.take()
        return self._events(text, when)

    def send(self, items: list[dict[str, Any]]) -> None:
        if not self.created:
            try:
                self.create()
            except ConnectionError as exc:
                raise Undelivered(0, str(exc)) from None
        done = 0
        errors = self.client.exceptions
        for batch in batches(items):
            try:
                self.client.put_log_events(
                    logGroupName=self.group, logStreamName=self.stream, logEvents=batch
                )
            except errors.DataAlreadyAcceptedException:
                pass
            except errors.ResourceNotFoundException as exc:
                self.created = False  # the stream went away: make it again, then retry
                raise Undelivered(done, str(exc)) from None
            except (errors.InvalidParameterException, errors.UnrecognizedClientException):
                self.rejected += len(batch)  # retrying cannot help: count the loss, go on
            except Exception as exc:  # noqa: BLE001 - connection and throttling: retry
                raise Undelivered(done, str(exc)) from None
            done += len(batch)

    @property
    def dropped_lines(self) -> int:
        return self.rejected

    def close(self) -> None:
        pass


def _client(region: str | None, endpoint: str | None) -> Any:
    import boto3
    from botocore.config import Config

    if not region and not boto3.session.Session().region_name:
        raise OptionError("Cannot determine region for awslogs driver")
    config = Config(
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        user_agent_extra="runtimed",
    )
    return boto3.session.Session().client(
        "logs", region_name=region or None, endpoint_url=endpoint or None, config=config
    )


PLUGIN = Plugin()

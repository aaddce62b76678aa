"""Log drivers without containers: options, formats, batching, queues and reading back."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from runtimed_plugins.logdrivers import awslogs, fluentd, syslog
from runtimed_shim.logdriver import (
    LogInfo,
    OptionError,
    PartialTracker,
    Undelivered,
    from_human_size,
    parse_bool,
    parse_duration,
    parse_int,
    ram_in_bytes,
)
from runtimed_shim.logpipe import LogPipeline
from runtimed_shim.logs import (
    MAX_LINE as MAX,
)
from runtimed_shim.logs import (
    CriLog,
    JsonFileLog,
    LocalLog,
    decode_local,
    local_record,
)
from runtimed_shim.logworker import Worker

from runtimed.core.logdrivers import LogDrivers
from runtimed.core.logs import details_prefix, log_files, read_logs
from runtimed.errors import InvalidArgument

CID = "0123456789ab" + "c" * 52
SECOND = 1_709_296_496  # 2024-03-01T12:34:56Z
NS = SECOND * 10**9 + 123_456_789


def info(opts: dict[str, str] | None = None, **extra: Any) -> LogInfo:
    facts = {
        "id": CID,
        "name": "/web",
        "image_name": "busybox:1.36",
        "image_id": "sha256:" + "f" * 64,
        "entrypoint": "sh",
        "args": ["-c", "true"],
        "labels": {"app": "shop", "tier": "front"},
        "env": ["STAGE=prod", "REGION=eu", "PATH=/bin"],
        "hostname": "host1",
    }
    facts.update(extra)
    return LogInfo(opts or {}, facts)


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("driver", "opts", "message"),
    [
        ("json-file", {"foo": "1"}, "unknown log opt 'foo' for json-file log driver"),
        ("json-file", {"max-size": "0"}, "max-size must be a positive number"),
        ("json-file", {"max-file": "0"}, "max-file cannot be less than 1"),
        ("json-file", {"max-file": "x"}, 'strconv.Atoi: parsing "x": invalid syntax'),
        ("json-file", {"max-file": "\u0661"}, "invalid syntax"),  # Go's Atoi: ASCII digits only
        (
            "json-file",
            {"max-file": "99999999999999999999"},
            'strconv.Atoi: parsing "99999999999999999999": value out of range',
        ),
        ("json-file", {"max-file": str(1 << 63)}, "value out of range"),
        ("local", {"max-file": "99999999999999999999"}, "value out of range"),
        ("json-file", {"compress": "true"}, "compress cannot be true when max-file is less than 2"),
        ("local", {"max-file": "1"}, "compression cannot be enabled when max file count is 1"),
        ("local", {"max-size": "big"}, "invalid value for max-size: big: invalid size: 'big'"),
        ("cri", {"max-size": "1m"}, "unknown log opt 'max-size' for cri log driver"),
        ("none", {"max-size": "1m"}, "invalid logging opts for driver none"),
        ("syslog", {"syslog-format": "json"}, "Invalid syslog format"),
        ("syslog", {"syslog-facility": "24"}, "invalid syslog facility"),
        ("syslog", {"syslog-address": "unix:///nonexistent/sock"}, "stat /nonexistent/sock"),
        ("syslog", {"syslog-address": "tcp://a:b:c"}, "too many colons"),
        ("fluentd", {"fluentd-retry-wait": "soon"}, 'time: invalid duration "soon"'),
        ("fluentd", {"fluentd-max-retries": "-1"}, 'strconv.ParseUint: parsing "-1"'),
        ("fluentd", {"fluentd-async": "1", "fluentd-async-connect": "1"}, "conflicting options"),
        ("fluentd", {"fluentd-address": "tcp://h:port"}, "invalid fluentd-address tcp://h:port"),
        (
            "awslogs",
            {"awslogs-group": "g", "awslogs-create-group": "yes"},
            "must specify valid value for log opt 'awslogs-create-group'",
        ),  # fmt: skip
        (
            "awslogs",
            {"awslogs-group": "g", "awslogs-force-flush-interval-seconds": "0"},
            "must specify a positive integer for log opt 'awslogs-force-flush-interval-seconds': 0",
        ),  # fmt: skip
        (
            "json-file",
            {"mode": "non-blocking", "max-buffer-size": "lots"},
            "error parsing option max-buffer-size: invalid size: 'lots'",
        ),  # fmt: skip
        (
            "json-file",
            {"cache-disabled": "maybe"},
            "invalid value for option cache-disabled: maybe",
        ),
        ("json-file", {"labels-regex": "("}, "error parsing regexp in labels-regex"),
        ("json-file", {"tag": "{{.ID"}, "unclosed action"),
    ],
)
def test_bad_options_are_refused_in_dockers_words(driver: str, opts: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=None) as raised:
        LogDrivers().validate(driver, opts)
    assert message in raised.value.message


def test_good_options_pass_and_cache_options_are_everyones() -> None:
    drivers = LogDrivers()
    drivers.validate("json-file", {"max-size": "10m", "max-file": "3", "compress": "true"})
    drivers.validate("syslog", {"syslog-address": "udp://127.0.0.1", "cache-max-size": "1m"})
    drivers.validate("fluentd", {"mode": "non-blocking", "max-buffer-size": "2m"})
    drivers.validate("awslogs", {"awslogs-group": "g", "awslogs-datetime-format": "%Y-%m-%d"})
    assert drivers.uses_cache("syslog", {}) and not drivers.uses_cache("json-file", {})
    assert not drivers.uses_cache("syslog", {"cache-disabled": "true"})
    assert not drivers.uses_cache("none", {})


def test_daemon_defaults_merge_like_dockers() -> None:
    drivers = LogDrivers("local", {"max-size": "1k", "cache-disabled": "true"})
    assert drivers.resolve("", {}) == ("local", {"max-size": "1k", "cache-disabled": "true"})
    assert drivers.resolve("local", {"max-size": "5k"})[1]["max-size"] == "5k"
    # Another driver takes only the cache options of the defaults.
    assert drivers.resolve("syslog", {}) == ("syslog", {"cache-disabled": "true"})


def test_go_value_parsers() -> None:
    assert from_human_size("10m") == 10_000_000 and from_human_size("1.5k") == 1500
    assert from_human_size("2MB") == 2_000_000 and from_human_size("7") == 7
    assert ram_in_bytes("1m") == 1 << 20 and ram_in_bytes("64k") == 65536
    assert parse_duration("1.5s") == 1.5 and parse_duration("1h2m") == 3720
    assert parse_duration("100ms") == pytest.approx(0.1)
    assert parse_bool("T") is True and parse_bool("0") is False
    assert parse_int(str((1 << 63) - 1)) == (1 << 63) - 1 and parse_int("-" + str(1 << 63)) < 0
    with pytest.raises(OptionError):
        parse_bool("yes")


def test_tag_templates_and_extra_attributes() -> None:
    i = info({"tag": "{{.Name}}/{{.ID}}/{{ .ImageName }}", "labels": "app,nope", "env": "STAGE"})
    assert i.tag() == f"web/{CID[:12]}/busybox:1.36"
    assert info().tag() == CID[:12]
    assert info({"tag": "{{.FullID}} {{.ImageID}} {{.Command}} {{.DaemonName}}"}).tag() == (
        f"{CID} {'f' * 12} sh -c true runtimed"
    )
    assert i.extra_attributes() == {"app": "shop", "STAGE": "prod"}
    regexes = info({"labels-regex": "^t", "env-regex": "^RE"})
    assert regexes.extra_attributes() == {"tier": "front", "REGION": "eu"}
    with pytest.raises(OptionError, match="can't evaluate field Nope"):
        info({"tag": "{{.Nope}}"}).tag()


def test_partial_tracker_numbers_the_chunks_of_one_line() -> None:
    t = PartialTracker()
    assert t.mark("stdout", True) is None
    a, b = t.mark("stdout", False), t.mark("stdout", False)
    assert t.mark("stderr", True) is None  # another stream has its own state
    last = t.mark("stdout", True)
    assert a is not None and b is not None and last is not None
    assert a[0] == b[0] == last[0] and [a[1], b[1], last[1]] == [1, 2, 3]
    assert (a[2], b[2], last[2]) == (False, False, True)
    assert t.mark("stdout", True) is None


# -- file formats -----------------------------------------------------------------------------


def test_json_file_attrs_sit_between_stream_and_time(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    log = JsonFileLog(str(path), attrs={"z": "<&>", "a": "1"})
    log.write("stdout", b"hi\n", NS)
    log.close()
    assert path.read_bytes() == (
        b'{"log":"hi\\n","stream":"stdout","attrs":{"a":"1","z":"\\u003c\\u0026\\u003e"},'
        b'"time":"2024-03-01T12:34:56.123456789Z"}\n'
    )


def test_local_records_are_dockers_protobuf_framing() -> None:
    record = local_record("stdout", 1, b"hi")
    body = b"\x0a\x06stdout\x10\x01\x1a\x02hi"
    assert record == len(body).to_bytes(4, "big") + body + len(body).to_bytes(4, "big")
    chunk = local_record("stderr", NS, b"part", ("abc", 2, True), b"")
    entry = decode_local(chunk[4:-4])
    assert entry == {
        "source": "stderr",
        "time_nano": NS,
        "line": b"part",
        "partial": True,
        "last": True,
        "attrs": {},
    }


def run_logs(path: Path, fmt: str, **kwargs: Any) -> list[Any]:
    async def collect() -> list[Any]:
        return [r async for r in read_logs(path, fmt, **kwargs)]

    return asyncio.run(collect())


def test_local_log_round_trip_with_partials_rotation_and_compression(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    log = LocalLog(str(path), max_size=600, max_file=4, compress=True, attrs={"k": "v"})
    long = b"y" * (16 * 1024 + 5)
    log.write("stdout", b"a\n" + long + b"\n", NS)
    for i in range(30):
        log.write("stderr", f"line-{i}\n".encode(), NS + i)
    log.end("stdout", NS)
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "container.log",
        "container.log.1.gz",
        "container.log.2.gz",
        "container.log.3.gz",
    ]
    records = run_logs(path, "local")
    assert all(r.attrs == {"k": "v"} for r in records)
    everything = [b"a\n", long[: 16 * 1024], long[16 * 1024 :] + b"\n"]
    everything += [f"line-{i}\n".encode() for i in range(30)]
    texts = [r.data for r in records]
    assert 0 < len(texts) < len(everything) and texts == everything[-len(texts) :]
    tail = run_logs(path, "local", tail=2)
    assert [r.data for r in tail] == [b"line-28\n", b"line-29\n"]

    whole = tmp_path / "whole" / "container.log"
    whole.parent.mkdir()
    log = LocalLog(str(whole), max_size=0, max_file=1, compress=False)
    log.write("stdout", b"a\n" + long + b"\nunfinished", NS)
    log.end("stdout", NS)
    log.close()
    data = b"".join(r.data for r in run_logs(whole, "local"))
    assert data == b"a\n" + long + b"\nunfinished"


def test_rotated_files_are_read_oldest_first_and_gz_being_made_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    for name in (
        "c-json.log",
        "c-json.log.1",
        "c-json.log.1.gz",
        "c-json.log.2.gz",
        "c-json.log.x",
    ):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in log_files(path)] == ["c-json.log.2.gz", "c-json.log.1", "c-json.log"]


def test_tail_since_until_read_backwards_over_gz(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    log = JsonFileLog(str(path), max_size=300, max_file=5, compress=True)
    for i in range(20):
        log.write("stdout" if i % 2 else "stderr", f"n{i}\n".encode(), NS + i * 10**9)
    log.close()
    everything = run_logs(path, "json-file")
    kept = [int(r.data[1:]) for r in everything]
    assert kept == list(range(kept[0], 20))
    assert [r.data for r in run_logs(path, "json-file", tail=3)] == [b"n17\n", b"n18\n", b"n19\n"]
    only_out = run_logs(path, "json-file", tail=2, streams=frozenset({"stdout"}))
    assert [r.data for r in only_out] == [b"n17\n", b"n19\n"]
    window = run_logs(path, "json-file", since_ns=NS + 15 * 10**9, until_ns=NS + 16 * 10**9)
    assert [r.data for r in window] == [b"n15\n", b"n16\n"]


@pytest.mark.parametrize("compress", [False, True])
def test_follow_reads_across_fast_rotations(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "c-json.log"
    # About 20 lines a file: the writer rotates (and compresses) many times while followed.
    log = JsonFileLog(str(path), max_size=1500, max_file=50, compress=compress)
    done = threading.Event()

    def writer() -> None:
        for i in range(600):
            log.write("stdout", f"f{i}\n".encode(), NS)
            if i % 25 == 0:
                time.sleep(0.01)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    got = run_logs(path, "json-file", follow=True, running=lambda: not done.is_set())
    thread.join()
    log.close()
    assert [r.data for r in got] == [f"f{i}\n".encode() for i in range(600)]


def test_details_prefix_is_sorted_and_escaped() -> None:
    assert details_prefix({"b": "x y", "a": "1&2"}) == b"a=1%262,b=x+y "
    assert details_prefix({}) == b" "


# -- syslog -----------------------------------------------------------------------------------


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def syslog_driver(fmt: str, scheme: str = "udp") -> syslog.SyslogDriver:
    return syslog.SyslogDriver(
        scheme, ("127.0.0.1", 514), facility=3, fmt=fmt, tag="web", hostname="host1"
    )


def test_syslog_formats(utc: None) -> None:
    runs = [([b"hello", b"", b"again"], True)]
    pid = os.getpid()
    plain = syslog_driver("").encode("stdout", runs, NS)
    assert plain == [f"<30>Mar  1 12:34:56 web[{pid}]: hello\n".encode(),
                     f"<30>Mar  1 12:34:56 web[{pid}]: again\n".encode()]  # fmt: skip
    assert syslog_driver("rfc3164").encode("stderr", [([b"x"], True)], NS) == [
        f"<27>Mar  1 12:34:56 host1 web[{pid}]: x\n".encode()
    ]
    assert syslog_driver("rfc5424").encode("stdout", [([b"x"], True)], NS) == [
        f"<30>1 2024-03-01T12:34:56Z host1 web {pid} web - x\n".encode()
    ]
    assert syslog_driver("rfc5424micro").encode("stdout", [([b"x"], True)], NS) == [
        f"<30>1 2024-03-01T12:34:56.123456Z host1 web {pid} web - x\n".encode()
    ]
    framed = syslog_driver("rfc5424", "tcp+tls").encode("stdout", [([b"x"], True)], NS)
    message = f"<30>1 2024-03-01T12:34:56Z host1 web {pid} web - x\n".encode()
    assert framed == [b"%d " % len(message) + message]
    # A stream transport sends a run as one blob of newline-ended messages.
    stream = syslog_driver("", "tcp").encode("stdout", runs, NS)
    assert stream == [b"".join(plain)]


def test_syslog_blocks_frame_like_lines(utc: None) -> None:
    for scheme in ("tcp", "udp", "tcp+tls"):
        driver = syslog_driver("rfc5424" if scheme == "tcp+tls" else "", scheme)
        for block in (b"a\nb\nc", b"\nx\n\ny\n", b"", b"one"):
            by_lines = driver.encode("stdout", [(block.split(b"\n"), True)], NS)
            assert b"".join(driver.encode_block("stdout", block, NS)) == b"".join(by_lines)


def test_syslog_address_parsing() -> None:
    assert syslog.parse_address("") == ("", None)
    assert syslog.parse_address("udp://10.0.0.1") == ("udp", ("10.0.0.1", 514))
    assert syslog.parse_address("tcp+tls://[::1]:6514") == ("tcp+tls", ("::1", 6514))
    assert syslog.parse_facility("local7") == 23 and syslog.parse_facility("") == 3


# -- fluentd ----------------------------------------------------------------------------------


def test_fluentd_records_partials_and_event_time() -> None:
    settings = fluentd.Settings({"fluentd-sub-second-precision": "true"})
    driver = fluentd.FluentdDriver(settings, info({"labels": "app"}))
    items = driver.encode("stdout", [([b"p1", b"p2"], False), ([b"end"], True)], NS)
    items += driver.encode("stderr", [([b"oops"], True)], NS)
    decoded = [msgpack.unpackb(i, raw=False, ext_hook=lambda c, d: (c, d)) for i in items]
    stamp = (0, SECOND.to_bytes(4, "big") + (123_456_789).to_bytes(4, "big"))
    assert all(t == stamp for t, _ in decoded)
    records = [r for _, r in decoded]
    assert records[3] == {
        "container_id": CID,
        "container_name": "/web",
        "app": "shop",
        "source": "stderr",
        "log": "oops",
    }
    parts = records[:3]
    assert [p["log"] for p in parts] == ["p1", "p2", "end"]
    assert [p["partial_ordinal"] for p in parts] == ["1", "2", "3"]
    assert [p["partial_last"] for p in parts] == ["false", "false", "true"]
    assert len({p["partial_id"] for p in parts}) == 1
    seconds = fluentd.FluentdDriver(fluentd.Settings({}), info())
    assert msgpack.unpackb(seconds.encode("stdout", [([b"x"], True)], NS)[0])[0] == SECOND


def test_fluentd_sends_forward_mode_and_waits_for_the_ack(tmp_path: Path) -> None:
    from tests.support.logreceivers import ForwardReceiver

    receiver = ForwardReceiver(path=tmp_path / "f.sock").start()
    try:
        opts = {"fluentd-address": receiver.address, "fluentd-request-ack": "true", "tag": "t"}
        driver = fluentd.PLUGIN.open(info(opts))
        driver.send(driver.encode("stdout", [([b"a", b"b"], True)], NS))
        assert receiver.logs() == ["a", "b"] and receiver.acks == 1 and receiver.messages == 1
        driver.close()
    finally:
        receiver.stop()
    with pytest.raises(ConnectionError, match=r"dial unix .*f\.sock: connect: "):
        fluentd.PLUGIN.open(info({"fluentd-address": f"unix://{tmp_path}/f.sock"}))


# -- awslogs ----------------------------------------------------------------------------------


def test_awslogs_splits_long_events_between_characters() -> None:
    limit = awslogs.MAX_BYTES_PER_EVENT
    assert limit == 262_118
    text = ("é" * (limit // 2 + 10)).encode()  # 2 bytes each: a cut must not halve one
    pieces = awslogs.split_event(text)
    assert "".join(pieces) == text.decode()
    assert all(len(p.encode()) <= limit for p in pieces) and len(pieces) == 2
    invalid = b"\xff" * (limit // 3 + 1)  # each invalid byte becomes 3-byte U+FFFD
    pieces = awslogs.split_event(invalid)
    assert all(len(p.encode()) <= limit for p in pieces) and len(pieces) == 2


def test_awslogs_batches_respect_the_put_limits() -> None:
    events = [{"timestamp": 1000 + i // 7, "message": f"m{i}"} for i in range(20_000)]
    batches = awslogs.batches(events)
    assert [len(b) for b in batches] == [10_000, 10_000]
    big = [{"timestamp": 5, "message": "x" * 100_000} for _ in range(25)]
    sized = awslogs.batches(big)
    assert all(sum(len(e["message"]) + 26 for e in b) <= 1_048_576 for b in sized)
    assert sum(len(b) for b in sized) == 25 and len(sized) == 3
    shuffled = [{"timestamp": t, "message": str(i)} for i, t in enumerate([3, 1, 2, 1])]
    assert [e["message"] for e in awslogs.batches(shuffled)[0]] == ["1", "3", "2", "0"]
    day = 24 * 3600 * 1000
    spans = awslogs.batches(
        [{"timestamp": 0, "message": "a"}, {"timestamp": day + 1, "message": "b"}]
    )
    assert len(spans) == 2


def test_awslogs_multiline_joins_until_the_pattern() -> None:
    multi = awslogs.Multiline(awslogs.multiline_pattern({"awslogs-datetime-format": "%Y-%m-%d"}), 5)
    assert multi.add(b"2024-03-01 start", 1, 0.0) == []
    assert multi.add(b"  continued", 2, 0.1) == []
    assert multi.add(b"2024-03-02 next", 3, 0.2) == [(b"2024-03-01 start\n  continued\n", 1)]
    assert multi.expired(1.0) == [] and multi.expired(5.3) == [(b"2024-03-02 next\n", 3)]


# -- the worker and the pipeline --------------------------------------------------------------


class FlakyDriver:
    """Refuses the first `failures` sends, then takes everything."""

    threaded = True

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.delivered: list[bytes] = []

    def encode(self, stream: str, runs: list[Any], time_ns: int) -> list[bytes]:
        return [p for pieces, _ in runs for p in pieces]

    def send(self, items: list[bytes]) -> None:
        if self.failures:
            self.failures -= 1
            # Half went through before the receiver went away.
            half = len(items) // 2
            self.delivered += items[:half]
            raise Undelivered(half, "receiver away")
        self.delivered += items

    def retry_delay(self, attempt: int) -> float:
        return 0.01

    def close(self) -> None:
        pass


def test_blocking_worker_retries_in_order_until_delivered() -> None:
    driver = FlakyDriver(failures=5)
    worker = Worker(driver, policy="block", max_bytes=1 << 20)
    for i in range(100):
        worker.put("stdout", [([f"{i}".encode()], True)], NS)
    worker.close(5)
    assert driver.delivered == [f"{i}".encode() for i in range(100)]
    assert worker.dropped_lines == 0


def test_blocking_worker_congests_then_wakes_the_shim() -> None:
    gate = threading.Event()

    class Slow(FlakyDriver):
        def send(self, items: list[bytes]) -> None:
            gate.wait(5)
            super().send(items)

    worker = Worker(Slow(0), policy="block", max_bytes=100)
    worker.put("stdout", [([b"x" * 60], True)], NS)
    time.sleep(0.05)  # the thread took the first chunk and waits in send
    worker.put("stdout", [([b"y" * 60], True)], NS)
    worker.put("stdout", [([b"z" * 60], True)], NS)
    assert worker.congested
    gate.set()
    deadline = time.monotonic() + 5
    while not os.read(worker.wake_r, 1) if _readable(worker.wake_r) else True:
        assert time.monotonic() < deadline, "no wake-up"
        time.sleep(0.01)
    assert not worker.congested
    worker.close(2)


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


def test_non_blocking_worker_drops_the_oldest_and_counts() -> None:
    gate = threading.Event()

    class Stuck(FlakyDriver):
        def send(self, items: list[bytes]) -> None:
            gate.wait(5)
            super().send(items)

    driver = Stuck(0)
    worker = Worker(driver, policy="drop-oldest", max_bytes=1000)
    worker.put("stdout", [([b"first"], True)], NS)
    time.sleep(0.05)
    for i in range(100):
        worker.put("stdout", [([b"%03d" % i + b"." * 96], True)], NS)
    assert not worker.congested
    gate.set()
    worker.close(5)
    assert worker.dropped_lines == 90 and worker.dropped_bytes == 90 * 100
    assert driver.delivered[0] == b"first" and driver.delivered[1].startswith(b"090")
    assert len(driver.delivered) == 11


def test_pipeline_keeps_a_local_cache_for_drivers_that_cannot_be_read(tmp_path: Path) -> None:
    driver = FlakyDriver(0)
    cache = JsonFileLog(str(tmp_path / "container-cached.log"))
    pipe = LogPipeline(driver, cache)
    pipe.write("stdout", b"one\ntwo\nthr")
    pipe.end("stdout")
    pipe.close()
    assert driver.delivered == [b"one", b"two", b"thr"]
    assert [r.data for r in run_logs(tmp_path / "container-cached.log", "json-file")] == [
        b"one\n",
        b"two\n",
        b"thr",
    ]
    assert pipe.stats() == {"log_dropped_lines": 0, "log_dropped_bytes": 0}


def test_json_records_parse_back_through_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    log = JsonFileLog(str(path), attrs={"tag": "web"})
    log.write("stdout", b"x\n<y>\n", NS)
    log.close()
    records = run_logs(path, "json-file")
    assert [(r.data, r.attrs) for r in records] == [
        (b"x\n", {"tag": "web"}),
        (b"<y>\n", {"tag": "web"}),
    ]
    assert json.loads(path.read_text().splitlines()[1])["log"] == "<y>\n"
    assert gzip  # the reader handles .gz files (see the rotation tests)


def test_the_block_fast_path_writes_what_the_general_path_writes(tmp_path: Path) -> None:
    """LogPipeline hands file drivers whole blocks when it can; the bytes must not change."""
    data = (
        b"plain\n" + b"x" * (MAX + 3) + b'\nquote " <tag> \xc3\xa9 \t\n' + b"tail"
        b"\nshort\n" * 50 + b"y" * (MAX - 1) + b"\n" + b"z" * MAX + b"\nend"
    )
    for writer in (JsonFileLog, CriLog):
        outputs = []
        for mode in ("blocks", "runs"):
            path = tmp_path / f"{writer.__name__}-{mode}.log"
            driver = writer(str(path))
            pipe = LogPipeline(driver)
            if mode == "runs":
                pipe.emit_block = None
            for i in range(0, len(data), 997):  # reads end anywhere, even mid-line
                pipe.write("stdout", data[i : i + 997])
            pipe.end("stdout")
            pipe.close()
            outputs.append(path.read_bytes())
        # Same records; the time stamps differ, so compare what follows them.
        strip = (
            (lambda b: re.sub(rb'"time":"[^"]*"', b"", b))
            if writer is JsonFileLog
            else (lambda b: re.sub(rb"(?m)^\S+ ", b"", b))
        )
        assert strip(outputs[0]) == strip(outputs[1])
        assert len(outputs[0].splitlines()) > 60


def test_non_blocking_mode_puts_a_file_driver_behind_the_ring_buffer(tmp_path: Path) -> None:
    pipe = LogPipeline(JsonFileLog(str(tmp_path / "x.log")), mode="non-blocking")
    assert pipe.worker is not None and pipe.emit_block is None
    for i in range(1000):
        pipe.write("stdout", f"l{i}\n".encode())
    pipe.close()
    assert [r.data for r in run_logs(tmp_path / "x.log", "json-file")] == [
        f"l{i}\n".encode() for i in range(1000)
    ]
    assert pipe.stats() == {"log_dropped_lines": 0, "log_dropped_bytes": 0}

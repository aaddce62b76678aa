"""Log drivers end to end: runtimectl run --log-driver D --log-opt K=V against real receivers.

Debian's rsyslog (unix, unixgram, udp, tcp, tcp+tls), a Forward protocol
receiver, and moto's CloudWatch Logs server, all started here as the test
user on loopback ports and private sockets; plus json-file and local rotation
and everything `runtimectl logs` does over them.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.logreceivers import (
    AWS_ENV,
    RSYSLOGD,
    ForwardReceiver,
    MotoServer,
    Rsyslog,
    free_port,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

IMAGE = "busybox:logs"


@pytest.fixture(scope="module")
def logd() -> Iterator[Daemon]:
    """A daemon whose shims can reach moto (credentials, region) like any AWS client."""
    d = Daemon()
    d.env.update(AWS_ENV)
    with d:
        d.import_busybox(IMAGE)
        yield d


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    if not Path(RSYSLOGD).exists() or shutil.which("openssl") is None:
        pytest.skip("rsyslog or openssl is not installed (deploy/setup-host.sh installs them)")
    server = Rsyslog(tmp_path_factory.mktemp("rsyslog")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def names(logd: Daemon) -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    for name in created:
        logd.ctl("rm", "-f", name)


def inspect(d: Daemon, name: str) -> dict:
    return json.loads(d.ok("inspect", name).stdout)[0]


def shim_state(d: Daemon, container_id: str) -> dict:
    """What the container's shim says about itself (its log counters too)."""
    import asyncio

    from runtimed.core.shim_client import ShimClient

    [sock] = glob.glob(f"{d.root}/**/containers/{container_id}/shim.sock", recursive=True)
    return asyncio.run(ShimClient(Path(sock).parent).state())


def wait_exited(d: Daemon, name: str, timeout: float = 30) -> None:
    wait_for(lambda: inspect(d, name)["State"]["Status"] == "exited", timeout, f"{name} to exit")


# -- syslog ------------------------------------------------------------------------------


def test_syslog_over_every_transport(logd: Daemon, rsyslog: Rsyslog, names: list[str]) -> None:
    cases = {
        "unixgram": (f"unixgram://{rsyslog.dgram}", "", "imuxsock"),
        "unix": (f"unix://{rsyslog.stream}", "rfc3164", "imptcp"),
        "udp": (f"udp://127.0.0.1:{rsyslog.udp}", "rfc5424", "imudp"),
        "tcp": (f"tcp://127.0.0.1:{rsyslog.tcp}", "rfc5424micro", "imptcp"),
        "tls": (f"tcp+tls://127.0.0.1:{rsyslog.tls}", "rfc5424", "imtcp"),
    }
    for name, (address, fmt, _) in cases.items():
        names.append(f"sys-{name}")
        opts = ["--log-opt", f"syslog-address={address}", "--log-opt", "syslog-facility=local3"]
        opts += ["--log-opt", f"syslog-format={fmt}", "--log-opt", "tag={{.Name}}-{{.ID}}"]
        if name == "tls":
            opts += ["--log-opt", f"syslog-tls-ca-cert={rsyslog.ca.ca}"]
        script = f"echo out-{name}; echo; echo err-{name} >&2"
        logd.ok("run", "--name", f"sys-{name}", "--log-driver", "syslog", *opts, IMAGE,
                "sh", "-c", script)  # fmt: skip

    def received() -> dict[str, list]:
        return {
            name: [line for line in rsyslog.lines() if line.msg.strip().endswith(f"-{name}")]
            for name in cases
        }

    wait_for(lambda: all(len(v) == 2 for v in received().values()), 15, "every syslog line")
    for name, lines in received().items():
        container_id = inspect(logd, f"sys-{name}")["Id"]
        assert [line.input for line in lines] == [cases[name][2]] * 2, name
        by_text = {line.msg.strip(): line for line in lines}
        out, err = by_text[f"out-{name}"], by_text[f"err-{name}"]
        assert (out.facility, out.severity) == (19, 6), name  # local3, info
        assert (err.facility, err.severity) == (19, 3), name  # local3, err
        assert out.app == f"sys-{name}-{container_id[:12]}", name
        assert out.procid.isdigit(), name
    # The empty line was dropped; nothing else arrived for these containers.
    assert not [line for line in rsyslog.lines() if line.msg.strip() == ""]
    # Dual logging: `logs` reads the local cache, empty line included.
    assert logd.ok("logs", "sys-tcp").stdout == "out-tcp\n\n"
    assert logd.ok("logs", "sys-tcp").stderr == "err-tcp\n"


def test_syslog_receiver_away_and_back_loses_nothing(
    logd: Daemon, rsyslog: Rsyslog, names: list[str]
) -> None:
    names.append("sys-outage")
    script = "i=0; while [ $i -lt 60 ]; do echo outage-$i; i=$((i+1)); sleep 0.1; done"
    logd.ok("run", "-d", "--name", "sys-outage", "--log-driver", "syslog",
            "--log-opt", f"syslog-address=tcp://127.0.0.1:{rsyslog.tcp}",
            IMAGE, "sh", "-c", script)  # fmt: skip

    def numbers() -> list[int]:
        return [
            int(m.group(1))
            for line in rsyslog.lines()
            if (m := re.fullmatch(r"\s*outage-(\d+)", line.msg))
        ]

    wait_for(lambda: 10 in numbers(), 15, "the first lines")
    rsyslog.kill()  # between two lines: nothing is in flight
    time.sleep(1.5)
    rsyslog.start()
    wait_exited(logd, "sys-outage")
    wait_for(lambda: 59 in numbers(), 30, "the lines written while rsyslog was away")
    assert numbers() == list(range(60))


def test_syslog_without_cache_cannot_be_read(logd: Daemon, rsyslog: Rsyslog, names: list[str]):
    names.append("sys-nocache")
    logd.ok("run", "--name", "sys-nocache", "--log-driver", "syslog",
            "--log-opt", f"syslog-address=udp://127.0.0.1:{rsyslog.udp}",
            "--log-opt", "cache-disabled=true", IMAGE, "echo", "nocache")  # fmt: skip
    result = logd.ctl("logs", "sys-nocache")
    assert result.returncode != 0
    assert "configured logging driver does not support reading" in result.stderr


# -- fluentd -----------------------------------------------------------------------------


def test_fluentd_down_at_start_fails_the_start_without_async(logd: Daemon, names: list[str]):
    port = free_port()
    names.append("fl-down")
    result = logd.ctl("run", "--name", "fl-down", "--log-driver", "fluentd",
                      "--log-opt", f"fluentd-address=127.0.0.1:{port}",
                      IMAGE, "echo", "x")  # fmt: skip
    assert result.returncode == 125
    assert (
        f"failed to initialize logging driver: dial tcp 127.0.0.1:{port}: connect: "
        "connection refused" in result.stderr
    )


def test_fluentd_async_delivers_once_fluentd_appears(logd: Daemon, names: list[str]) -> None:
    receiver = ForwardReceiver()
    names.append("fl-async")
    long_line = "x" * 40_000
    script = f"echo first; echo oops >&2; echo {long_line}; echo last"
    logd.ok("run", "--name", "fl-async", "--log-driver", "fluentd",
            "--log-opt", f"fluentd-address={receiver.address}",
            "--log-opt", "fluentd-async=true", "--log-opt", "fluentd-request-ack=true",
            "--log-opt", "fluentd-retry-wait=100ms",
            "--log-opt", "fluentd-sub-second-precision=true",
            "--log-opt", "tag=app.{{.Name}}", "--label", "team=core", "--log-opt", "labels=team",
            IMAGE, "sh", "-c", script)  # fmt: skip
    container_id = inspect(logd, "fl-async")["Id"]
    time.sleep(0.5)
    receiver.start()
    try:
        wait_for(lambda: "last" in receiver.logs(), 20, "records after fluentd appeared")
        events = receiver.events
        assert receiver.acks >= 1
        assert {e.tag for e in events} == {"app.fl-async"}
        first = next(e for e in events if e.record["log"] == "first")
        assert first.record["container_id"] == container_id
        assert first.record["container_name"] == "/fl-async"
        assert first.record["source"] == "stdout" and first.record["team"] == "core"
        assert isinstance(first.time, tuple) and len(first.time) == 2  # EventTime
        assert next(e for e in events if e.record["log"] == "oops").record["source"] == "stderr"
        chunks = [e.record for e in events if e.record.get("partial_message") == "true"]
        assert "".join(c["log"] for c in chunks) == long_line
        assert [c["partial_ordinal"] for c in chunks] == ["1", "2", "3"]
        assert [c["partial_last"] for c in chunks] == ["false", "false", "true"]
        assert len({c["partial_id"] for c in chunks}) == 1
        # stdout and stderr are separate pipes: order holds within a stream only.
        stdout_lines = [
            e.record["log"]
            for e in events
            if e.record["source"] == "stdout" and e.record.get("partial_message") != "true"
        ]
        assert stdout_lines == ["first", "last"]
        assert logd.ok("logs", "fl-async").stdout == f"first\n{long_line}\nlast\n"
    finally:
        receiver.stop()


def test_fluentd_away_and_back_blocking_delivers_in_order(
    logd: Daemon, names: list[str], tmp_path: Path
) -> None:
    receiver = ForwardReceiver(path=tmp_path / "fluent.sock").start()
    names.append("fl-outage")
    script = "i=0; while [ $i -lt 50 ]; do echo n-$i; i=$((i+1)); sleep 0.05; done"
    logd.ok("run", "-d", "--name", "fl-outage", "--log-driver", "fluentd",
            "--log-opt", f"fluentd-address={receiver.address}",
            "--log-opt", "fluentd-request-ack=true", "--log-opt", "fluentd-retry-wait=100ms",
            IMAGE, "sh", "-c", script)  # fmt: skip
    try:
        wait_for(lambda: "n-5" in receiver.logs(), 15, "the first records")
        receiver.stop()
        time.sleep(1.0)
        receiver.start()
        wait_exited(logd, "fl-outage")
        wait_for(lambda: "n-49" in receiver.logs(), 20, "every record")
        got = [line for line in receiver.logs() if line.startswith("n-")]
        # Acked chunks are never sent twice; unacked ones are sent again, so order holds.
        assert [int(x[2:]) for x in dict.fromkeys(got)] == list(range(50))
    finally:
        receiver.stop()


def test_non_blocking_mode_never_blocks_and_counts_drops(logd: Daemon, names: list[str]) -> None:
    port = free_port()  # nobody listens: every record waits in the ring buffer
    names.append("nb")
    logd.ok("run", "-d", "--name", "nb", "--log-driver", "fluentd",
            "--log-opt", f"fluentd-address=127.0.0.1:{port}", "--log-opt", "mode=non-blocking",
            "--log-opt", "max-buffer-size=64k", "--log-opt", "cache-disabled=true",
            IMAGE, "sh", "-c", "head -c 4000000 /dev/zero | tr '\\0' a | fold -w 99")  # fmt: skip
    wait_exited(logd, "nb", timeout=20)
    state = shim_state(logd, inspect(logd, "nb")["Id"])
    assert state["log_dropped_lines"] > 30_000
    assert state["log_dropped_bytes"] > 3_000_000


# -- awslogs ------------------------------------------------------------------------------


def test_awslogs_burst_respects_the_batch_limits(
    logd: Daemon, moto: MotoServer, names: list[str]
) -> None:
    names.append("aws-burst")
    logd.ok("run", "--name", "aws-burst", "--log-driver", "awslogs",
            "--log-opt", f"awslogs-endpoint={moto.endpoint}", "--log-opt", "awslogs-group=burst",
            "--log-opt", "awslogs-create-group=true",
            "--log-opt", "awslogs-force-flush-interval-seconds=1",
            IMAGE, "sh", "-c", "seq 1 20000")  # fmt: skip
    container_id = inspect(logd, "aws-burst")["Id"]
    wait_for(lambda: len(moto.events("burst", container_id)) >= 20000, 60, "20,000 events")
    events = moto.events("burst", container_id)
    assert [e["message"] for e in events] == [str(i) for i in range(1, 20001)]
    puts = [p for p in moto.put_requests() if p["logStreamName"] == container_id]
    assert sum(len(p["logEvents"]) for p in puts) == 20000
    for put in puts:
        batch = put["logEvents"]
        assert len(batch) <= 10_000
        assert sum(len(e["message"].encode()) + 26 for e in batch) <= 1_048_576
        stamps = [e["timestamp"] for e in batch]
        assert stamps == sorted(stamps)
    # Without create-group a missing group fails the start, saying why.
    names.append("aws-nogroup")
    result = logd.ctl("run", "--name", "aws-nogroup", "--log-driver", "awslogs",
                      "--log-opt", f"awslogs-endpoint={moto.endpoint}",
                      "--log-opt", "awslogs-group=nosuchgroup", IMAGE, "true")  # fmt: skip
    assert result.returncode == 125
    assert "failed to initialize logging driver: failed to create Cloudwatch log stream" in (
        result.stderr
    )


def test_awslogs_endpoint_away_and_back(
    logd: Daemon, moto: MotoServer, names: list[str], tmp_path: Path
) -> None:
    names.append("aws-outage")
    second = MotoServer(tmp_path / "moto2").start()
    script = "i=0; while [ $i -lt 40 ]; do echo e-$i; i=$((i+1)); sleep 0.1; done"
    try:
        logd.ok("run", "-d", "--name", "aws-outage", "--log-driver", "awslogs",
                "--log-opt", f"awslogs-endpoint={second.endpoint}",
                "--log-opt", "awslogs-group=out",
                "--log-opt", "awslogs-create-group=true", "--log-opt", "awslogs-stream=s",
                "--log-opt", "awslogs-force-flush-interval-seconds=1",
                IMAGE, "sh", "-c", script)  # fmt: skip
        wait_for(lambda: len(second.events("out", "s")) >= 5, 20, "the first events")
        before = [e["message"] for e in second.events("out", "s")]
        port = second.port
        second.stop()
        time.sleep(1.5)
        # A new CloudWatch on the same address (moto keeps nothing): the driver makes its
        # group and stream again and delivers everything that was waiting.
        second = MotoServer(tmp_path / "moto3", port=port).start()
        wait_exited(logd, "aws-outage")
        wait_for(lambda: "e-39" in [e["message"] for e in second.events("out", "s")], 30, "rest")
        after = [e["message"] for e in second.events("out", "s")]
        assert before + after == [f"e-{i}" for i in range(40)] or (
            # A batch cut off by the stop may have reached the first server and come again.
            list(dict.fromkeys(before + after)) == [f"e-{i}" for i in range(40)]
        )
    finally:
        second.stop()


# -- json-file and local, and what `logs` does over them -------------------------------------


def test_json_file_rotation_compress_and_logs_over_rotated_files(logd: Daemon, names: list[str]):
    names.append("rot")
    script = "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done"
    logd.ok("run", "--name", "rot", "--log-opt", "max-size=2k", "--log-opt", "max-file=4",
            "--log-opt", "compress=true", IMAGE, "sh", "-c", script)  # fmt: skip
    path = Path(inspect(logd, "rot")["LogPath"])
    wait_for(lambda: Path(f"{path}.1.gz").exists() and not Path(f"{path}.1").exists(), 10,
             "the compressed rotation")  # fmt: skip
    files = sorted(p.name.removeprefix(path.name) for p in path.parent.glob(path.name + "*"))
    assert files == ["", ".1.gz", ".2.gz", ".3.gz"]
    assert all(p.stat().st_size <= 2000 for p in path.parent.glob(path.name + "*"))
    kept = []
    for rotated in (".3.gz", ".2.gz", ".1.gz"):
        kept += gzip.decompress(Path(f"{path}{rotated}").read_bytes()).decode().splitlines()
    kept += path.read_text().splitlines()
    texts = [json.loads(line)["log"] for line in kept]
    assert texts[-1] == "line-299\n" and len(texts) < 300
    first = int(texts[0][5:-1])
    assert texts == [f"line-{i}\n" for i in range(first, 300)]
    assert logd.ok("logs", "rot").stdout == "".join(texts)
    assert logd.ok("logs", "--tail", "3", "rot").stdout == "line-297\nline-298\nline-299\n"


def test_local_driver_rotation_tail_since_until(logd: Daemon, names: list[str]) -> None:
    names.append("loc")
    script = "for i in 1 2 3; do echo first-$i; done; sleep 1.2; echo second; echo e >&2"
    logd.ok("run", "--name", "loc", "--log-driver", "local", "--log-opt", "max-size=1k",
            "--log-opt", "max-file=3", IMAGE, "sh", "-c", script)  # fmt: skip
    assert logd.ok("logs", "loc").stdout == "first-1\nfirst-2\nfirst-3\nsecond\n"
    stamped = logd.ok("logs", "-t", "loc").out_lines
    stamps = [line.split(" ", 1)[0] for line in stamped]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", s) for s in stamps)
    assert logd.ok("logs", "--until", stamps[2], "loc").stdout == "first-1\nfirst-2\nfirst-3\n"
    assert logd.ok("logs", "--since", stamps[3], "loc").stdout == "second\n"
    # --tail counts the records of both streams together, as Docker's does.
    last = logd.ok("logs", "--tail", "1", "loc")
    assert (last.stdout, last.stderr) == ("", "e\n")
    last = logd.ok("logs", "--tail", "2", "loc")
    assert (last.stdout, last.stderr) == ("second\n", "e\n")

    names.append("loc-rot")
    script = "i=0; while [ $i -lt 200 ]; do echo r-$i; i=$((i+1)); done"
    logd.ok("run", "--name", "loc-rot", "--log-driver", "local", "--log-opt", "max-size=1k",
            "--log-opt", "max-file=3", IMAGE, "sh", "-c", script)  # fmt: skip
    out = logd.ok("logs", "loc-rot").stdout.splitlines()
    assert out[-1] == "r-199" and len(out) < 200
    assert out == [f"r-{i}" for i in range(int(out[0][2:]), 200)]


def test_logs_details_and_follow_across_rotations(logd: Daemon, names: list[str]) -> None:
    names.append("det")
    logd.ok("run", "--name", "det", "--label", "app=web", "-e", "STAGE=prod", "--log-opt",
            "labels=app", "--log-opt", "env=STAGE", "--log-opt", "tag={{.Name}}",
            IMAGE, "echo", "hello")  # fmt: skip
    record = json.loads(Path(inspect(logd, "det")["LogPath"]).read_text().splitlines()[0])
    assert list(record) == ["log", "stream", "attrs", "time"]
    assert record["attrs"] == {"STAGE": "prod", "app": "web", "tag": "det"}
    assert logd.ok("logs", "--details", "det").stdout == "STAGE=prod,app=web,tag=det hello\n"
    stamped = logd.ok("logs", "--details", "-t", "det").stdout
    assert re.fullmatch(r"\S+Z STAGE=prod,app=web,tag=det hello\n", stamped)

    names.append("follow")
    script = (
        "i=0; while [ $i -lt 400 ]; do echo f-$i; i=$((i+1)); [ $((i % 40)) = 0 ] && sleep 0.1;"
        " done"
    )
    logd.ok("run", "-d", "--name", "follow", "--log-opt", "max-size=3k", "--log-opt",
            "max-file=10", IMAGE, "sh", "-c", script)  # fmt: skip
    followed = logd.ok("logs", "-f", "follow", timeout=60).stdout.splitlines()
    assert followed == [f"f-{i}" for i in range(400)]


def test_option_errors_use_dockers_words(logd: Daemon, names: list[str]) -> None:
    cases = [
        (["--log-opt", "foo=bar"], "unknown log opt 'foo' for json-file log driver"),
        (
            ["--log-opt", "compress=true", "--log-opt", "max-file=1", "--log-opt", "max-size=1k"],
            "compress cannot be true when max-file is less than 2 or max-size is not set",
        ),  # fmt: skip
        (["--log-opt", "max-size=lots"], "invalid size: 'lots'"),
        (
            ["--log-opt", "max-size=1k", "--log-opt", "max-file=99999999999999999999"],
            'strconv.Atoi: parsing "99999999999999999999": value out of range',
        ),  # fmt: skip
        (
            ["--log-driver", "local", "--log-opt", "max-file=-99999999999999999999"],
            'strconv.Atoi: parsing "-99999999999999999999": value out of range',
        ),  # fmt: skip
        (["--log-opt", "mode=sometimes"], "logger: logging mode not supported: sometimes"),
        (
            ["--log-opt", "max-buffer-size=1m"],
            "logger: max-buffer-size option is only supported with 'mode=non-blocking'",
        ),  # fmt: skip
        (
            ["--log-driver", "local", "--log-opt", "foo=1"],
            "unknown log opt 'foo' for log driver local",
        ),
        (
            ["--log-driver", "syslog", "--log-opt", "syslog-facility=nope"],
            "invalid syslog facility",
        ),
        (
            ["--log-driver", "syslog", "--log-opt", "syslog-address=http://x"],
            "syslog-address should be in form proto://address, got http://x",
        ),  # fmt: skip
        (["--log-driver", "awslogs"], "must specify a value for log opt 'awslogs-group'"),
        (
            [
                "--log-driver",
                "awslogs",
                "--log-opt",
                "awslogs-group=g",
                "--log-opt",
                "awslogs-datetime-format=%Y",
                "--log-opt",
                "awslogs-multiline-pattern=x",
            ],
            "you cannot configure log opt 'awslogs-datetime-format' and 'awslogs-multiline-pattern'"
            " at the same time",
        ),  # fmt: skip
        (
            ["--log-driver", "fluentd", "--log-opt", "fluentd-async=maybe"],
            'strconv.ParseBool: parsing "maybe": invalid syntax',
        ),  # fmt: skip
        (["--log-driver", "nosuch"], "logger: no log driver named 'nosuch' is registered"),
        (["--log-opt", "tag={{.Nope}}"], "can't evaluate field Nope"),
    ]
    for args, message in cases:
        result = logd.ctl("create", "--name", "bad-opts", *args, IMAGE, "true")
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
    assert "bad-opts" not in logd.ok("ps", "-a", "--format", "{{.Names}}").stdout


def test_daemon_default_driver_and_opts_from_runtimed_toml(tmp_path: Path) -> None:
    config = tmp_path / "runtimed.toml"
    config.write_text(
        'default_log_driver = "local"\n'
        '[default_log_opts]\nmax-size = "1k"\nmax-file = "2"\ncompress = "false"\n'
    )
    with Daemon(extra_args=("--config", str(config))) as d:
        d.import_busybox(IMAGE)
        d.ok("run", "--name", "dflt", IMAGE, "sh", "-c", "seq 1 300")
        log_config = inspect(d, "dflt")["HostConfig"]["LogConfig"]
        assert log_config == {
            "Type": "local",
            "Config": {"max-size": "1k", "max-file": "2", "compress": "false"},
        }
        out = d.ok("logs", "dflt").stdout.splitlines()
        assert out[-1] == "300" and len(out) < 300  # rotated away at 1k, two files kept
        # Another driver gets none of the default driver's options.
        d.ok("run", "--name", "other", "--log-driver", "json-file", IMAGE, "true")
        assert inspect(d, "other")["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {}}
    bad = tmp_path / "bad.toml"
    bad.write_text('default_log_driver = "json-file"\n[default_log_opts]\nmax-file = "0"\n')
    daemon = Daemon(extra_args=("--config", str(bad)))
    with contextlib.suppress(RuntimeError), pytest.raises(RuntimeError, match="max-file"):
        daemon.start()
    daemon.cleanup()


# -- completeness ------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["json-file", "cri"])
def test_64_mib_arrive_whole(logd: Daemon, names: list[str], driver: str) -> None:
    """Every byte of 64 MiB of output, in order, in the log file."""
    lines = 600_000
    names.append(f"big-{driver}")
    awk = f'BEGIN{{for(i=0;i<{lines};i++) printf "%08d %0100d\\n", i, 0}}'
    logd.ok("run", "--name", f"big-{driver}", "--log-driver", driver, IMAGE, "awk", awk,
            timeout=300)  # fmt: skip
    path = Path(inspect(logd, f"big-{driver}")["LogPath"] or _log_path(logd, f"big-{driver}"))
    expected_tail = "0" * 100
    count = 0
    with path.open("rb") as f:
        for count, raw in enumerate(f):  # noqa: B007 - count is checked after the loop
            if driver == "cri":
                text = raw.split(b" ", 3)[3].decode()
                assert raw.split(b" ", 3)[2] == b"F"
                number, tail = text[:8], text[9:-1]
            else:
                log = json.loads(raw)["log"]
                number, tail = log[:8], log[9:-1]
            assert int(number) == count and tail == expected_tail
    assert count == lines - 1


def _log_path(d: Daemon, name: str) -> str:
    container_id = inspect(d, name)["Id"]
    [path] = glob.glob(f"{d.data_dir}/containers/{container_id}/{container_id}-json.log")
    return path


# -- CRI ---------------------------------------------------------------------------------------


def test_cri_splits_long_lines_and_reopens_after_kubelet_renames(
    logd: Daemon, tmp_path: Path
) -> None:
    from runtimed.gen.runtime.v1 import api_pb2 as cri

    rt = logd.cri_runtime()
    pod_config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="logs", uid="uid-logs", namespace="default"),
        hostname="logs",
        log_directory=str(tmp_path),
    )
    pod = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=pod_config)).pod_sandbox_id
    script = (
        "head -c 102400 /dev/zero | tr '\\0' a; echo; printf tail; sleep 0.3; echo;"
        " while true; do echo tick; sleep 0.1; done"
    )
    config = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name="talker"),
        image=cri.ImageSpec(image=IMAGE),
        command=["/bin/sh", "-c", script],
        log_path="talker/0.log",
    )
    (tmp_path / "talker").mkdir()
    ctr = rt.CreateContainer(
        cri.CreateContainerRequest(pod_sandbox_id=pod, config=config, sandbox_config=pod_config)
    ).container_id
    try:
        rt.StartContainer(cri.StartContainerRequest(container_id=ctr))
        log = tmp_path / "talker" / "0.log"
        wait_for(lambda: log.exists() and b"tick" in log.read_bytes(), 15, "the first tick")
        lines = log.read_bytes().split(b"\n")
        fields = [line.split(b" ", 3) for line in lines if line]
        kinds = [(f[1], f[2], len(f[3]) if len(f) > 3 else 0) for f in fields]
        # 100 KiB: six 16 KiB pieces and the rest; a line whose end came later is one line.
        assert kinds[:8] == [(b"stdout", b"P", 16384)] * 6 + [
            (b"stdout", b"F", 102400 - 6 * 16384),
            (b"stdout", b"F", 4),
        ]
        rotated = log.with_name("0.log.20240301-123456")
        log.rename(rotated)
        rt.ReopenContainerLog(cri.ReopenContainerLogRequest(container_id=ctr))
        wait_for(lambda: log.exists() and b"tick" in log.read_bytes(), 10, "a tick in the new file")
        assert log.read_bytes().split(b" ", 3)[1:3] == [b"stdout", b"F"]
        rt.StopContainer(cri.StopContainerRequest(container_id=ctr, timeout=1))
        log.rename(tmp_path / "talker" / "0.log.old")
        with pytest.raises(Exception, match="not running"):
            rt.ReopenContainerLog(cri.ReopenContainerLogRequest(container_id=ctr))
        assert not log.exists()
    finally:
        rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))

"""kill -9 of the daemon loses nothing: containers run on, logs grow, exits are kept."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def state(daemon: Daemon, name: str) -> dict:
    return json.loads(daemon.ok("inspect", name).stdout)[0]["State"]


def test_containers_outlive_a_killed_daemon() -> None:
    d = Daemon()
    try:
        d.start()
        d.import_busybox("bb:restore")
        d.ok(
            "run",
            "-d",
            "--name",
            "counter",
            "bb:restore",
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done",
        )
        d.ok("run", "-d", "--name", "short", "bb:restore", "sh", "-c", "sleep 1; exit 42")
        d.ok("run", "-d", "--name", "again", "--restart", "always", "bb:restore", "sleep", "1000")
        log_path = Path(json.loads(d.ok("inspect", "counter").stdout)[0]["LogPath"])
        wait_for(lambda: log_path.exists() and log_path.stat().st_size > 0, what="first log line")
        pid_before = state(d, "counter")["Pid"]

        d.kill9()
        size_at_kill = log_path.stat().st_size
        time.sleep(1.5)  # `short` exits while no daemon is there
        assert log_path.stat().st_size > size_at_kill, "the log stopped growing without a daemon"

        d.start()
        counter = state(d, "counter")
        assert counter["Running"] and counter["Pid"] == pid_before
        short = state(d, "short")
        assert short["Status"] == "exited" and short["ExitCode"] == 42
        assert state(d, "again")["Running"]
        # The restarted daemon still controls what it found.
        assert d.ok("exec", "counter", "echo", "reachable").stdout == "reachable\n"
        lines = d.ok("logs", "--tail", "1", "counter").stdout
        assert int(lines.strip()) > 10
        d.ok("stop", "-t", "0", "counter")
        assert state(d, "counter")["ExitCode"] == 137
    finally:
        d.cleanup()


def test_restart_always_after_daemon_restart() -> None:
    d = Daemon()
    try:
        d.start()
        d.import_busybox("bb:restore")
        d.ok(
            "run",
            "-d",
            "--name",
            "svc",
            "--restart",
            "unless-stopped",
            "bb:restore",
            "sh",
            "-c",
            "sleep 0.5; exit 1",
        )
        d.ok(
            "run",
            "-d",
            "--name",
            "halted",
            "--restart",
            "unless-stopped",
            "bb:restore",
            "sleep",
            "1000",
        )
        d.ok("stop", "-t", "0", "halted")
        d.kill9()
        time.sleep(1.0)  # svc exits while the daemon is away
        d.start()
        wait_for(lambda: state(d, "svc")["Running"], what="svc restarted by the new daemon")
        assert not state(d, "halted")["Running"]  # manually stopped: stays stopped
    finally:
        d.cleanup()


def test_auto_remove_containers_that_ended_are_removed_at_restart() -> None:
    """`--rm` containers the crash left Created (between create and start) or that exited
    while no daemon was there are removed when it comes back, with their anonymous
    volumes, as docker's restore does; a running one stays until it ends."""
    d = Daemon()
    try:
        d.start()
        d.import_busybox("bb:restore")
        d.ok("create", "--rm", "--name", "created", "-v", "/anon", "bb:restore", "true")
        volumes_before = set(d.ok("volume", "ls", "-q").stdout.split())
        assert volumes_before
        d.ok("run", "-d", "--rm", "--name", "ends", "bb:restore", "sleep", "1")
        d.ok("run", "-d", "--rm", "--name", "runs", "bb:restore", "sleep", "1000")
        d.ok("create", "--name", "kept", "bb:restore", "true")  # no --rm: stays

        d.kill9()
        time.sleep(1.5)  # `ends` exits while no daemon is there
        d.start()
        names = set(d.ok("ps", "-a", "--format", "{{.Names}}").stdout.split())
        assert names == {"runs", "kept"}
        assert d.ok("volume", "ls", "-q").stdout.split() == []
        d.ok("stop", "-t", "0", "runs")
        wait_for(
            lambda: d.ok("ps", "-a", "-q", "--filter", "name=runs").stdout == "",
            what="runs to be removed once it stopped",
        )
    finally:
        d.cleanup()

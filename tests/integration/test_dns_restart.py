"""Every container's lookups go through one resolver: the daemon starts it again at once
when it dies (issue 15), not at some later container start."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import pytest

from runtimed.network import dnsd, helperproc
from tests.support.daemon import Daemon
from tests.support.waiting import ended, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def net(daemon: Daemon) -> Iterator[str]:
    image = daemon.import_busybox("dnsbox:1")
    daemon.ok("network", "create", "lookups")
    for name in ("srv", "cli"):
        daemon.ok("run", "-d", "--name", name, "--network", "lookups", image, "sleep", "300")
    yield "lookups"
    daemon.ctl("rm", "-f", "srv", "cli")
    daemon.ctl("network", "rm", "lookups")


def resolves(daemon: Daemon, name: str, ip: str) -> bool:
    found = daemon.ctl("exec", "cli", "nslookup", name, timeout=30)
    return found.returncode == 0 and ip in found.stdout.split("Name:", 1)[-1]


def resolver_pid(daemon: Daemon) -> int:
    pid = helperproc.read_pid(daemon.socket.parent / "network" / "dnsd.pid")
    return pid if helperproc.alive(pid, dnsd.MARKER) else 0


def test_a_killed_resolver_is_back_at_once(daemon: Daemon, net: str) -> None:
    doc = json.loads(daemon.ok("inspect", "srv").stdout)[0]
    ip = doc["NetworkSettings"]["Networks"][net]["IPAddress"]
    assert resolves(daemon, "srv", ip)
    first = resolver_pid(daemon)
    assert first
    for _ in range(2):  # and again: a second death is no crash loop
        pid = resolver_pid(daemon)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda pid=pid: ended(pid), what="the resolver to die")
        wait_for(lambda: resolves(daemon, "srv", ip), timeout=20, what="srv to resolve again")
        assert resolver_pid(daemon) not in (0, pid)
    assert "dns_resolver_died" in daemon.log()

"""The DNS resolver against a flood of idle TCP connections (issue 15).

A real dnsd process on 127.0.0.1 (a free port instead of 53; no namespace):
it serves at most MAX_TCP_CLIENTS TCP clients, drops idle ones, keeps
answering UDP, and survives running out of descriptors and reloads meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtimed.network import dnsd, dnswire, helperproc
from tests.support.waiting import wait_for

FLOOD = 1100


@dataclass
class Resolver:
    pid: int
    port: int
    config: Path
    ack: Path
    log: Path

    def publish(self, generation: int, names: dict[str, list[str]]) -> None:
        table = {"listen": ["127.0.0.1"], "scopes": {"127.0.0.1": names}, "generation": generation}
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(json.dumps(table))
        tmp.rename(self.config)

    def acked(self) -> int:
        try:
            return int(self.ack.read_text() or 0)
        except (OSError, ValueError):
            return 0

    def alive(self) -> bool:
        return helperproc.alive(self.pid, dnsd.MARKER)


def _free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    while True:
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@pytest.fixture
def start_resolver(tmp_path: Path) -> Iterator[Callable[[int], Resolver]]:
    started: list[Resolver] = []

    def start(nofile: int) -> Resolver:
        """A resolver whose process may hold `nofile` descriptors (soft and hard limit)."""
        res = Resolver(
            0, _free_port(), tmp_path / "dns.json", tmp_path / "dns.ack", tmp_path / "dnsd.log"
        )
        res.publish(1, {"web": ["10.1.2.3"]})
        spec = {
            "netns": "",
            "config": str(res.config),
            "ack": str(res.ack),
            "log": str(res.log),
            "port": res.port,
        }
        proc = subprocess.run(
            [sys.executable, "-m", dnsd.MARKER, json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)),
        )
        res.pid = int(proc.stdout.split()[-1])
        started.append(res)
        wait_for(lambda: res.acked() == 1, what="the resolver to take its table")
        return res

    yield start
    for res in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(res.pid, signal.SIGKILL)


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    """Room in this process for the flood's sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FLOOD + 200
    assert hard >= want, f"the hard limit on open files ({hard}) is below {want}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def udp_lookup(port: int, name: str) -> list[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(dnswire.encode_query(name), ("127.0.0.1", port))
        return dnswire.decode_answers(s.recv(512))[1]


def tcp_lookup(conn: socket.socket, name: str) -> list[str]:
    query = dnswire.encode_query(name)
    conn.settimeout(5)
    conn.sendall(struct.pack("!H", len(query)) + query)
    size = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))[0]
    return dnswire.decode_answers(conn.recv(size, socket.MSG_WAITALL))[1]


def flood(port: int) -> list[socket.socket]:
    """FLOOD connections, not waiting for any (a resolver out of descriptors stops
    accepting for a while, and a full backlog makes connects wait)."""
    conns = []
    for _ in range(FLOOD):
        conn = socket.socket()
        conn.setblocking(False)
        conn.connect_ex(("127.0.0.1", port))
        conns.append(conn)
    return conns


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def close_all(conns: list[socket.socket]) -> None:
    for conn in conns:
        conn.close()


@pytest.mark.usefixtures("many_descriptors")
def test_idle_tcp_connections_are_capped_and_dropped_and_udp_keeps_answering(
    start_resolver: Callable[[int], Resolver],
) -> None:
    res = start_resolver(1024)  # the usual soft limit: a flood of 1,100 would exceed it
    base = descriptors(res.pid)
    cap = dnsd.MAX_TCP_CLIENTS
    conns = flood(res.port)
    try:
        # The resolver holds as many clients as the cap allows and turns the rest away
        # (each accept batch holds at most a listen backlog more for a moment).
        wait_for(lambda: descriptors(res.pid) - base >= cap, what=f"{cap} TCP clients held")
        wait_for(lambda: descriptors(res.pid) - base <= cap, what="the rest turned away")
        with (
            socket.create_connection(("127.0.0.1", res.port), timeout=10) as late,
            contextlib.suppress(ConnectionResetError),  # turned away with a reset: as good
        ):
            assert late.recv(1) == b"", "a client past the cap was served"
        assert udp_lookup(res.port, "web") == ["10.1.2.3"]
        # A reload with every TCP slot taken: read, applied, acknowledged.
        res.publish(2, {"web": ["10.1.2.3"], "db": ["10.1.2.4"]})
        os.kill(res.pid, signal.SIGHUP)
        wait_for(lambda: res.acked() == 2, what="the reload to be acknowledged")
        assert udp_lookup(res.port, "db") == ["10.1.2.4"]
        # Idle clients are dropped (they never said a word): their slots are free again.
        wait_for(lambda: descriptors(res.pid) <= base, timeout=30, what="idle clients dropped")
    finally:
        close_all(conns)
    assert res.alive()
    with socket.create_connection(("127.0.0.1", res.port), timeout=5) as conn:
        assert tcp_lookup(conn, "db") == ["10.1.2.4"]


@pytest.mark.usefixtures("many_descriptors")
def test_running_out_of_descriptors_is_not_fatal(
    start_resolver: Callable[[int], Resolver],
) -> None:
    res = start_resolver(64)  # far below the cap: accept itself runs out
    conns = flood(res.port)
    try:
        wait_for(lambda: "out of system resource" in res.log.read_text(), what="accept to run out")
        assert udp_lookup(res.port, "web") == ["10.1.2.3"]
        # A reload now may find no descriptor to read or acknowledge the table with.
        res.publish(2, {"db": ["10.1.2.4"]})
        os.kill(res.pid, signal.SIGHUP)
        wait_for(
            lambda: res.acked() == 2 or "dnsd: cannot" in res.log.read_text(),
            what="the reload to be tried",
        )
        assert res.alive()
    finally:
        close_all(conns)
    # Descriptors are back: the reload is done (tried again if it failed), TCP serves.
    wait_for(lambda: res.acked() == 2, what="the reload to be acknowledged")
    assert udp_lookup(res.port, "db") == ["10.1.2.4"]
    with socket.create_connection(("127.0.0.1", res.port), timeout=5) as conn:
        assert tcp_lookup(conn, "db") == ["10.1.2.4"]
    assert res.alive()

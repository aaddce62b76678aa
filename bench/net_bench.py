"""Network benchmark: runtimed's rootless networking against rootless podman's, same image.

Run from the tree root as the unprivileged user: `python -m bench.net_bench`
(`bench/run.sh network` does that as root for you). In one run, rounds alternating
between the tools:

1. TCP throughput, container -> a server on the host's loopback (runtimed: its egress
   forwarder connects host.containers.internal straight to the host's loopback; podman:
   its pasta when it has it, else slirp4netns with allow_host_loopback);
2. TCP throughput, a host client -> a published port (runtimed's splice forwarder;
   podman's pasta forwarding, or rootlessport with slirp4netns);
3. TCP throughput between two containers on one user-defined network;
4. connections per second to a published port (4 client threads, each connection
   gets one byte and is closed);
5. `run --rm IMAGE true` latency with each tool's default network (and, for context,
   with --network none: the difference is what the network costs per container).

The workloads are the host's python3 run inside the busybox image through read-only
binds of /usr (the same binds for both tools), so both move the same bytes the same
way. Prints each pair with its ratio and a one-line JSON summary last. Exits 0
whatever the numbers; non-zero only if something measured (or the setup) fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    COMMAND_TIMEOUT,
    BenchError,
    PodmanEnv,
    make_busybox_rootfs,
    print_table,
    stop_runtimed,
)
from tests.support.daemon import Daemon
from tests.support.hostserver import LoopbackServer

IMAGE = "bench/netbox:1"
PY = ["-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro"]
PYTHON = "/usr/bin/python3"
SERVER_PORT = 5201
CHUNK = 1 << 20
TARGET_PUBLISHED_GBIT = 1.0

# In a container: receive whole connections, answer each with the byte count.
SINK = f"""
import socket, threading
def serve(c):
    n = 0
    buf = bytearray({CHUNK})
    while True:
        k = c.recv_into(buf)
        if not k:
            break
        n += k
    c.sendall(str(n).encode())
    c.close()
s = socket.create_server(("0.0.0.0", {SERVER_PORT}), backlog=512)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# In a container: one byte per connection, then close (connections per second).
TICK = f"""
import socket
s = socket.create_server(("0.0.0.0", {SERVER_PORT}), backlog=4096)
while True:
    c, _ = s.accept()
    try:
        c.sendall(b"x")
    except OSError:
        pass
    c.close()
"""

# In a container: send SIZE bytes to HOST:PORT, print seconds until the sink confirmed.
SEND = """
import socket, sys, time
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if host == "host.containers.internal":
    for line in open("/etc/hosts"):
        words = line.split()
        if len(words) > 1 and host in words[1:]:
            host = words[0]
            break
deadline = time.time() + 30
while True:
    try:
        probe = socket.create_connection((host, port), timeout=5)
        probe.shutdown(socket.SHUT_WR)
        if probe.recv(64) == b"0":
            probe.close()
            break
        probe.close()
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("sink never answered")
    time.sleep(0.05)
data = bytes(1 << 20)
start = time.perf_counter()
c = socket.create_connection((host, port))
left = size
while left > 0:
    c.sendall(data[: min(len(data), left)])
    left -= len(data)
c.shutdown(socket.SHUT_WR)
got = c.recv(64)
elapsed = time.perf_counter() - start
if int(got) != size:
    sys.exit(f"sink got {got!r}, expected {size}")
print(elapsed)
"""


def gbit(size: int, seconds: float) -> float:
    return size * 8 / seconds / 1e9


# --- host-side peers -------------------------------------------------------------------


def host_sink() -> LoopbackServer:
    """A sink on the host's loopback, like SINK (for container -> host)."""

    def count(conn: socket.socket) -> None:
        buf, total = bytearray(CHUNK), 0
        while n := conn.recv_into(buf):
            total += n
        conn.sendall(str(total).encode())

    return LoopbackServer(count)


def wait_sink(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
                probe.shutdown(socket.SHUT_WR)
                if probe.recv(64) == b"0":
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"nothing answers on published port {port}")
        time.sleep(0.05)


def send_to_port(port: int, size: int) -> float:
    data = bytes(CHUNK)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as c:
        left = size
        while left > 0:
            c.sendall(data[: min(len(data), left)])
            left -= len(data)
        c.shutdown(socket.SHUT_WR)
        got = c.recv(64)
    elapsed = time.perf_counter() - start
    if got != str(size).encode():
        raise BenchError(f"published sink got {got!r}, expected {size}")
    return elapsed


def connections_per_second(port: int, seconds: float, threads: int = 4) -> float:
    counts = [0] * threads
    errors: list[str] = []
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        while time.monotonic() < stop:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    if c.recv(1) == b"x":
                        counts[i] += 1
            except OSError as exc:
                errors.append(str(exc))
                if len(errors) > 100:
                    return

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if len(errors) > 100:
        raise BenchError(f"connections to port {port} keep failing: {errors[-1]}")
    return sum(counts) / (time.monotonic() - start)


def wait_ticks(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                if c.recv(1) == b"x":
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"nothing answers on published port {port}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the tools -------------------------------------------------------------------------


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv[:6])} ... failed ({proc.returncode}):\n{proc.stderr}")
    return time.perf_counter() - start, proc.stdout


class Tool:
    name = ""
    host_name = ""  # how a container names the host's loopback
    net_args: list[str] = []  # the network run uses by default in this bench

    def cli(self, *args: str) -> str:
        raise NotImplementedError

    def cli_timed(self, *args: str) -> float:
        raise NotImplementedError

    def ip_on(self, name: str, network: str) -> str:
        raise NotImplementedError

    def start(self, rootfs: Path) -> None: ...
    def detail(self) -> str: ...
    def cleanup(self) -> None: ...


class Runtimed(Tool):
    name = "runtimed"
    host_name = "host.containers.internal"

    def __init__(self) -> None:
        self.daemon = Daemon()
        # The host's loopback is closed to containers by default; the bench measures it
        # open, as podman's allow_host_loopback (below) does.
        config = self.daemon.root / "runtimed.toml"
        config.write_text("host_loopback = true\n")
        self.daemon.extra_args = ("--config", str(config))
        self.argv = [str(Path(sys.executable).parent / "runtimectl"), "-H"]
        self.argv.append(f"unix://{self.daemon.socket}")

    def start(self, rootfs: Path) -> None:
        self.daemon.start()
        self.cli("import", str(rootfs), IMAGE)
        self.uplink = json.loads(
            (self.daemon.socket.parent / "network" / "uplink.json").read_text()
        )["backend"]

    def cli(self, *args: str) -> str:
        return _timed([*self.argv, *args], self.daemon.env)[1]

    def cli_timed(self, *args: str) -> float:
        return _timed([*self.argv, *args], self.daemon.env)[0]

    def ip_on(self, name: str, network: str) -> str:
        doc = json.loads(self.cli("inspect", name))[0]
        return doc["NetworkSettings"]["Networks"][network]["IPAddress"]

    def detail(self) -> str:
        return f"runtimed, bridge network, uplink {self.uplink}, splice port forwarder"

    def cleanup(self) -> None:
        stop_runtimed(self.daemon)


class Podman(Tool):
    name = "podman"

    def __init__(self) -> None:
        self.env = PodmanEnv()
        self.mode = ""

    def start(self, rootfs: Path) -> None:
        self.env.start()
        self.env.podman("import", "--change", 'CMD ["/bin/sh"]', str(rootfs), IMAGE)
        probe = subprocess.run(
            ["podman", "run", "--rm", "--network", "pasta", IMAGE, "true"],
            env=self.env.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        if probe.returncode == 0:
            self.mode, self.net_args, self.host_name = "pasta", ["--network", "pasta"], ""
            self.host_name = "host.containers.internal"
        else:
            # Podman before 4.4 has no pasta: its rootless default is slirp4netns.
            self.mode = "slirp4netns (this podman has no pasta)"
            self.net_args = ["--network", "slirp4netns:allow_host_loopback=true"]
            self.host_name = "10.0.2.2"

    def cli(self, *args: str) -> str:
        return _timed(["podman", *args], self.env.env)[1]

    def cli_timed(self, *args: str) -> float:
        return _timed(["podman", *args], self.env.env)[0]

    def ip_on(self, name: str, network: str) -> str:
        doc = json.loads(self.cli("inspect", name))[0]
        return doc["NetworkSettings"]["Networks"][network]["IPAddress"]

    def detail(self) -> str:
        return f"{self.env.version()}, network {self.mode}"

    def cleanup(self) -> None:
        self.env.cleanup()


# --- measurements ----------------------------------------------------------------------


def container_to_host(tool: Tool, size: int) -> float:
    with host_sink() as sink:
        out = tool.cli(
            "run", "--rm", *tool.net_args, *PY, IMAGE, PYTHON, "-c", SEND,
            tool.host_name, str(sink.port), str(size),
        )  # fmt: skip
    return gbit(size, float(out.split()[-1]))


@contextlib.contextmanager
def published_server(tool: Tool, script: str, wait: Callable[[int], None]) -> Iterator[int]:
    """A container running `script` on SERVER_PORT, published on a free host port (yielded)
    once `wait` says it answers; removed afterwards."""
    port = free_port()
    name = f"bench-pub-{port}"
    tool.cli("run", "-d", "--name", name, *tool.net_args, "-p", f"{port}:{SERVER_PORT}", *PY,
             IMAGE, PYTHON, "-c", script)  # fmt: skip
    try:
        wait(port)
        yield port
    finally:
        tool.cli("rm", "-f", name)


def host_to_published(tool: Tool, size: int) -> float:
    with published_server(tool, SINK, wait_sink) as port:
        return gbit(size, send_to_port(port, size))


def container_to_container(tool: Tool, size: int) -> float:
    network = "benchnet"
    name = "bench-sink"
    tool.cli("network", "create", network)
    try:
        tool.cli("run", "-d", "--name", name, "--network", network, *PY, IMAGE, PYTHON, "-c",
                 SINK)  # fmt: skip
        try:
            ip = tool.ip_on(name, network)
            out = tool.cli(
                "run", "--rm", "--network", network, *PY, IMAGE, PYTHON, "-c", SEND,
                ip, str(SERVER_PORT), str(size),
            )  # fmt: skip
        finally:
            tool.cli("rm", "-f", name)
    finally:
        tool.cli("network", "rm", network)
    return gbit(size, float(out.split()[-1]))


def published_connections(tool: Tool, seconds: float) -> float:
    with published_server(tool, TICK, wait_ticks) as port:
        return connections_per_second(port, seconds)


def run_latency(tool: Tool) -> float:
    """`run --rm IMAGE true` with the tool's own default network (no flags)."""
    return tool.cli_timed("run", "--rm", IMAGE, "true")


@dataclass
class Metric:
    label: str
    unit: str
    higher_is_better: bool
    values: dict[str, list[float]] = field(default_factory=dict)

    def median(self, tool: str) -> float:
        return statistics.median(self.values[tool])


def measure(tools: list[Tool], args: argparse.Namespace) -> list[Metric]:
    size = args.size_mib << 20
    plan: list[tuple[Metric, Callable[[Tool], float], int]] = [
        (Metric("TCP container -> host server", "Gbit/s", True),
         lambda t: container_to_host(t, size), args.rounds),
        (Metric("TCP host client -> published port", "Gbit/s", True),
         lambda t: host_to_published(t, size), args.rounds),
        (Metric("TCP container -> container (one network)", "Gbit/s", True),
         lambda t: container_to_container(t, size), args.rounds),
        (Metric("connections/s to a published port", "conn/s", True),
         lambda t: published_connections(t, args.conn_seconds), args.rounds),
        (Metric("run --rm true, default network", "s", False),
         run_latency, args.latency_runs),
        (Metric("run --rm true, --network none (context)", "s", False),
         lambda t: t.cli_timed("run", "--rm", "--network", "none", IMAGE, "true"),
         args.latency_runs),
    ]  # fmt: skip
    for metric, fn, rounds in plan:
        print(f"measuring: {metric.label} ({rounds} rounds)", file=sys.stderr, flush=True)
        for i in range(rounds):
            # Alternate who goes first, so background load hits both alike.
            for tool in tools if i % 2 == 0 else list(reversed(tools)):
                metric.values.setdefault(tool.name, []).append(fn(tool))
    return [m for m, _, _ in plan]


def report(tools: list[Tool], metrics: list[Metric]) -> dict[str, object]:
    names = [t.name for t in tools]
    header = ["measurement", *names]
    if len(names) == 2:
        header.append("ratio runtimed/podman")
    rows = []
    summary: dict[str, object] = {}
    for m in metrics:
        row = [f"{m.label} [{m.unit}]"]
        for name in names:
            row.append(f"{m.median(name):.3f}" if m.unit == "s" else f"{m.median(name):.2f}")
        entry: dict[str, object] = {n: round(m.median(n), 4) for n in names}
        if len(names) == 2:
            ratio = m.median("runtimed") / m.median("podman")
            better = ratio >= 1 if m.higher_is_better else ratio <= 1
            row.append(f"{ratio:.2f} ({'better' if better else 'worse'})")
            entry["ratio"] = round(ratio, 3)
        rows.append(row)
        summary[m.label] = entry
    print()
    for tool in tools:
        print(f"{tool.name}: {tool.detail()}")
    print()
    print_table(header, rows)
    published = metrics[1]
    if "runtimed" in published.values:
        value = published.median("runtimed")
        verdict = "met" if value >= TARGET_PUBLISHED_GBIT else "NOT met"
        print(f"\npublished-port target >= {TARGET_PUBLISHED_GBIT} Gbit/s: {verdict} "
              f"({value:.2f} Gbit/s)")  # fmt: skip
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds per measurement (median)")
    p.add_argument("--size-mib", type=int, default=1024, help="bytes per throughput transfer")
    p.add_argument("--conn-seconds", type=float, default=3.0, help="seconds of connecting")
    p.add_argument("--latency-runs", type=int, default=10, help="run --rm samples per tool")
    p.add_argument("--tool", choices=["runtimed", "podman"], help="measure one tool only")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools: list[Tool] = []
    if args.tool in (None, "runtimed"):
        tools.append(Runtimed())
    if args.tool in (None, "podman"):
        tools.append(Podman())
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"rtd-netbench-{os.getpid()}"
    work.mkdir(parents=True)
    rootfs = work / "busybox.tar"
    try:
        make_busybox_rootfs(rootfs)
        for tool in tools:
            tool.start(rootfs)
        metrics = measure(tools, args)
        summary = report(tools, metrics)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for tool in tools:
            try:
                tool.cleanup()
            except Exception as exc:  # noqa: BLE001 - clean up the others anyway
                print(f"cleanup of {tool.name} failed: {exc}", file=sys.stderr)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(json.dumps({"bench": "network", "size_mib": args.size_mib, "results": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

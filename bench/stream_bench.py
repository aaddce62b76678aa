"""Streaming benchmark: CRI exec and port-forward through runtimed's streaming server,
against ExecSync and against rootless podman.

Run from the tree root as the unprivileged user: `python -m bench.stream_bench`
(`bench/run.sh streaming` does that as root for you). Needs crictl:
$RUNTIMED_CRICTL or on PATH (bench/run.sh finds it as deploy/test.sh does). Two parts, rounds
alternating between the ways:

1. `echo hi` round trip, non-tty, wall clock of one command each:
   crictl exec (SPDY), crictl exec --transport websocket, crictl exec --sync
   (ExecSync: the same CLI start-up, no streaming server), podman exec; and, without
   any CLI, in this process: ExecSync through the generated client, and Exec's URL
   through a small WebSocket client. Printed: p50 and p95, and the ratios
   streaming/ExecSync and runtimed/podman.
2. TCP throughput of --size-mib (1024) from a client on the host's loopback into a
   sink in the pod: through `crictl port-forward` (SPDY, and WebSocket tunnelling),
   and podman's published port (`-p`) into the same sink. The sink is the host's
   python3 through read-only binds of /usr (as in net_bench), answering each
   connection with the byte count it got.

Exits 0 whatever the numbers; non-zero only if something measured fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from websockets.sync.client import connect

from bench.common import (
    COMMAND_TIMEOUT,
    BenchError,
    PodmanEnv,
    make_busybox_rootfs,
    percentile,
    print_table,
    stop_runtimed,
)
from bench.net_bench import PY, PYTHON, SERVER_PORT, SINK, free_port, send_to_port, wait_sink
from runtimed.gen.runtime.v1 import api_pb2 as cri
from tests.support.crictl import crictl_argv
from tests.support.daemon import Daemon

IMAGE = "bench/streambox:1"


def _timed(argv: list[str], env: dict[str, str] | None = None, expect: bytes = b"hi\n") -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=COMMAND_TIMEOUT)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or expect not in proc.stdout:
        raise BenchError(f"{' '.join(argv[:8])} ... failed ({proc.returncode}): {proc.stderr!r}")
    return elapsed


def _binds() -> list[cri.Mount]:
    """PY's -v binds as CRI mounts: the host's python3 in the busybox image."""
    mounts = []
    for spec in PY[1::2]:
        source, target, _mode = spec.split(":")
        mounts.append(cri.Mount(container_path=target, host_path=source, readonly=True))
    return mounts


class Runtimed:
    """A daemon, one pod with a sleeping shell and the sink, driven by crictl and the CRI."""

    def __init__(self) -> None:
        self.daemon = Daemon()

    def start(self, rootfs: Path) -> None:
        self.daemon.start()
        self.daemon.ok("import", str(rootfs), IMAGE)
        self.crictl = crictl_argv(self.daemon.socket)
        self.rt = self.daemon.cri_runtime()
        config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name="bench", uid="bench-uid", namespace="bench"),
            hostname="bench",
            log_directory=str(self.daemon.root / "pod-logs"),
        )
        self.pod = self.rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
        self.shell = self._container(config, "shell", ["sleep", "1000000"], [])
        self._container(config, "sink", [PYTHON, "-c", SINK], _binds())

    def _container(
        self, config: cri.PodSandboxConfig, name: str, argv: list[str], mounts: list[cri.Mount]
    ) -> str:
        cfg = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name=name),
            image=cri.ImageSpec(image=IMAGE),
            command=argv,
            mounts=mounts,
        )
        cid = self.rt.CreateContainer(
            cri.CreateContainerRequest(pod_sandbox_id=self.pod, config=cfg, sandbox_config=config)
        ).container_id
        self.rt.StartContainer(cri.StartContainerRequest(container_id=cid))
        return cid

    # -- exec ------------------------------------------------------------------------------

    def crictl_exec(self, *flags: str) -> float:
        return _timed([*self.crictl, "exec", *flags, self.shell, "echo", "hi"], self.daemon.env)

    def exec_sync_rpc(self) -> float:
        start = time.perf_counter()
        reply = self.rt.ExecSync(
            cri.ExecSyncRequest(container_id=self.shell, cmd=["echo", "hi"], timeout=60)
        )
        elapsed = time.perf_counter() - start
        if reply.stdout != b"hi\n" or reply.exit_code != 0:
            raise BenchError(f"ExecSync answered {reply}")
        return elapsed

    def exec_stream_rpc(self) -> float:
        """Exec's URL, then a v5 WebSocket session: what kubelet's path costs without a CLI."""
        start = time.perf_counter()
        url = self.rt.Exec(
            cri.ExecRequest(container_id=self.shell, cmd=["echo", "hi"], stdout=True, stderr=True)
        ).url
        stdout, status = b"", b""
        with connect(url.replace("http://", "ws://"), subprotocols=["v5.channel.k8s.io"]) as ws:
            for message in ws:
                assert isinstance(message, bytes)
                if message[:1] == b"\x01":
                    stdout += message[1:]
                elif message[:1] == b"\x03":
                    status = message[1:]
        elapsed = time.perf_counter() - start
        if stdout != b"hi\n" or json.loads(status).get("status") != "Success":
            raise BenchError(f"streamed exec gave {stdout!r} and {status!r}")
        return elapsed

    # -- port forwarding -------------------------------------------------------------------

    def forward(self, transport: str, size: int) -> float:
        argv = [
            *self.crictl,
            "port-forward",
            "--transport",
            transport,
            self.pod,
            f"0:{SERVER_PORT}",
        ]
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()
            match = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
            if not match:
                raise BenchError(f"crictl port-forward said {line!r}")
            port = int(match.group(1))
            wait_sink(port)
            return send_to_port(port, size)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    def cleanup(self) -> None:
        if hasattr(self, "rt"):
            self.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=self.pod))
            self.rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=self.pod))
        stop_runtimed(self.daemon)


class Podman:
    def __init__(self) -> None:
        self.env = PodmanEnv()

    def start(self, rootfs: Path) -> None:
        self.env.start()
        self.env.podman("import", "--change", 'CMD ["/bin/sh"]', str(rootfs), IMAGE)
        self.env.podman("run", "-d", "--name", "shell", IMAGE, "sleep", "1000000")
        self.port = free_port()
        self.env.podman(
            "run", "-d", "--name", "sink", "-p", f"{self.port}:{SERVER_PORT}", *PY, IMAGE,
            PYTHON, "-c", SINK,
        )  # fmt: skip
        wait_sink(self.port)

    def exec(self) -> float:
        return _timed(["podman", "exec", "shell", "echo", "hi"], self.env.env)

    def published(self, size: int) -> float:
        return send_to_port(self.port, size)

    def cleanup(self) -> None:
        self.env.cleanup()


def sample(ways: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Every way once per round, the order rotating, so load hits all alike."""
    values: dict[str, list[float]] = {name: [] for name in ways}
    names = list(ways)
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            values[name].append(ways[name]())
    return values


def report_exec(values: dict[str, list[float]]) -> dict[str, object]:
    rows, summary = [], {}
    for name, samples in values.items():
        p50, p95 = statistics.median(samples), percentile(samples, 0.95)
        rows.append([name, f"{p50 * 1000:.1f}", f"{p95 * 1000:.1f}"])
        summary[name] = {"p50_ms": round(p50 * 1000, 2), "p95_ms": round(p95 * 1000, 2)}
    print("\nexec `echo hi`, non-tty (ms per command)")
    print_table(["way", "p50", "p95"], rows)

    def ratio(a: str, b: str) -> str:
        if a not in values or b not in values:
            return ""
        r = statistics.median(values[a]) / statistics.median(values[b])
        summary[f"{a} / {b}"] = round(r, 3)
        return f"  {a} / {b}: {r:.2f}"

    print()
    for a, b in (
        ("crictl exec (spdy)", "crictl exec --sync"),
        ("crictl exec (websocket)", "crictl exec --sync"),
        ("Exec URL + WebSocket, in process", "ExecSync, in process"),
        ("crictl exec (spdy)", "podman exec"),
        ("crictl exec --sync", "podman exec"),
    ):
        if line := ratio(a, b):
            print(line)
    return summary


def report_forward(values: dict[str, list[float]], size: int) -> dict[str, object]:
    rows, summary = [], {}
    rates = {name: size / statistics.median(s) / 1e6 for name, s in values.items()}
    for name, samples in values.items():
        rows.append(
            [name, f"{rates[name]:.0f}", f"{size * 8 / statistics.median(samples) / 1e9:.2f}"]
        )
        summary[name] = {"MB_s": round(rates[name], 1), "seconds": [round(x, 3) for x in samples]}
    print(f"\nTCP into the pod, {size >> 20} MiB per transfer (median)")
    print_table(["path", "MB/s", "Gbit/s"], rows)
    podman = "podman published port"
    if podman in rates:
        print()
        for name, rate in rates.items():
            if name != podman:
                summary[f"{name} / {podman}"] = round(rate / rates[podman], 3)
                print(f"  {name} / {podman}: {rate / rates[podman]:.2f}")
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exec-runs", type=int, default=30, help="samples per exec way")
    p.add_argument("--rounds", type=int, default=3, help="transfers per forwarding path")
    p.add_argument("--size-mib", type=int, default=1024, help="bytes per transfer")
    p.add_argument("--tool", choices=["runtimed", "podman"], help="measure one tool only")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = args.size_mib << 20
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"rtd-streambench-{os.getpid()}"
    work.mkdir(parents=True)
    runtimed = Runtimed() if args.tool in (None, "runtimed") else None
    podman = Podman() if args.tool in (None, "podman") else None
    summary: dict[str, object] = {}
    try:
        make_busybox_rootfs(work / "busybox.tar")
        execs: dict[str, Callable[[], float]] = {}
        forwards: dict[str, Callable[[], float]] = {}
        if runtimed is not None:
            runtimed.start(work / "busybox.tar")
            execs |= {
                "crictl exec (spdy)": runtimed.crictl_exec,
                "crictl exec (websocket)": lambda: runtimed.crictl_exec("--transport", "websocket"),
                "crictl exec --sync": lambda: runtimed.crictl_exec("--sync"),
                "ExecSync, in process": runtimed.exec_sync_rpc,
                "Exec URL + WebSocket, in process": runtimed.exec_stream_rpc,
            }
            forwards |= {
                "crictl port-forward (spdy)": lambda: runtimed.forward("spdy", size),
                "crictl port-forward (websocket)": lambda: runtimed.forward("websocket", size),
            }
        if podman is not None:
            podman.start(work / "busybox.tar")
            summary["podman"] = podman.env.detail()
            execs["podman exec"] = podman.exec
            forwards["podman published port"] = lambda: podman.published(size)
        print(f"measuring: exec ({args.exec_runs} runs per way)", file=sys.stderr, flush=True)
        summary["exec"] = report_exec(sample(execs, args.exec_runs))
        print(f"measuring: port forwarding ({args.rounds} rounds)", file=sys.stderr, flush=True)
        summary["forward"] = report_forward(sample(forwards, args.rounds), size)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for tool in (runtimed, podman):
            if tool is not None:
                try:
                    tool.cleanup()
                except Exception as exc:  # noqa: BLE001 - clean up the other anyway
                    print(f"cleanup failed: {exc}", file=sys.stderr)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    if "podman" in summary:
        print(f"\npodman: {summary['podman']}")
    print(json.dumps({"bench": "streaming", "size_mib": args.size_mib, "results": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

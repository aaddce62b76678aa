"""Docker API benchmark: runtimed's Docker Engine API against `podman system service`.

Run from the tree root as the unprivileged user: `python -m bench.dockerapi_bench`
(`bench/run.sh dockerapi` does that as root for you). Both serve Docker's API on a unix
socket of their own, rootless, with the same busybox image imported; the same clients
drive both:

1. `docker run --rm IMAGE true` with the docker CLI (DOCKER_HOST=unix://...), --rounds
   rounds alternating between the two: p50, p95 and the ratio runtimed/podman.
2. docker-py: --py-runs `containers.run(IMAGE, "true", remove=True)` calls, total time.
3. `docker ps -a` with --ps-containers created containers: request overhead, p50/p95.

Exits 0 whatever the numbers; non-zero only if something measured fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

from bench.common import (
    COMMAND_TIMEOUT,
    BenchError,
    PodmanEnv,
    make_busybox_rootfs,
    percentile,
    print_table,
    stop_runtimed,
    wait_gone,
)
from tests.support.daemon import Daemon
from tests.support.dockercli import docker_socket

IMAGE = "bench/dockerbox:1"


def _wait_socket(path: Path, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"podman system service exited {proc.returncode}")
        if time.monotonic() > deadline:
            raise BenchError(f"{path} did not appear")
        time.sleep(0.05)


class Side:
    """One server of Docker's API: its socket, an environment for the CLI, a docker-py client."""

    def __init__(self, name: str, socket_path: Path, image: str) -> None:
        self.name = name
        self.socket = socket_path
        self.image = image
        self.config = Path(tempfile.mkdtemp(prefix="rtd-bench-dcfg-"))
        config = self.config
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{socket_path}", DOCKER_CONFIG=str(config))
        self.client = docker.DockerClient(base_url=f"unix://{socket_path}", timeout=COMMAND_TIMEOUT)

    def cli(self, *args: str) -> float:
        start = time.perf_counter()
        proc = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, timeout=COMMAND_TIMEOUT
        )
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise BenchError(f"{self.name}: docker {' '.join(args)}: {proc.stderr.decode()}")
        return elapsed

    def remove_all(self) -> None:
        for container in self.client.containers.list(all=True):
            container.remove(force=True)


def _alternate(sides: list[Side], rounds: int, step: Callable[[Side], float]) -> dict[str, list]:
    times: dict[str, list[float]] = {s.name: [] for s in sides}
    for i in range(rounds):
        for side in sides if i % 2 == 0 else reversed(sides):
            times[side.name].append(step(side))
    return times


def _row(what: str, times: dict[str, list[float]]) -> list[str]:
    ours, theirs = times["runtimed"], times["podman"]
    p50 = statistics.median(ours), statistics.median(theirs)
    return [
        what,
        f"{p50[0] * 1000:.0f} / {percentile(ours, 0.95) * 1000:.0f}",
        f"{p50[1] * 1000:.0f} / {percentile(theirs, 0.95) * 1000:.0f}",
        f"{p50[0] / p50[1]:.2f}x",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--py-runs", type=int, default=100)
    p.add_argument("--ps-containers", type=int, default=50)
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="rtd-bench-dapi-"))
    rootfs = work / "busybox.tar"
    make_busybox_rootfs(rootfs)
    daemon = Daemon()
    podman = PodmanEnv()
    service: subprocess.Popen[bytes] | None = None
    sides: list[Side] = []
    try:
        daemon.start()
        daemon.ok("import", "-c", 'CMD ["/bin/sh"]', str(rootfs), IMAGE)
        podman.start()
        podman.podman("import", "--change", 'CMD ["/bin/sh"]', str(rootfs), IMAGE)
        podman_socket = podman.runtime_dir / "docker-api.sock"
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{podman_socket}"],
            env=podman.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_socket(podman_socket, service)
        sides = [
            Side("runtimed", docker_socket(daemon), IMAGE),
            Side("podman", podman_socket, f"localhost/{IMAGE}"),
        ]
        for side in sides:
            side.cli("run", "--rm", side.image, "true")  # warm up

        rows = []
        run_times = _alternate(sides, args.rounds, lambda s: s.cli("run", "--rm", s.image, "true"))
        rows.append(_row("docker run --rm true", run_times))

        def py_runs(side: Side) -> float:
            start = time.perf_counter()
            for _ in range(args.py_runs):
                side.client.containers.run(side.image, "true", remove=True)
            return time.perf_counter() - start

        py_times = {s.name: [py_runs(s)] for s in sides}
        rows.append(_row(f"docker-py {args.py_runs}x containers.run(remove=True)", py_times))

        for side in sides:
            for i in range(args.ps_containers):
                side.client.containers.create(side.image, "true", name=f"ps{i}")
        ps_times = _alternate(sides, args.rounds, lambda s: s.cli("ps", "-a"))
        rows.append(_row(f"docker ps -a, {args.ps_containers} containers", ps_times))

        print(f"runtimed Docker API vs {podman.detail()} (podman system service)")
        print("times in ms: p50 / p95 (docker-py: total of all calls); ratio of p50s")
        print_table(["", "runtimed", "podman", "runtimed/podman"], rows)
        return 0
    except BenchError as exc:
        print(f"dockerapi_bench: {exc}", file=sys.stderr)
        return 1
    finally:
        for side in sides:
            with contextlib.suppress(Exception):
                side.remove_all()
            side.client.close()
            shutil.rmtree(side.config, ignore_errors=True)
        if service is not None and service.poll() is None:
            os.killpg(service.pid, signal.SIGTERM)
            service.wait(30)
            wait_gone(service.pid)
        podman.cleanup()
        stop_runtimed(daemon)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

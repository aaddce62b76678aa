"""Container benchmark: runtimed against rootless podman on the same busybox image.

Run from the tree root as the unprivileged user: `python -m bench.container_bench`
(bench/run.sh does that as root for you). Four measurements, in one run:

1. `run --rm IMAGE true` latency, p50 and p95, in pairs: each tool's default network
   (runtimed's bridge, podman's slirp4netns) and `--network none`;
   client start-up alone (`runtimectl version`, `podman version`) for context.
2. A pod + container create/start/stop/remove cycle: runtimed through the CRI gRPC API
   (in process, as kubelet drives it), podman through its nearest CLI equivalent.
3. Memory with N running `sleep` containers: runtimed's shims, launcher and daemon;
   podman's conmons and pause process (podman has no daemon). RSS and PSS.
4. Log throughput: a container writes short lines to stdout until the log file holds
   them all (runtimed json-file, podman k8s-file).

Rounds alternate between the tools so background load hits both alike. Prints each
pair with its ratio, and a one-line JSON summary last. Exits 0 whatever the numbers;
non-zero only if a measured command (or the setup) fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.common import (
    COMMAND_TIMEOUT,
    ROOTFS_SCRIPT,
    BenchError,
    LoadWatch,
    Memory,
    PodmanEnv,
    daemon_pids,
    make_busybox_rootfs,
    mb,
    median_memory,
    memory,
    percentile,
    print_table,
    process_cpu,
    running,
    stop_runtimed,
    timed,
    total_memory,
)
from runtimed.gen.runtime.v1 import api_pb2 as cri
from tests.support.daemon import Daemon
from tests.support.pagecache import cached_bytes

IMAGE = "bench/busybox:1"
LINE = b"0123456789012345678901234567890123456789"  # 41 bytes a line with its newline
SLEEP = ["sleep", "100000"]
SECTIONS = ("latency", "cri", "memory", "logs")
# Targets from the issue.
SHIM_RSS_TARGET_KIB = 12 * 1024
SHIM_PSS_TARGET_KIB = 4 * 1024


# --- the two tools -----------------------------------------------------------------------


class Runtimed:
    """A fresh runtimed on a private socket and data dir, driven by runtimectl and the CRI."""

    name = "runtimed"

    def __init__(self, rootfs: Path) -> None:
        self.rootfs = rootfs
        self.daemon = Daemon()
        self.ctl_argv = [str(Path(sys.executable).parent / "runtimectl"), "-H"]
        self.ctl_argv.append(f"unix://{self.daemon.socket}")
        self.pods = 0

    def start(self) -> None:
        self.daemon.start()
        self.ctl("import", str(self.rootfs), IMAGE)

    def ctl(self, *args: str) -> tuple[float, str]:
        return timed([*self.ctl_argv, *args], self.daemon.env, f"runtimectl {' '.join(args)}")

    @property
    def root(self) -> Path:
        return self.daemon.root

    @property
    def run_dir(self) -> Path:
        return self.daemon.socket.parent

    def run_true(self, network: bool) -> float:
        extra = [] if network else ["--network", "none"]
        return self.ctl("run", "--rm", *extra, IMAGE, "true")[0]

    def client_start(self) -> float:
        return self.ctl("version")[0]

    def pod_cycle(self) -> float:
        """RunPodSandbox, CreateContainer, StartContainer, StopContainer(0), RemoveContainer,
        StopPodSandbox, RemovePodSandbox: what kubelet asks for one pod with one container."""
        rt = self.daemon.cri_runtime()
        self.pods += 1
        log_dir = self.daemon.root / "pod-logs" / str(self.pods)
        log_dir.mkdir(parents=True)  # kubelet makes the pod's log directory, not the runtime
        config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(
                name=f"bench-{self.pods}", uid=f"uid-{self.pods}", namespace="bench"
            ),
            hostname="bench",
            log_directory=str(log_dir),
        )
        container = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name="sleeper"),
            image=cri.ImageSpec(image=IMAGE),
            command=SLEEP,
            log_path="sleeper.log",
        )
        start = time.perf_counter()
        pod = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config), timeout=60).pod_sandbox_id
        cid = rt.CreateContainer(
            cri.CreateContainerRequest(pod_sandbox_id=pod, config=container, sandbox_config=config),
            timeout=60,
        ).container_id
        rt.StartContainer(cri.StartContainerRequest(container_id=cid), timeout=60)
        rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=0), timeout=60)
        rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid), timeout=60)
        rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        return time.perf_counter() - start

    def start_sleeper(self) -> str:
        return self.ctl("run", "-d", IMAGE, *SLEEP)[1].strip()

    def logger_pid(self, cid: str) -> int:
        """The container's shim (the shim writes its pid file in the container's run dir)."""
        return int((self.run_dir / "containers" / cid / "shim.pid").read_text())

    def overhead(self, ids: list[str]) -> dict[str, Memory]:
        """Memory of the runtime's processes other than the per-container ones."""
        parent, *children = daemon_pids(self.daemon)
        found = {"daemon (parent)": memory(parent), "daemon (in userns)": total_memory(children)}
        holder = self.daemon.holder_pid()
        if holder is not None:
            found["shim launcher"] = memory(holder)
        others = self.stray_pids(ids)
        if others:
            found[f"{len(others)} other processes in its namespaces"] = total_memory(others)
        return found

    def stray_pids(self, ids: list[str]) -> list[int]:
        """Processes in the daemon's mount namespace that are neither daemon, launcher,
        shims nor containers: per-container costs the shim figures would not show."""
        _, *children = daemon_pids(self.daemon)
        if not children:
            return []
        namespace = os.readlink(f"/proc/{children[0]}/ns/mnt")
        known = {*daemon_pids(self.daemon), self.daemon.holder_pid() or 0, os.getpid()}
        known |= {self.logger_pid(cid) for cid in ids}
        return [
            pid
            for pid in own_pids()
            if pid not in known and namespace_of(pid) == namespace and running(pid)
        ]

    def remove(self, ids: list[str]) -> None:
        if ids:
            self.ctl("rm", "-f", *ids)

    def start_logger(self, script: str) -> tuple[str, Path]:
        cid = self.ctl("run", "-d", "--log-driver", "json-file", IMAGE, "sh", "-c", script)[1]
        cid = cid.strip()
        path = self.ctl("inspect", "-f", "{{.LogPath}}", cid)[1].strip()
        if not path:
            raise BenchError(f"runtimectl inspect shows no log path for {cid}")
        return cid, Path(path)

    def wait(self, cid: str) -> None:
        self.ctl("wait", cid)

    def detail(self) -> str:
        return "runtimed " + self.ctl("version")[1].split("Version:", 1)[1].split()[0]

    def cleanup(self) -> None:
        stop_runtimed(self.daemon)


class Podman:
    """Rootless podman (crun), all its state private to the bench (common.PodmanEnv)."""

    name = "podman"

    def __init__(self, rootfs: Path, storage: str) -> None:
        self.rootfs = rootfs
        self.env = PodmanEnv(storage)
        self.pods = 0

    @property
    def root(self) -> Path:
        return self.env.root

    def start(self) -> None:
        self.env.start()
        self.podman("import", str(self.rootfs), IMAGE)

    def podman(self, *args: str) -> tuple[float, str]:
        return timed(["podman", *args], self.env.env, f"podman {' '.join(args)}")

    def run_true(self, network: bool) -> float:
        extra = [] if network else ["--network", "none"]
        return self.podman("run", "--rm", *extra, IMAGE, "true")[0]

    def client_start(self) -> float:
        return self.podman("version")[0]

    def pod_cycle(self) -> float:
        """pod create, create --pod, start, stop -t 0, pod rm -f: the nearest equivalent of
        the CRI cycle (five CLI calls; the pod has an infra container, as a sandbox does)."""
        self.pods += 1
        name = f"bench-{self.pods}"
        start = time.perf_counter()
        self.podman("pod", "create", "--network", "none", "--name", name)
        cid = self.podman("create", "--pod", name, IMAGE, *SLEEP)[1].strip()
        self.podman("start", cid)
        self.podman("stop", "-t", "0", cid)
        self.podman("pod", "rm", "-f", name)
        return time.perf_counter() - start

    def start_sleeper(self) -> str:
        return self.podman("run", "-d", "--network", "none", IMAGE, *SLEEP)[1].strip()

    def logger_pid(self, cid: str) -> int:
        """The container's conmon."""
        return int(self.podman("inspect", "--format", "{{.State.ConmonPid}}", cid)[1])

    def overhead(self, ids: list[str]) -> dict[str, Memory]:
        del ids
        found = {"daemon": Memory(0, 0)}  # there is none
        pause = self.env.pause_pid()
        if pause is not None:
            found["pause process (catatonit)"] = memory(pause)
        return found

    def remove(self, ids: list[str]) -> None:
        if ids:
            self.podman("rm", "-f", "-t", "0", *ids)

    def start_logger(self, script: str) -> tuple[str, Path]:
        cid = self.podman(
            "run", "-d", "--network", "none", "--log-driver", "k8s-file", IMAGE, "sh", "-c", script
        )[1].strip()
        path = self.podman("inspect", "--format", "{{.HostConfig.LogConfig.Path}}", cid)[1]
        if not path.strip():
            raise BenchError(f"podman inspect shows no log path for {cid}")
        return cid, Path(path.strip())

    def wait(self, cid: str) -> None:
        self.podman("wait", cid)

    def detail(self) -> str:
        return self.env.detail()

    def cleanup(self) -> None:
        self.env.cleanup()


Tool = Runtimed | Podman


def own_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and entry.stat().st_uid == os.getuid():
                pids.append(int(entry.name))
    return pids


def namespace_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


# --- 1. run latency ----------------------------------------------------------------------


@dataclass
class Series:
    """Repeated wall-clock times of one command."""

    label: str
    seconds: list[float] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p95(self) -> float:
        return percentile(self.seconds, 0.95)


def alternate(
    steps: list[tuple[Series, Callable[[], float]]], rounds: int, load: LoadWatch, section: str
) -> None:
    """Each round runs every step once; the order rotates so no tool always goes first."""
    for n in range(rounds):
        load.sample(section)
        shift = n % len(steps)
        for series, step in steps[shift:] + steps[:shift]:
            series.seconds.append(step())
    load.sample(section)


RT_DEFAULT = "runtimed run --rm (bridge)"
RT_NONE = "runtimed run --rm --network none"
PM_DEFAULT = "podman run --rm (slirp4netns)"
PM_NONE = "podman run --rm --network none"


def latency(rt: Runtimed | None, pm: Podman | None, runs: int, load: LoadWatch) -> list[Series]:
    steps: list[tuple[Series, Callable[[], float]]] = []
    if rt is not None:
        steps.append((Series(RT_DEFAULT), lambda: rt.run_true(True)))
        steps.append((Series(RT_NONE), lambda: rt.run_true(False)))
    if pm is not None:
        steps.append((Series(PM_DEFAULT), lambda: pm.run_true(True)))
        steps.append((Series(PM_NONE), lambda: pm.run_true(False)))
    if rt is not None:
        steps.append((Series("runtimectl version (client start + 1 RPC)"), rt.client_start))
    if pm is not None:
        steps.append((Series("podman version (client start)"), pm.client_start))
    for _, step in steps:  # warm caches and podman's pause process; not counted
        step()
    alternate(steps, runs, load, "latency")
    return [series for series, _ in steps]


def print_latency(series: list[Series], load: LoadWatch) -> None:
    print("\n1. run --rm IMAGE true: wall clock per command")
    rows = [
        [s.label, f"{s.p50 * 1000:.0f} ms", f"{s.p95 * 1000:.0f} ms", str(len(s.seconds))]
        for s in series
    ]
    print_table(["command", "p50", "p95", "runs"], rows, indent="  ")
    by_label = {s.label: s for s in series}
    for ours, peer, what in (
        (RT_DEFAULT, PM_DEFAULT, "default network (bridge vs slirp4netns)"),
        (RT_NONE, PM_NONE, "--network none"),
    ):
        if ours in by_label and peer in by_label:
            a, b = by_label[ours], by_label[peer]
            print(
                f"  ratio runtimed/podman, {what}: p50 {a.p50 / b.p50:.2f}, "
                f"p95 {a.p95 / b.p95:.2f} (lower is better, target <= 1)"
            )
    for default, none, tool in ((RT_DEFAULT, RT_NONE, "runtimed"), (PM_DEFAULT, PM_NONE, "podman")):
        if default in by_label and none in by_label:
            cost = (by_label[default].p50 - by_label[none].p50) * 1000
            print(f"  {tool}: the default network costs {cost:+.0f} ms at p50 over --network none")
    print("  " + load.note("latency"))


# --- 2. CRI pod cycle --------------------------------------------------------------------


def pod_cycles(
    rt: Runtimed | None, pm: Podman | None, cycles: int, load: LoadWatch
) -> list[Series]:
    steps: list[tuple[Series, Callable[[], float]]] = []
    if rt is not None:
        steps.append((Series("runtimed CRI (gRPC, in process)"), rt.pod_cycle))
    if pm is not None:
        steps.append((Series("podman pod create/create/start/stop/pod rm"), pm.pod_cycle))
    for _, step in steps:  # podman builds its pause image on the first pod
        step()
    alternate(steps, cycles, load, "cri")
    return [series for series, _ in steps]


def print_cycles(series: list[Series], load: LoadWatch) -> None:
    print("\n2. pod + container create/start/stop/remove cycle: wall clock per cycle")
    rows = [
        [s.label, f"{s.p50 * 1000:.0f} ms", f"{s.p95 * 1000:.0f} ms", str(len(s.seconds))]
        for s in series
    ]
    print_table(["cycle", "median", "p95", "cycles"], rows, indent="  ")
    if len(series) == 2:
        print(f"  ratio runtimed/podman (median): {series[0].p50 / series[1].p50:.2f}")
    print(
        "  podman has no CRI: its peer is the nearest CLI equivalent (5 commands, each paying"
        " client start-up; pod with --network none and an infra container)"
    )
    print("  " + load.note("cri"))


# --- 3. memory ---------------------------------------------------------------------------


@dataclass
class MemoryResult:
    name: str
    containers: int
    per_container: list[Memory]  # one shim or conmon each
    overhead: dict[str, Memory]

    @property
    def median(self) -> Memory:
        return median_memory(self.per_container)

    @property
    def total(self) -> Memory:
        return sum(self.per_container, Memory(0, 0))

    @property
    def everything(self) -> Memory:
        return sum(self.overhead.values(), self.total)


def memory_at(tool: Tool, count: int, load: LoadWatch) -> MemoryResult:
    ids: list[str] = []
    try:
        for n in range(count):
            if n % 10 == 0:
                load.sample("memory")
            ids.append(tool.start_sleeper())
        time.sleep(2.0)  # let start-up allocations settle
        load.sample("memory")
        pids = [tool.logger_pid(cid) for cid in ids]
        dead = [pid for pid in pids if not running(pid)]
        if dead:
            raise BenchError(f"{tool.name}: {len(dead)} of {count} containers lost their logger")
        return MemoryResult(tool.name, count, [memory(p) for p in pids], tool.overhead(ids))
    finally:
        tool.remove(ids)


def print_memory(results: list[MemoryResult], load: LoadWatch) -> None:
    count = results[0].containers
    print(f"\n3. memory with {count} running containers (sleep): RSS / PSS")
    rows = []
    for r in results:
        unit = "shim" if r.name == "runtimed" else "conmon"
        m, t = r.median, r.total
        rows.append([f"{r.name}: one {unit} (median)", mb(m.rss), mb(m.pss)])
        rows.append([f"{r.name}: all {count} {unit}s", mb(t.rss), mb(t.pss)])
        rows.append([f"{r.name}: per container (all {unit}s / {count})", mb(t.rss / count),
                     mb(t.pss / count)])  # fmt: skip
        rows.extend([f"{r.name}: {what}", mb(v.rss), mb(v.pss)] for what, v in r.overhead.items())
        e = r.everything
        rows.append([f"{r.name}: everything / {count}", mb(e.rss / count), mb(e.pss / count)])
    print_table(["process", "RSS", "PSS"], rows, indent="  ")
    by_name = {r.name: r for r in results}
    if "runtimed" in by_name:
        m = by_name["runtimed"].median
        rss_ok, pss_ok = m.rss < SHIM_RSS_TARGET_KIB, m.pss < SHIM_PSS_TARGET_KIB
        print(
            f"  shim targets: RSS < 12 MB {'met' if rss_ok else 'MISSED'}, "
            f"PSS < 4 MB {'met' if pss_ok else 'MISSED'}"
        )
    if len(by_name) == 2:
        ours, peer = by_name["runtimed"].median, by_name["podman"].median
        print(
            f"  ratio shim/conmon (median): RSS {ours.rss / peer.rss:.1f}, "
            f"PSS {ours.pss / peer.pss:.1f}"
        )
    print("  podman has no daemon; RSS counts shared pages in full, PSS splits them")
    print("  " + load.note("memory"))


# --- 4. log throughput -------------------------------------------------------------------


@dataclass
class LogResult:
    name: str
    driver: str
    payload_bytes: int
    seconds: float  # from the run command to the last byte in the log file
    streaming: float  # from the first byte in the log file to the last
    file_bytes: int
    logger_cpu: float  # CPU seconds of the shim or conmon
    cached_bytes: int  # of the log file, in the page cache once written (node memory)

    @property
    def mib_s(self) -> float:
        return self.payload_bytes / 2**20 / self.seconds

    @property
    def streaming_mib_s(self) -> float:
        # Polls are 10 ms apart: a log written within one poll took at most that long.
        return self.payload_bytes / 2**20 / max(self.streaming, 0.01)


class Follower:
    """Watches a log file grow; remembers when the first byte and the latest byte landed."""

    def __init__(self, path: Path, logger: int, tick: Callable[[], None]) -> None:
        self.path = path
        self.tick = tick  # called about every quarter second (load samples)
        self.logger = logger  # the shim or conmon writing the file
        self.logger_cpu = 0.0  # its CPU seconds when last seen (it may exit with the container)
        self.size = 0
        self.first = 0.0
        self.last = 0.0

    def until_quiet(self, quiet: float, deadline: float) -> None:
        """Poll until the file has data and has not grown for `quiet` seconds."""
        polls = 0
        while True:
            polls += 1
            if polls % 25 == 0:
                self.tick()
            now = time.perf_counter()
            with contextlib.suppress(FileNotFoundError):
                size = self.path.stat().st_size
                if size != self.size:
                    self.first = self.first or now
                    self.size, self.last = size, now
                    self.logger_cpu = process_cpu(self.logger) or self.logger_cpu
            if self.size and now - self.last >= quiet:
                return
            if now > deadline:
                raise BenchError(f"{self.path} stopped at {self.size} bytes")
            time.sleep(0.01)


# What ends one complete container line in each format: json-file escapes the newline
# inside "log"; k8s-file tags a full line F (conmon writes P pieces where a read of its
# pipe ended mid-line, then the rest as F).
LINE_END = {"json-file": b'\\n"', "k8s-file": b" stdout F "}


def count_lines(path: Path, marker: bytes) -> int:
    """Complete container lines in a log file (the payload has neither marker in it)."""
    found, tail = 0, b""
    with path.open("rb") as f:
        while chunk := f.read(16 << 20):
            data = tail + chunk
            cut = data.rfind(b"\n") + 1
            found += data.count(marker, 0, cut)
            tail = data[cut:]
    return found + tail.count(marker)


def log_throughput(tool: Tool, mib: int, load: LoadWatch) -> LogResult:
    lines = mib * 2**20 // (len(LINE) + 1)
    script = f"yes {LINE.decode()} | head -n {lines}"
    load.sample("logs")
    start = time.perf_counter()
    cid, path = tool.start_logger(script)
    try:
        follower = Follower(path, tool.logger_pid(cid), lambda: load.sample("logs"))
        deadline = start + COMMAND_TIMEOUT
        while True:
            follower.until_quiet(1.0, deadline)
            load.sample("logs")
            tool.wait(cid)  # exited: nothing more will be written once the logger drained
            size = follower.size
            follower.until_quiet(1.0, deadline)
            if follower.size == size:
                break
        logger_cpu = process_cpu(follower.logger) or follower.logger_cpu
        driver = "json-file" if tool.name == "runtimed" else "k8s-file"
        cached = cached_bytes(path)  # before count_lines reads it all back in
        found = count_lines(path, LINE_END[driver])
        if found != lines:
            raise BenchError(f"{tool.name}: the log holds {found} of {lines} lines")
        return LogResult(
            tool.name,
            driver,
            lines * (len(LINE) + 1),
            follower.last - start,
            follower.last - follower.first,
            follower.size,
            logger_cpu,
            cached,
        )
    finally:
        tool.remove([cid])


def log_rounds(tools: list[Tool], mib: int, rounds: int, load: LoadWatch) -> list[list[LogResult]]:
    """Each tool's rounds, the order rotating round by round."""
    results: dict[str, list[LogResult]] = {tool.name: [] for tool in tools}
    for n in range(rounds):
        shift = n % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            results[tool.name].append(log_throughput(tool, mib, load))
    return list(results.values())


def median_rate(results: list[LogResult], streaming: bool = False) -> float:
    return statistics.median(r.streaming_mib_s if streaming else r.mib_s for r in results)


def print_logs(per_tool: list[list[LogResult]], load: LoadWatch) -> None:
    payload = per_tool[0][0].payload_bytes
    print(f"\n4. log throughput: {payload / 2**20:.0f} MiB of {len(LINE) + 1}-byte lines to stdout")
    rows = [
        [
            f"{r.name} ({r.driver})",
            str(n + 1),
            f"{r.seconds:.2f} s",
            f"{r.mib_s:.1f} MiB/s",
            f"{r.streaming_mib_s:.1f} MiB/s",
            f"{r.file_bytes / 2**20:.0f} MiB",
            f"{r.logger_cpu:.1f} s",
            f"{r.cached_bytes / 2**20:.0f} MiB",
        ]
        for results in per_tool
        for n, r in enumerate(results)
    ]
    header = [
        "tool",
        "round",
        "run to last byte",
        "MiB/s",
        "first to last byte",
        "file",
        "logger CPU",
        "in page cache",
    ]
    print_table(header, rows, indent="  ")
    for results in per_tool:
        print(
            f"  {results[0].name} median: {median_rate(results):.1f} MiB/s run to last byte, "
            f"{median_rate(results, streaming=True):.1f} MiB/s first to last byte"
        )
    if len(per_tool) == 2:
        ours, peer = per_tool
        print(
            f"  ratio runtimed/podman throughput (median): "
            f"{median_rate(ours) / median_rate(peer):.2f} run to last byte "
            "(higher is better, target >= 1), "
            f"{median_rate(ours, True) / median_rate(peer, True):.2f} first to last byte"
        )
    print("  logger CPU: the shim (runtimed) or conmon (podman) that wrote the file")
    print("  in page cache: of the log file once written, memory the node holds for it (mincore)")
    print("  " + load.note("logs"))


# --- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="run --rm per tool (default 50)")
    parser.add_argument("--cycles", type=int, default=20, help="pod cycles per tool (default 20)")
    parser.add_argument(
        "--containers", type=int, default=100, help="running containers for memory (default 100)"
    )
    parser.add_argument(
        "--log-mib", type=int, default=256, help="MiB a container logs (default 256; 1024 = 1 GiB)"
    )
    parser.add_argument("--log-rounds", type=int, default=2, help="log runs per tool (default 2)")
    parser.add_argument(
        "--section", choices=SECTIONS, action="append", help="only these (repeatable)"
    )
    parser.add_argument(
        "--tool", choices=["runtimed", "podman"], action="append", help="only these (repeatable)"
    )
    parser.add_argument(
        "--podman-storage",
        choices=["auto", "native", "fuse"],
        default="auto",
        help="podman's overlay: native, through fuse-overlayfs, or native if it works (default)",
    )
    args = parser.parse_args(argv)
    if min(args.runs, args.cycles, args.containers, args.log_mib, args.log_rounds) < 1:
        parser.error("--runs, --cycles, --containers, --log-mib and --log-rounds must be >= 1")
    return args


def run_bench(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    sections = args.section or list(SECTIONS)
    names = args.tool or ["runtimed", "podman"]
    load = LoadWatch()
    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="rtd-bench-img-"))
        stack.callback(lambda: subprocess.run(["rm", "-rf", str(work)], check=False))
        rootfs = work / "busybox.tar"
        make_busybox_rootfs(rootfs)
        rt = Runtimed(rootfs) if "runtimed" in names else None
        pm = Podman(rootfs, args.podman_storage) if "podman" in names else None
        tools: list[Tool] = [t for t in (rt, pm) if t is not None]
        for tool in tools:
            stack.callback(tool.cleanup)
            load.mark(tool.root)
        for tool in tools:
            tool.start()
        doc["tools"] = {tool.name: tool.detail() for tool in tools}
        print("; ".join(f"{k}: {v}" for k, v in doc["tools"].items()))
        print(f"image {IMAGE}: busybox rootfs from {ROOTFS_SCRIPT.name}, imported into both")

        if "latency" in sections:
            series = latency(rt, pm, args.runs, load)
            print_latency(series, load)
            doc["latency"] = {s.label: summary_of(s) for s in series}
        if "cri" in sections:
            series = pod_cycles(rt, pm, args.cycles, load)
            print_cycles(series, load)
            doc["pod_cycle"] = {s.label: summary_of(s) for s in series}
        if "memory" in sections:
            results = [memory_at(tool, args.containers, load) for tool in tools]
            print_memory(results, load)
            doc["memory_kib"] = {r.name: memory_summary(r) for r in results}
        if "logs" in sections:
            logs = log_rounds(tools, args.log_mib, args.log_rounds, load)
            print_logs(logs, load)
            doc["logs_mib_s"] = {
                results[0].name: {
                    "median": round(median_rate(results), 1),
                    "streaming_median": round(median_rate(results, True), 1),
                    "rounds": [round(r.mib_s, 1) for r in results],
                    "page_cache_mib": [round(r.cached_bytes / 2**20) for r in results],
                }
                for results in logs
            }
        doc["load_high"] = {section: load.high(section) for section in load.samples}
        doc["load_at_start"] = round(load.start_load, 2)


def summary_of(series: Series) -> dict[str, float]:
    return {"p50": round(series.p50, 4), "p95": round(series.p95, 4), "n": len(series.seconds)}


def memory_summary(result: MemoryResult) -> dict[str, Any]:
    m, t = result.median, result.total
    return {
        "one_median": {"rss": m.rss, "pss": m.pss},
        "all": {"rss": t.rss, "pss": t.pss},
        **{k: {"rss": v.rss, "pss": v.pss} for k, v in result.overhead.items()},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A TERM (a test run's clean-up, ctrl-c from run.sh) still removes what we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    doc: dict[str, Any] = {"bench": "containers", "image": IMAGE}
    try:
        run_bench(args, doc)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        print(f"container bench failed: {exc}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        print(f"container bench failed: CRI call: {exc.code()}: {exc.details()}", file=sys.stderr)
        return 1
    print(json.dumps(doc, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pull benchmark: `runtimectl pull` against rootless `podman pull`, same image, same registry.

Run from the tree root as the unprivileged user: `python -m bench.pull_bench`
(bench/run.sh does that as root for you). Every round downloads and unpacks the
whole image: the image is removed between rounds and the bench checks that no
layer survived, so nothing is served from a local cache.

Prints a table of wall-clock times per round, and a one-line JSON summary last.
Exits 0 whatever the numbers; non-zero only if a pull (or the setup) fails.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Protocol

from bench.common import (
    COMMAND_TIMEOUT,
    BenchError,
    PodmanEnv,
    Round,
    ToolResult,
    children_cpu,
    daemon_pids,
    image_facts,
    print_rounds,
    process_cpu,
    ratio,
    registry_bench_args,
    stop_runtimed,
    tool_summaries,
)
from tests.support.daemon import Daemon
from tests.support.images import big_image, push
from tests.support.oci import Image
from tests.support.registry import Registry

REPO, TAG = "bench/big", "1"


# --- helpers --------------------------------------------------------------------


def layer_dirs(root: Path) -> list[str]:
    """Entries of a layer directory that hold a layer (not locks, links or staging)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and p.name != "l")


# --- runtimed ---------------------------------------------------------------------

# Daemon log events that bound the phases of a pull (JSON lines with an ISO timestamp).
RESOLVED, UNPACKED, PULLED = "registry_manifest_resolved", "layer_unpacked", "image_pulled"


def log_events(text: str) -> list[tuple[str, float]]:
    """(event, unix time) for every JSON line of a daemon log excerpt."""
    events = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            doc = json.loads(line)
            stamp = datetime.datetime.fromisoformat(doc["timestamp"]).timestamp()
            events.append((doc["event"], stamp))
    return events


def pull_phases(events: list[tuple[str, float]], start: float, end: float) -> dict[str, float]:
    """Split a pull by the daemon's own log: CLI start and manifest resolution, layers
    (downloads and unpacks overlap, so only their sum is clear), commit, CLI exit."""
    times = {event: [t for e, t in events if e == event] for event in (RESOLVED, UNPACKED, PULLED)}
    if not all(times.values()):
        return {}  # events renamed or missing: no breakdown rather than a wrong one
    resolved, unpacked, pulled = times[RESOLVED][0], max(times[UNPACKED]), times[PULLED][-1]
    return {
        "start+resolve": resolved - start,
        "layers": unpacked - resolved,
        "commit": pulled - unpacked,
        "exit": end - pulled,
    }


class Runtimed:
    """runtimed on a fresh data dir and private socket, driven through runtimectl."""

    name = "runtimed"

    def __init__(self) -> None:
        self.daemon = Daemon()

    def start(self) -> None:
        self.daemon.start()

    def detail(self) -> str:
        return "runtimectl pull (CPU: CLI and daemon)"

    def daemon_cpu(self) -> float:
        return sum(process_cpu(p) for p in daemon_pids(self.daemon))

    def pull(self, ref: str) -> Round:
        log_offset = self.daemon.log_path.stat().st_size
        cpu_before = self.daemon_cpu() + children_cpu()
        start_wall, start = time.time(), time.perf_counter()
        result = self.daemon.ctl("pull", ref, timeout=COMMAND_TIMEOUT)
        seconds = time.perf_counter() - start
        cpu = self.daemon_cpu() + children_cpu() - cpu_before
        if result.returncode != 0:
            raise BenchError(f"runtimectl pull {ref} failed:\n{result.stdout}{result.stderr}")
        if "Already exists" in result.stdout:
            raise BenchError(f"runtimectl pull reused a layer, not a cold pull:\n{result.stdout}")
        with self.daemon.log_path.open("rb") as log:
            log.seek(log_offset)
            events = log_events(log.read().decode(errors="replace"))
        return Round(seconds, cpu, pull_phases(events, start_wall, start_wall + seconds))

    def remove_image(self, ref: str) -> None:
        result = self.daemon.ctl("rmi", ref)
        if result.returncode != 0:
            raise BenchError(f"runtimectl rmi {ref} failed:\n{result.stdout}{result.stderr}")
        left = layer_dirs(self.daemon.data_dir / "layers")
        if left:
            raise BenchError(f"runtimectl rmi left layers behind: {left}")

    def failed(self) -> None:
        print(
            f"runtimed log ({self.daemon.log_path}):\n{self.daemon.log()[-4000:]}", file=sys.stderr
        )

    def cleanup(self) -> None:
        stop_runtimed(self.daemon)


# --- podman -----------------------------------------------------------------------


class Podman:
    """Rootless podman, all its state private to the bench (common.PodmanEnv)."""

    name = "podman"

    def __init__(self, registry_host: str, storage: str = "auto") -> None:
        self.env = PodmanEnv(storage, registry_host)

    def start(self) -> None:
        self.env.start()

    def detail(self) -> str:
        return self.env.detail()

    def pull(self, ref: str) -> Round:
        cpu_before, start = children_cpu(), time.perf_counter()
        proc = self.env.podman("pull", "--tls-verify=false", ref)
        seconds, cpu = time.perf_counter() - start, children_cpu() - cpu_before
        if "already exists" in proc.stderr:
            raise BenchError(f"podman pull reused a layer, not a cold pull:\n{proc.stderr}")
        return Round(seconds, cpu)

    def remove_image(self, ref: str) -> None:
        self.env.podman("rmi", ref)
        left = self.env.podman("images", "-a", "-q").stdout.split()
        layers = layer_dirs(self.env.graph / "overlay")
        if left or layers:
            raise BenchError(f"podman rmi left images {left} and layers {layers} behind")

    def failed(self) -> None:
        pass  # podman's own error output is already in the BenchError

    def cleanup(self) -> None:
        self.env.cleanup()


class Tool(Protocol):
    name: str

    def start(self) -> None: ...
    def detail(self) -> str: ...
    def pull(self, ref: str) -> Round: ...
    def remove_image(self, ref: str) -> None: ...
    def failed(self) -> None: ...
    def cleanup(self) -> None: ...


def bench(tools: list[Tool], ref: str, rounds: int) -> list[ToolResult]:
    """Alternate the tools round by round, so background load hits them alike."""
    times: dict[str, list[Round]] = {tool.name: [] for tool in tools}
    with contextlib.ExitStack() as stack:
        for tool in tools:
            stack.callback(tool.cleanup)
        for tool in tools:
            tool.start()
        for _ in range(rounds):
            for tool in tools:
                try:
                    times[tool.name].append(tool.pull(ref))
                    tool.remove_image(ref)
                except BaseException:
                    tool.failed()
                    raise
        return [ToolResult(tool.name, tool.detail(), times[tool.name]) for tool in tools]


# --- report -----------------------------------------------------------------------


def print_results(ref: str, image: Image, results: list[ToolResult]) -> None:
    facts = image_facts(image)
    mib = facts["compressed_bytes"] / 2**20
    print(f"\nimage {ref}: {facts['layers']} layers, {mib:.1f} MiB compressed (gzip)")
    print_rounds(results, "pull")


def median_phases(result: ToolResult) -> dict[str, float]:
    rows = [r.phases for r in result.rounds if r.phases]
    if not rows:
        return {}
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


def print_phases(phases: dict[str, float]) -> None:
    if phases:
        parts = ", ".join(f"{key} {value:.2f}s" for key, value in phases.items())
        print(f"runtimed phases (median, from the daemon log): {parts}")


def summary(ref: str, image: Image, results: list[ToolResult], phases: dict[str, float]) -> str:
    doc: dict[str, object] = {"bench": "pull", "ref": ref, **image_facts(image)}
    doc.update(tool_summaries(results))
    if phases:
        doc["runtimed_phases"] = {k: round(v, 3) for k, v in phases.items()}
    if len(results) == 2:
        doc["ratio"] = round(ratio(results), 3)
    return json.dumps(doc, separators=(",", ":"))


# --- main -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = registry_bench_args(__doc__.splitlines()[0], "pulls", argv)
    try:
        ref, image, results = run_bench(args)
    except RuntimeError as exc:  # BenchError, and the registry's and daemon's start errors
        print(f"pull bench failed: {exc}", file=sys.stderr)
        return 1
    print_results(ref, image, results)
    phases = next((median_phases(r) for r in results if r.name == "runtimed"), {})
    print_phases(phases)
    print(summary(ref, image, results, phases))
    return 0


def run_bench(args: argparse.Namespace) -> tuple[str, Image, list[ToolResult]]:
    tools = args.tool or ["runtimed", "podman"]
    with Registry() as registry:
        print(f"building and pushing a {args.size_mb} MiB image in {args.layers} layers ...")
        image = big_image(total_mb=args.size_mb, layers=args.layers)
        ref = push(registry, REPO, TAG, image).ref
        chosen: list[Tool] = []
        if "runtimed" in tools:
            chosen.append(Runtimed())
        if "podman" in tools:
            chosen.append(Podman(registry.host, args.podman_storage))
        return ref, image, bench(chosen, ref, args.rounds)


if __name__ == "__main__":
    sys.exit(main())

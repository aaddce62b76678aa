"""Stats benchmark: `runtimectl stats --no-stream` against `podman stats --no-stream` over
the same number of running busybox containers (50 by default).

Run from the tree root as the unprivileged user: `python -m bench.stats_bench`
(`--containers 50 --rounds 5`). Both tools run the same containers (`sleep`, network
none, so neither pays for per-container network set-up; runtimed's NET I/O is then
0 as podman's is); podman is rootless with its state in a private temporary
directory (common.PodmanEnv). Per round, each tool's command is timed wall-clock
from start to exit, alternating which goes first. Both take two samples a second apart
for CPU % (docker's way), so about one second of each figure is that wait. Prints the
medians side by side with the ratio (runtimed / podman; < 1 is faster), and a one-line
JSON summary last. Rootless podman answers stats only on cgroup v2: on a v1 host (these
machines) its refusal is printed instead of a figure, and there is no ratio. Exits 0
whatever the numbers; non-zero only when a step fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    PodmanEnv,
    make_busybox_rootfs,
    print_table,
    stop_runtimed,
    timed,
)
from tests.support.daemon import Daemon

IMAGE = "statsbench/busybox:1"
SLEEP = ["sleep", "100000"]


class Runtimed:
    name = "runtimed"

    def __init__(self, rootfs: Path) -> None:
        self.daemon = Daemon()
        self.rootfs = rootfs
        self.argv = [str(Path(sys.executable).parent / "runtimectl"), "-H"]
        self.argv.append(f"unix://{self.daemon.socket}")

    def start(self) -> None:
        self.daemon.start()
        self.cmd("import", str(self.rootfs), IMAGE)

    def cmd(self, *args: str) -> tuple[float, str]:
        return timed([*self.argv, *args], self.daemon.env, f"runtimectl {' '.join(args)}")

    def cleanup(self) -> None:
        with contextlib.suppress(BenchError, subprocess.SubprocessError):
            ids = self.cmd("ps", "-aq")[1].split()
            if ids:
                self.cmd("rm", "-f", *ids)
        stop_runtimed(self.daemon)


class Podman:
    name = "podman"

    def __init__(self, rootfs: Path, storage: str) -> None:
        self.env = PodmanEnv(storage)
        self.rootfs = rootfs

    def start(self) -> None:
        self.env.start()
        self.cmd("import", str(self.rootfs), IMAGE)

    def cmd(self, *args: str) -> tuple[float, str]:
        return timed(["podman", *args], self.env.env, f"podman {' '.join(args)}")

    def cleanup(self) -> None:
        self.env.cleanup()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--podman-storage", choices=("auto", "native", "fuse"), default="auto")
    parser.add_argument("--tool", action="append", choices=("runtimed", "podman"))
    args = parser.parse_args(argv)
    if min(args.containers, args.rounds) < 1:
        parser.error("--containers and --rounds must be >= 1")
    return args


def run_bench(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    names = args.tool or ["runtimed", "podman"]
    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="rtd-bench-stats-"))
        stack.callback(lambda: subprocess.run(["rm", "-rf", str(work)], check=False))
        rootfs = work / "busybox.tar"
        make_busybox_rootfs(rootfs)
        tools: list[Runtimed | Podman] = []
        if "runtimed" in names:
            tools.append(Runtimed(rootfs))
        if "podman" in names:
            tools.append(Podman(rootfs, args.podman_storage))
        for tool in tools:
            stack.callback(tool.cleanup)
            tool.start()
            for _ in range(args.containers):
                tool.cmd("run", "-d", "--network", "none", IMAGE, *SLEEP)
        print(f"{args.containers} running containers each; {args.rounds} rounds")
        seconds: dict[str, list[float]] = {t.name: [] for t in tools}
        rows: dict[str, int] = {}
        refused: dict[str, str] = {}
        for round_no in range(args.rounds):
            order = tools if round_no % 2 == 0 else list(reversed(tools))
            for tool in order:
                if tool.name in refused:
                    continue
                try:
                    took, out = tool.cmd("stats", "--no-stream")
                except BenchError as exc:
                    if not isinstance(tool, Podman):
                        raise
                    # Rootless podman has no stats on cgroup v1 hosts (these machines).
                    refused[tool.name] = str(exc).strip().splitlines()[-1]
                    del seconds[tool.name]
                    continue
                seconds[tool.name].append(took)
                rows[tool.name] = len(out.splitlines()) - 1
        for name, reason in refused.items():
            print(f"{name}: no figure, it refused: {reason}")
        doc["refused"] = refused
        for name, count in rows.items():
            if count != args.containers:
                raise BenchError(f"{name} stats listed {count} containers, not {args.containers}")
        medians = {name: statistics.median(values) for name, values in seconds.items()}
        table = [[name, f"{medians[name]:.3f}", f"{min(v):.3f}", f"{max(v):.3f}"]
                 for name, v in seconds.items()]  # fmt: skip
        print_table(["tool", "median s", "min s", "max s"], table)
        doc["seconds"] = {name: [round(v, 3) for v in values] for name, values in seconds.items()}
        doc["median"] = {name: round(m, 3) for name, m in medians.items()}
        if len(medians) == 2:
            ratio = medians["runtimed"] / medians["podman"]
            print(f"ratio runtimed / podman: {ratio:.2f}")
            doc["ratio"] = round(ratio, 2)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    doc: dict[str, Any] = {"bench": "stats", "containers": args.containers}
    try:
        run_bench(args, doc)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        print(f"stats bench failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(doc, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Image making and moving: `runtimectl commit/save/load` against rootless podman.

Both tools import the same busybox root filesystem. Each round, in each tool:
a container writes N MiB of incompressible data (not timed), then `commit`
of that container, `save -o FILE` of the committed image, `rmi` of it (not
timed) and `load -i FILE` of the archive are timed, wall clock, each tool
loading its own archive. Tools alternate within a round so background load
hits both alike. Prints median seconds per operation and the ratio
runtimed / podman (below 1.0: runtimed is faster).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    BenchError,
    PodmanEnv,
    make_busybox_rootfs,
    print_table,
    run,
    stop_runtimed,
)
from tests.support.daemon import BIN, Daemon

IMAGE = "benchbase:1"
OPS = ("commit", "save", "load")


class Tool:
    name = ""

    def cli(self, *args: str) -> str:
        raise NotImplementedError

    def timed(self, *args: str) -> float:
        start = time.monotonic()
        self.cli(*args)
        return time.monotonic() - start

    def round(self, n: int, size_mb: int, archive: Path) -> dict[str, float]:
        name, image = f"bench-c{n}", f"bench-img:{n}"
        script = f"dd if=/dev/urandom of=/data bs=1048576 count={size_mb} 2>/dev/null"
        self.cli("run", "--name", name, *self.run_flags(), IMAGE, "sh", "-c", script)
        times = {"commit": self.timed("commit", name, image)}
        times["save"] = self.timed("save", "-o", str(archive), image)
        self.cli("rm", name)
        self.cli("rmi", image)
        times["load"] = self.timed("load", "-i", str(archive))
        self.cli("rmi", image)
        archive.unlink()
        return times

    def run_flags(self) -> list[str]:
        return []


class Runtimed(Tool):
    name = "runtimed"

    def __init__(self, rootfs: Path) -> None:
        self.daemon = Daemon()
        self.rootfs = rootfs

    def start(self) -> None:
        self.daemon.start()
        self.cli("import", str(self.rootfs), IMAGE)

    def cli(self, *args: str) -> str:
        argv = [str(BIN / "runtimectl"), "-H", f"unix://{self.daemon.socket}", *args]
        return run(argv, self.daemon.env, f"runtimectl {' '.join(args)}").stdout

    def cleanup(self) -> None:
        stop_runtimed(self.daemon)


class Podman(Tool):
    name = "podman"

    def __init__(self, rootfs: Path) -> None:
        self.env = PodmanEnv()
        self.rootfs = rootfs

    def start(self) -> None:
        self.env.start()
        self.cli("import", str(self.rootfs), IMAGE)

    def cli(self, *args: str) -> str:
        return self.env.podman(*args).stdout

    def run_flags(self) -> list[str]:
        return ["--network", "none"]

    def cleanup(self) -> None:
        self.env.cleanup()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per tool (default 3)")
    parser.add_argument(
        "--size-mb", type=int, default=100, help="data the container writes, MiB (default 100)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rtd-bench-img-"))
    rootfs = work / "busybox.tar"
    make_busybox_rootfs(rootfs)
    tools: list[Tool] = []
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for cls in (Runtimed, Podman):
            tool = cls(rootfs)
            tools.append(tool)
            tool.start()  # type: ignore[attr-defined]
            results[tool.name] = {op: [] for op in OPS}
        for n in range(args.rounds):
            order = tools if n % 2 == 0 else list(reversed(tools))
            for tool in order:
                times = tool.round(n, args.size_mb, work / f"{tool.name}-{n}.tar")
                for op, seconds in times.items():
                    results[tool.name][op].append(seconds)
    except (BenchError, subprocess.TimeoutExpired) as exc:
        print(f"image bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for tool in tools:
            tool.cleanup()  # type: ignore[attr-defined]
        shutil.rmtree(work, ignore_errors=True)
    print(f"image bench: {args.size_mb} MiB of changes, {args.rounds} rounds, median seconds")
    rows = []
    for op in OPS:
        ours = statistics.median(results["runtimed"][op])
        theirs = statistics.median(results["podman"][op])
        rows.append([op, f"{ours:.2f}", f"{theirs:.2f}", f"{ours / theirs:.2f}x"])
    print_table(["operation", "runtimed", "podman", "ratio"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

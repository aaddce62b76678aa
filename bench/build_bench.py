"""Build benchmark: `runtimectl build` against rootless `podman build`, same Dockerfile.

Run from the tree root as the unprivileged user: `python -m bench.build_bench`
(bench/run.sh build does that as root for you). The Dockerfile has two stages:
a COPY of a 50 MB context, three RUNs and a COPY --from. A cold build runs
with --no-cache; a warm one rebuilds with nothing changed (every step from the
cache). podman keeps all its state in a private temporary root (PodmanEnv).

Targets (issue 12): cold at most 1.0x podman's time, warm at most 0.5x.
Prints a table of wall-clock times and a one-line JSON summary last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import BenchError, PodmanEnv, make_busybox_rootfs, print_table, run, stop_runtimed
from tests.support.daemon import Daemon, remove_tree

DOCKERFILE = """\
ARG BASE
FROM ${BASE} AS builder
COPY data/ /data/
RUN cat /data/* | md5sum > /md5 && du -s /data > /size
RUN echo built > /built
FROM ${BASE}
COPY --from=builder /md5 /size /built /out/
RUN cat /out/md5 /out/size /out/built > /out/all
"""


def make_context(root: Path, mib: int) -> Path:
    ctx = root / "ctx"
    (ctx / "data").mkdir(parents=True)
    for i in range(mib):
        (ctx / "data" / f"blob-{i:03d}").write_bytes(os.urandom(1 << 20))
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return ctx


def timed(action: Callable[[], object]) -> float:
    start = time.monotonic()
    action()
    return time.monotonic() - start


def bench_runtimed(ctx: Path, rootfs: Path, rounds: int) -> tuple[list[float], list[float]]:
    daemon = Daemon().start()
    try:
        daemon.ok("import", "-c", 'CMD ["/bin/sh"]', str(rootfs), "busybox:local")
        argv = ["build", "--build-arg", "BASE=busybox:local", "-t", "bench:1"]

        def build(*extra: str) -> None:
            result = daemon.ctl(*argv, *extra, str(ctx), timeout=600)
            if result.returncode != 0:
                raise BenchError(f"runtimectl build failed:\n{result.stdout}\n{result.stderr}")

        cold = [timed(lambda: build("--no-cache")) for _ in range(rounds)]
        warm = [timed(build) for _ in range(rounds)]
        return cold, warm
    finally:
        stop_runtimed(daemon)


def bench_podman(ctx: Path, rootfs: Path, rounds: int) -> tuple[list[float], list[float], str]:
    podman = PodmanEnv()
    try:
        podman.start()
        podman.podman("import", "--change", 'CMD ["/bin/sh"]', str(rootfs), "busybox:local")
        argv = ["build", "--build-arg", "BASE=localhost/busybox:local", "-t", "bench:1"]

        def build(*extra: str) -> None:
            run(["podman", *argv, *extra, str(ctx)], podman.env, "podman build")

        cold = [timed(lambda: build("--no-cache")) for _ in range(rounds)]
        warm = [timed(build) for _ in range(rounds)]
        return cold, warm, podman.detail()
    finally:
        podman.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--context-mib", type=int, default=50)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rtd-bench-build-"))
    try:
        ctx = make_context(root, args.context_mib)
        rootfs = root / "busybox.tar"
        make_busybox_rootfs(rootfs)
        ours_cold, ours_warm = bench_runtimed(ctx, rootfs, args.rounds)
        pm_cold, pm_warm, detail = bench_podman(ctx, rootfs, args.rounds)
    except BenchError as exc:
        print(f"build_bench: {exc}", file=sys.stderr)
        return 1
    finally:
        remove_tree(root)
    rows = []
    summary = {}
    for name, ours, theirs, target in (
        ("cold build", ours_cold, pm_cold, 1.0),
        ("warm rebuild", ours_warm, pm_warm, 0.5),
    ):
        a, b = statistics.median(ours), statistics.median(theirs)
        ratio = a / b if b else float("inf")
        rows.append([name, f"{a:.2f}s", f"{b:.2f}s", f"{ratio:.2f}x", f"<= {target}x"])
        summary[name.replace(" ", "_")] = {"runtimed": a, "podman": b, "ratio": ratio}
    print(f"build bench: {args.context_mib} MiB context, {args.rounds} rounds, median; {detail}")
    print_table(["case", "runtimed", "podman build", "ratio", "target"], rows)
    print(json.dumps({"bench": "build", **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Push benchmark: `runtimectl push` against rootless `podman push`, same image, same registry.

Run from the tree root as the unprivileged user: `python -m bench.push_bench`
(bench/run.sh does that as root for you). Each tool pulls the image once from a
source registry (not timed); every round then pushes it to a registry started
fresh for that round, so every blob really goes up: nothing to skip, nothing to
mount from another repository.

Prints a table of wall-clock times per round, and a one-line JSON summary last.
Exits 0 whatever the numbers; non-zero only if a push (or the setup) fails.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack
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


class Runtimed:
    name = "runtimed"

    def __init__(self) -> None:
        self.daemon = Daemon()

    def start(self, source: str) -> None:
        self.daemon.start()
        self._ok("pull", source)

    def detail(self) -> str:
        return "runtimectl push (CPU: CLI and daemon)"

    def _ok(self, *args: str) -> str:
        result = self.daemon.ctl(*args, timeout=COMMAND_TIMEOUT)
        if result.returncode != 0:
            raise BenchError(f"runtimectl {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def _cpu(self) -> float:
        return sum(process_cpu(p) for p in daemon_pids(self.daemon)) + children_cpu()

    def push(self, source: str, target: str) -> Round:
        self._ok("tag", source, target)
        cpu_before, start = self._cpu(), time.perf_counter()
        out = self._ok("push", target)
        seconds, cpu = time.perf_counter() - start, self._cpu() - cpu_before
        self._ok("rmi", target)
        if "Mounted from" in out or "Layer already exists" in out:
            raise BenchError(f"runtimectl push did not upload every layer:\n{out}")
        return Round(seconds, cpu)

    def failed(self) -> None:
        print(
            f"runtimed log ({self.daemon.log_path}):\n{self.daemon.log()[-4000:]}", file=sys.stderr
        )

    def cleanup(self) -> None:
        stop_runtimed(self.daemon)


class Podman:
    name = "podman"

    def __init__(self, source_host: str, storage: str) -> None:
        self.env = PodmanEnv(storage, source_host)

    def start(self, source: str) -> None:
        self.env.start()
        self.env.podman("pull", "--tls-verify=false", source)

    def detail(self) -> str:
        return self.env.detail()

    def push(self, source: str, target: str) -> Round:
        self.env.podman("tag", source, target)
        cpu_before, start = children_cpu(), time.perf_counter()
        proc = self.env.podman("push", "--tls-verify=false", target)
        seconds, cpu = time.perf_counter() - start, children_cpu() - cpu_before
        self.env.podman("rmi", target)
        if "skipped" in proc.stderr:
            raise BenchError(f"podman push skipped a blob:\n{proc.stderr}")
        return Round(seconds, cpu)

    def failed(self) -> None:
        pass  # podman's own error output is already in the BenchError

    def cleanup(self) -> None:
        self.env.cleanup()


class Tool(Protocol):
    name: str

    def start(self, source: str) -> None: ...
    def detail(self) -> str: ...
    def push(self, source: str, target: str) -> Round: ...
    def failed(self) -> None: ...
    def cleanup(self) -> None: ...


def bench(tools: list[Tool], source: str, rounds: int) -> list[ToolResult]:
    """Alternate the tools round by round, each push into a registry of its own."""
    times: dict[str, list[Round]] = {tool.name: [] for tool in tools}
    with ExitStack() as stack:
        for tool in tools:
            stack.callback(tool.cleanup)
        for tool in tools:
            tool.start(source)
        for _ in range(rounds):
            for tool in tools:
                with Registry() as target:
                    try:
                        times[tool.name].append(tool.push(source, target.ref(REPO, TAG)))
                    except BaseException:
                        tool.failed()
                        raise
        # Before the cleanup: podman's detail asks podman, which needs its configuration.
        return [ToolResult(tool.name, tool.detail(), times[tool.name]) for tool in tools]


def report(image: Image, results: list[ToolResult]) -> None:
    facts = image_facts(image)
    mib = facts["compressed_bytes"] / 2**20
    print(f"\nimage: {facts['layers']} layers, {mib:.1f} MiB compressed (gzip), pushed to loopback")
    print_rounds(results, "push")
    doc: dict[str, object] = {"bench": "push", **facts, **tool_summaries(results)}
    if len(results) == 2:
        doc["ratio"] = round(ratio(results), 3)
    print(json.dumps(doc, separators=(",", ":")))


def main(argv: list[str] | None = None) -> int:
    args = registry_bench_args(__doc__.splitlines()[0], "pushes", argv)
    names = args.tool or ["runtimed", "podman"]
    try:
        with Registry() as source_registry:
            print(f"building and pushing a {args.size_mb} MiB image in {args.layers} layers ...")
            image = big_image(total_mb=args.size_mb, layers=args.layers)
            source = push(source_registry, REPO, TAG, image).ref
            tools: list[Tool] = []
            if "runtimed" in names:
                tools.append(Runtimed())
            if "podman" in names:
                tools.append(Podman(source_registry.host, args.podman_storage))
            results = bench(tools, source, args.rounds)
    except RuntimeError as exc:  # BenchError, and the registry's and daemon's start errors
        print(f"push bench failed: {exc}", file=sys.stderr)
        return 1
    report(image, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

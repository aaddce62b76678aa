"""Events benchmark: what a subscriber to the event stream costs and how late it
hears, runtimed's `runtimectl events` against rootless `podman events`.

Run from the tree root as the unprivileged user: `python -m bench.events_bench`
(`--containers 50`). For each tool, `run --rm --network none` of a busybox `true` N
times in a
row, twice: once with nobody listening and once with the tool's own subscriber
(`runtimectl events --format '{{json .}}'`, `podman events --format json`) reading
every event as JSON. The bench stamps each line as it arrives and compares that
with the time inside the event (when the daemon, or the podman process, wrote
it). Per tool:

- lag: median and p95 of arrival minus event time, over every container event,
- events: how many one `run --rm` gives (each tool's own set),
- subscriber CPU: CPU seconds of the events process while the N runs are heard
  (its start-up left out), total and per event,
- wall: the N runs' wall time without and with the subscriber (its ratio is the
  overhead the stream puts on the work it watches),
- daemon CPU (runtimed only; podman has no daemon): the daemon's CPU seconds
  over the N runs without and with the subscriber.

podman runs with `events_logger = "file"` (no journald here): each podman
process appends to a file that `podman events` follows. The two modes and the
tools alternate; the last line is one JSON object. Exits 0 whatever the numbers;
non-zero only when a step fails.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    LoadWatch,
    PodmanEnv,
    child_pids,
    daemon_pids,
    make_busybox_rootfs,
    percentile,
    print_table,
    process_cpu,
    stop_runtimed,
)
from runtimed import __version__
from tests.support.daemon import BIN, Daemon

IMAGE = "evbench:busybox"
SYNC_TRIES = 100
DRAIN_TIMEOUT = 120.0


@dataclass
class Round:
    wall: float = 0.0
    daemon_cpu: float | None = None
    lags_ms: list[float] = field(default_factory=list)
    events: int = 0
    subscriber_cpu: float = 0.0


@dataclass
class Subscriber:
    """A tool's events command, its lines stamped on arrival by a reader thread."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[tuple[int, str]] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.time_ns(), line))

    def get(self, timeout: float) -> tuple[int, dict[str, Any]]:
        arrived, line = self.lines.get(timeout=timeout)
        return arrived, json.loads(line)

    def cpu(self) -> float:
        """CPU seconds of the process and its children (rootless podman may re-execute
        itself), to the nanosecond: a Go subscriber spends less than the 10 ms tick
        /proc/PID/stat counts in."""
        pids, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo.extend(child_pids(pid))
        return sum(thread_cpu_ns(pid) for pid in pids) / 1e9

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Tool:
    name = ""
    final_action = ""  # the last event of one `run --rm`

    def run_container(self) -> None:
        raise NotImplementedError

    def subscribe(self) -> Subscriber:
        raise NotImplementedError

    def probe(self, attempt: int) -> None:
        """Something that makes an event, to learn when the subscriber is listening."""
        raise NotImplementedError

    def event_time_ns(self, event: dict[str, Any]) -> int:
        raise NotImplementedError

    def is_container_event(self, event: dict[str, Any]) -> bool:
        raise NotImplementedError

    def action(self, event: dict[str, Any]) -> str:
        raise NotImplementedError

    def daemon_cpu(self) -> float | None:
        return None

    def detail(self) -> str:
        raise NotImplementedError

    def cleanup(self) -> None:
        raise NotImplementedError


class Runtimed(Tool):
    name = "runtimed"
    final_action = "destroy"

    def __init__(self, rootfs: Path) -> None:
        self.daemon = Daemon().start()
        self.daemon.ok("import", "-c", 'CMD ["/bin/sh"]', str(rootfs), IMAGE)

    def run_container(self) -> None:
        self.daemon.ok("run", "--rm", "--network", "none", IMAGE, "true")

    def subscribe(self) -> Subscriber:
        argv = [str(BIN / "runtimectl"), "-H", f"unix://{self.daemon.socket}", "events"]
        proc = subprocess.Popen(
            [*argv, "--format", "{{json .}}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.daemon.env,
        )
        return Subscriber(proc)

    def probe(self, attempt: int) -> None:
        self.daemon.ok("tag", IMAGE, f"evbench-probe:{attempt}")

    def event_time_ns(self, event: dict[str, Any]) -> int:
        return int(event["timeNano"])

    def is_container_event(self, event: dict[str, Any]) -> bool:
        return event["Type"] == "container"

    def action(self, event: dict[str, Any]) -> str:
        return event["Action"]

    def daemon_cpu(self) -> float | None:
        return sum(process_cpu(pid) for pid in daemon_pids(self.daemon))

    def detail(self) -> str:
        return f"runtimed {__version__}, {self.daemon.ok('info').out_lines[6].strip()}"

    def cleanup(self) -> None:
        stop_runtimed(self.daemon)


class Podman(Tool):
    name = "podman"
    final_action = "remove"

    def __init__(self, rootfs: Path) -> None:
        self.env = PodmanEnv()
        self.env.start()
        self.env.podman("import", "--change", 'CMD ["/bin/sh"]', str(rootfs), IMAGE)

    def run_container(self) -> None:
        self.env.podman("run", "--rm", "--network", "none", IMAGE, "true")

    def subscribe(self) -> Subscriber:
        proc = subprocess.Popen(
            ["podman", "events", "--format", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.env.env,
        )
        return Subscriber(proc)

    def probe(self, attempt: int) -> None:
        self.env.podman("tag", IMAGE, f"evbench-probe:{attempt}")

    def event_time_ns(self, event: dict[str, Any]) -> int:
        if "timeNano" in event:
            return int(event["timeNano"])
        return rfc3339_ns(event["Time"])

    def is_container_event(self, event: dict[str, Any]) -> bool:
        return event.get("Type") == "container"

    def action(self, event: dict[str, Any]) -> str:
        return event.get("Status", "")

    def detail(self) -> str:
        return self.env.detail()

    def cleanup(self) -> None:
        self.env.cleanup()


def thread_cpu_ns(pid: int) -> int:
    """Time on a CPU of every live thread of `pid` (schedstat, nanoseconds)."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                total += int((task / "schedstat").read_text().split()[0])
    return total


def rfc3339_ns(text: str) -> int:
    """2024-03-01T12:00:00.123456789+01:00 to nanoseconds (datetime stops at micro)."""
    head, dot, rest = text.partition(".")
    nanos, zone = 0, rest
    if dot:
        digits = "".join(c for c in rest[:9] if c.isdigit())
        zone = rest[len(digits) :]
        nanos = int((digits + "000000000")[:9])
    else:
        head, zone = text[:19], text[19:]
    stamp = dt.datetime.fromisoformat(head + (zone.replace("Z", "+00:00") or "+00:00"))
    return int(stamp.timestamp()) * 1_000_000_000 + nanos


def wait_listening(tool: Tool, sub: Subscriber) -> None:
    for attempt in range(SYNC_TRIES):
        tool.probe(attempt)
        try:
            sub.get(timeout=1.0)
        except queue.Empty:
            continue
        # Whatever else the probes made (podman's tag is one event; ours too).
        while True:
            try:
                sub.get(timeout=0.5)
            except queue.Empty:
                return
    raise BenchError(f"{tool.name}'s events never showed a probe's event")


def measure(tool: Tool, containers: int, listen: bool, load: LoadWatch, section: str) -> Round:
    result = Round()
    sub = tool.subscribe() if listen else None
    try:
        sub_cpu0 = 0.0
        if sub is not None:
            wait_listening(tool, sub)
            sub_cpu0 = sub.cpu()  # start-up and the probes are not the stream's cost
        cpu0 = tool.daemon_cpu()
        start = time.monotonic()
        for _ in range(containers):
            tool.run_container()
            load.sample(section)
        result.wall = time.monotonic() - start
        cpu1 = tool.daemon_cpu()
        if cpu0 is not None and cpu1 is not None:
            result.daemon_cpu = cpu1 - cpu0
        if sub is None:
            return result
        finals = 0
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while finals < containers:
            if time.monotonic() > deadline:
                raise BenchError(f"{tool.name}: only {finals} of {containers} runs were heard")
            try:
                arrived, event = sub.get(timeout=DRAIN_TIMEOUT)
            except queue.Empty:
                continue
            if not tool.is_container_event(event):
                continue
            result.events += 1
            result.lags_ms.append((arrived - tool.event_time_ns(event)) / 1e6)
            if tool.action(event) == tool.final_action:
                finals += 1
        result.subscriber_cpu = sub.cpu() - sub_cpu0
        return result
    finally:
        if sub is not None:
            sub.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--containers", type=int, default=50, help="run --rm per tool and mode")
    p.add_argument("--tool", choices=["both", "runtimed", "podman"], default="both")
    return p.parse_args(argv)


def summary(tool: Tool, quiet: Round, heard: Round, containers: int) -> dict[str, Any]:
    lags = heard.lags_ms
    return {
        "tool": tool.name,
        "detail": tool.detail(),
        "events_per_run": heard.events / containers,
        "lag_ms_median": statistics.median(lags),
        "lag_ms_p95": percentile(lags, 0.95),
        "subscriber_cpu_s": heard.subscriber_cpu,
        "subscriber_cpu_us_per_event": heard.subscriber_cpu / heard.events * 1e6,
        "wall_s_quiet": quiet.wall,
        "wall_s_heard": heard.wall,
        "wall_ratio_heard_quiet": heard.wall / quiet.wall,
        "daemon_cpu_s_quiet": quiet.daemon_cpu,
        "daemon_cpu_s_heard": heard.daemon_cpu,
    }


def report(rows: list[dict[str, Any]], containers: int) -> dict[str, Any]:
    def f(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    print(
        f"events bench: {containers} x `run --rm --network none busybox true` per tool, "
        "quiet and heard"
    )
    for row in rows:
        print(f"  {row['tool']}: {row['detail']}")
    header = ["", *[r["tool"] for r in rows]]
    lines = [
        ("events per run", "events_per_run", ".1f"),
        ("lag median (ms)", "lag_ms_median", ".2f"),
        ("lag p95 (ms)", "lag_ms_p95", ".2f"),
        ("subscriber CPU (s)", "subscriber_cpu_s", ".3f"),
        ("subscriber CPU/event (us)", "subscriber_cpu_us_per_event", ".0f"),
        ("wall quiet (s)", "wall_s_quiet", ".2f"),
        ("wall heard (s)", "wall_s_heard", ".2f"),
        ("wall heard/quiet", "wall_ratio_heard_quiet", ".3f"),
        ("daemon CPU quiet (s)", "daemon_cpu_s_quiet", ".3f"),
        ("daemon CPU heard (s)", "daemon_cpu_s_heard", ".3f"),
    ]
    print_table(header, [[label, *[f(r[key], fmt) for r in rows]] for label, key, fmt in lines])
    doc: dict[str, Any] = {"bench": "events", "containers": containers, "tools": rows}
    by_tool = {r["tool"]: r for r in rows}
    if len(by_tool) == 2:
        ours, theirs = by_tool["runtimed"], by_tool["podman"]
        pairs = {
            "lag_median": "lag_ms_median",
            "lag_p95": "lag_ms_p95",
            "subscriber_cpu_per_event": "subscriber_cpu_us_per_event",
        }
        # None where podman's reading is 0 (below the clock tick of CPU accounting).
        ratios = {
            name: ours[key] / theirs[key] if theirs[key] else None for name, key in pairs.items()
        }
        doc["ratios_runtimed_over_podman"] = ratios
        print(
            "runtimed/podman (lower is better): "
            + ", ".join(f"{k} {f(v, '.3f')}" for k, v in ratios.items())
        )
    return doc


def run_bench(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    load = LoadWatch()
    work = Path(tempfile.mkdtemp(prefix="evbench-"))
    rootfs = work / "busybox.tar"
    make_busybox_rootfs(rootfs)
    tools: list[Tool] = []
    try:
        if args.tool in ("both", "runtimed"):
            tools.append(Runtimed(rootfs))
            load.mark(tools[-1].daemon.root)  # type: ignore[attr-defined]
        if args.tool in ("both", "podman"):
            tools.append(Podman(rootfs))
            load.mark(tools[-1].env.root)  # type: ignore[attr-defined]
        results: dict[str, dict[bool, Round]] = {t.name: {} for t in tools}
        # Modes and tools alternate, so background load hits both alike.
        for listen in (False, True):
            order = tools if listen else list(reversed(tools))
            for tool in order:
                section = "heard" if listen else "quiet"
                results[tool.name][listen] = measure(tool, args.containers, listen, load, section)
        rows = [
            summary(t, results[t.name][False], results[t.name][True], args.containers)
            for t in tools
        ]
        doc.update(report(rows, args.containers))
        for section in ("quiet", "heard"):
            print(load.note(section))
    finally:
        for tool in tools:
            tool.cleanup()
        subprocess.run(["rm", "-rf", str(work)], check=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    doc: dict[str, Any] = {}
    try:
        run_bench(args, doc)
    except (RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        print(f"events bench failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(doc, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Log throughput benchmark: runtimed's log drivers against rootless podman's conmon (k8s-file).

Run from the tree root as the unprivileged user: `python -m bench.log_bench`
(`bench/run.sh logs` does that as root for you). A busybox container writes a
payload to stdout as fast as it can; the clock runs from the `run` command to
the last byte landing where the driver puts it, and the bench then checks that
every line arrived:

- payloads: short lines (41 bytes with the newline) and 16 KiB lines;
- runtimed: json-file, cri, syslog over a unix stream socket to Debian's rsyslog
  (started here, as this user, with its own config), and json-file again with the
  daemon stopped (SIGSTOP) for the whole run: container output never goes
  through the daemon, so it must not slow down;
- podman: k8s-file (conmon), the nearest equivalent.

The default payload is 128 MiB; `--mib 1024` is the full 1 GiB run. Rounds
alternate between the runs so background load hits all alike. Prints MB/s,
lines/s and the ratio to podman per payload, and a one-line JSON summary last.
Exits 0 whatever the numbers; non-zero only if a run fails or loses a line.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    COMMAND_TIMEOUT,
    BenchError,
    LoadWatch,
    PodmanEnv,
    daemon_pids,
    make_busybox_rootfs,
    print_table,
    process_cpu,
    stop_runtimed,
    timed,
)
from tests.support.daemon import Daemon
from tests.support.logreceivers import RSYSLOGD, Rsyslog

IMAGE = "bench/busybox:logs"
SHORT = "0123456789012345678901234567890123456789"  # 41 bytes with its newline
LONG = "x" * (16 * 1024 - 1)  # 16 KiB with its newline
PAYLOADS = {"short": SHORT, "16k": LONG}
RUNS = ("json-file", "cri", "syslog", "json-file-daemon-stopped", "podman-k8s-file")


@dataclass
class Result:
    run: str
    payload: str
    lines: int
    line_bytes: int
    seconds: float
    logger_cpu: float

    @property
    def mb_s(self) -> float:
        return self.lines * self.line_bytes / 1e6 / self.seconds

    @property
    def lines_s(self) -> float:
        return self.lines / self.seconds


def count(path: Path, marker: bytes) -> int:
    """Lines of the payload in a log file (the marker ends each one in that format)."""
    found, tail = 0, b""
    with path.open("rb") as f:
        while chunk := f.read(16 << 20):
            data = tail + chunk
            cut = data.rfind(b"\n") + 1
            found += data.count(marker, 0, cut)
            tail = data[cut:]
    return found


# What marks one whole payload line in each log: json-file escapes the newline inside
# "log"; the CRI format tags the last piece of a line F (conmon writes the pieces of a
# line its read cut as P); rsyslog's file holds one message per line.
def markers(payload: str) -> dict[str, bytes]:
    tail = payload[-8:].encode()
    return {
        "json-file": tail + b'\\n"',
        "cri": b" stdout F ",
        "syslog": tail + b"\n",
        "k8s-file": b" stdout F ",
    }


def wait_complete(
    path: Path, marker: bytes, lines: int, start: float, load: LoadWatch, logger: int
) -> tuple[float, float]:
    """Poll until the file holds every line; (seconds since start, logger CPU seconds)."""
    deadline = start + COMMAND_TIMEOUT
    size, cpu, last_change = -1, 0.0, time.perf_counter()
    found = 0
    polls = 0
    while True:
        polls += 1
        if polls % 25 == 0:
            load.sample("logs")
        now = time.perf_counter()
        with contextlib.suppress(FileNotFoundError):
            current = path.stat().st_size
            if current != size:
                size, last_change = current, now
                cpu = process_cpu(logger) or cpu
                # Counting is costly: only once growth pauses, or at a large size.
        if size > 0 and now - last_change > 0.05:
            found = count(path, marker)
            if found >= lines:
                return last_change - start, cpu
        if now > deadline or (size > 0 and now - last_change > 30):
            raise BenchError(f"{path} holds {found} of {lines} lines and stopped growing")
        time.sleep(0.01)


class Runtimed:
    def __init__(self, rootfs: Path, work: Path) -> None:
        self.daemon = Daemon()
        self.rootfs = rootfs
        self.ctl_argv = [str(Path(sys.executable).parent / "runtimectl"), "-H"]
        self.ctl_argv.append(f"unix://{self.daemon.socket}")
        self.rsyslog: Rsyslog | None = None
        self.work = work

    def start(self, with_syslog: bool) -> None:
        self.daemon.start()
        self.ctl("import", str(self.rootfs), IMAGE)
        if with_syslog:
            self.rsyslog = Rsyslog(self.work / "rsyslog").start()

    def ctl(self, *args: str) -> str:
        return timed([*self.ctl_argv, *args], self.daemon.env, f"runtimectl {' '.join(args)}")[1]

    def version(self) -> str:
        return "runtimed " + self.ctl("version").split("Version:", 1)[1].split()[0]

    def run(self, run: str, payload: str, lines: int, load: LoadWatch) -> Result:
        driver = "json-file" if run.startswith("json-file") else run
        opts: list[str] = ["--log-driver", driver]
        if driver == "syslog":
            assert self.rsyslog is not None
            # The local cache is Docker's default too; the bench measures the whole path.
            opts += ["--log-opt", f"syslog-address=unix://{self.rsyslog.stream}"]
        script = f"yes {PAYLOADS[payload]} | head -n {lines}"
        load.sample("logs")
        stopped = run.endswith("daemon-stopped")
        # rsyslog keeps its file open: earlier runs' lines stay, and are counted first.
        out = self.rsyslog.out if self.rsyslog is not None else None
        marker = markers(PAYLOADS[payload])["syslog"]
        before = count(out, marker) if driver == "syslog" and out and out.exists() else 0
        start = time.perf_counter()
        cid = self.ctl("run", "-d", *opts, IMAGE, "sh", "-c", script).strip()
        if stopped:
            for pid in daemon_pids(self.daemon):
                os.kill(pid, signal.SIGSTOP)
        try:
            shim = int(next(self.daemon.root.glob(f"**/containers/{cid}/shim.pid")).read_text())
            if driver == "syslog":
                assert self.rsyslog is not None
                path, marker = self.rsyslog.out, markers(PAYLOADS[payload])["syslog"]
            else:
                files = self.daemon.data_dir / "containers" / cid
                path, marker = files / f"{cid}-json.log", markers(PAYLOADS[payload])[driver]
            seconds, cpu = wait_complete(path, marker, before + lines, start, load, shim)
        finally:
            if stopped:
                for pid in daemon_pids(self.daemon):
                    os.kill(pid, signal.SIGCONT)
        self.ctl("rm", "-f", cid)
        return Result(run, payload, lines, len(PAYLOADS[payload]) + 1, seconds, cpu)

    def cleanup(self) -> None:
        if self.rsyslog is not None:
            self.rsyslog.stop()
        stop_runtimed(self.daemon)


class Podman:
    def __init__(self, rootfs: Path, storage: str) -> None:
        self.env = PodmanEnv(storage)
        self.rootfs = rootfs

    def start(self) -> None:
        self.env.start()
        self.env.podman("import", str(self.rootfs), IMAGE)

    def run(self, payload: str, lines: int, load: LoadWatch) -> Result:
        script = f"yes {PAYLOADS[payload]} | head -n {lines}"
        load.sample("logs")
        start = time.perf_counter()
        cid = self.env.podman(
            "run", "-d", "--network", "none", "--log-driver", "k8s-file", IMAGE, "sh", "-c", script
        ).stdout.strip()
        inspect = self.env.podman(
            "inspect", "--format", "{{.HostConfig.LogConfig.Path}} {{.State.ConmonPid}}", cid
        ).stdout.split()
        path, conmon = Path(inspect[0]), int(inspect[1])
        seconds, cpu = wait_complete(
            path, markers(PAYLOADS[payload])["k8s-file"], lines, start, load, conmon
        )
        self.env.podman("rm", "-f", "-t", "0", cid)
        return Result("podman-k8s-file", payload, lines, len(PAYLOADS[payload]) + 1, seconds, cpu)

    def cleanup(self) -> None:
        self.env.cleanup()


def bench(args: argparse.Namespace, doc: dict[str, Any]) -> list[Result]:
    runs = args.run or list(RUNS)
    load = LoadWatch()
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="rtd-bench-logs-"))
        stack.callback(lambda: subprocess.run(["rm", "-rf", str(work)], check=False))
        rootfs = work / "busybox.tar"
        make_busybox_rootfs(rootfs)
        ours = [r for r in runs if r != "podman-k8s-file"]
        rt = pm = None
        if ours:
            rt = Runtimed(rootfs, work)
            stack.callback(rt.cleanup)
            load.mark(rt.daemon.root)
            load.mark(work)
            if "syslog" in ours and not Path(RSYSLOGD).exists():
                raise BenchError("syslog runs need rsyslog (deploy/setup-host.sh installs it)")
            rt.start("syslog" in ours)
            doc["runtimed"] = rt.version()
        if "podman-k8s-file" in runs:
            pm = Podman(rootfs, args.podman_storage)
            stack.callback(pm.cleanup)
            load.mark(pm.env.root)
            pm.start()
            doc["podman"] = pm.env.detail()
        print("; ".join(f"{k}: {doc[k]}" for k in ("runtimed", "podman") if k in doc))
        for payload in args.payload or list(PAYLOADS):
            line_bytes = len(PAYLOADS[payload]) + 1
            lines = args.mib * 2**20 // line_bytes
            for n in range(args.rounds):
                order = runs[n % len(runs) :] + runs[: n % len(runs)]
                for run in order:
                    if run == "podman-k8s-file":
                        assert pm is not None
                        result = pm.run(payload, lines, load)
                    else:
                        assert rt is not None
                        result = rt.run(run, payload, lines, load)
                    results.append(result)
                    # What one run leaves running (rsyslog writing its backlog, a shim
                    # compressing its cache, podman cleaning up) must not slow the next.
                    time.sleep(args.settle)
                    print(
                        f"  {payload:5} {run:26} {result.seconds:7.2f} s "
                        f"{result.mb_s:8.1f} MB/s {result.lines_s:12,.0f} lines/s",
                        flush=True,
                    )
        doc["load"] = load.note("logs")
    return results


def report(results: list[Result], args: argparse.Namespace, doc: dict[str, Any]) -> None:
    print(f"\nlog throughput, {args.mib} MiB per run, median of {args.rounds} round(s):")
    rows = []
    summary: dict[str, Any] = {}
    for payload in dict.fromkeys(r.payload for r in results):
        mine = [r for r in results if r.payload == payload]
        medians = {
            run: statistics.median(r.mb_s for r in mine if r.run == run)
            for run in dict.fromkeys(r.run for r in mine)
        }
        peer = medians.get("podman-k8s-file")
        for run, mb_s in medians.items():
            sample = next(r for r in mine if r.run == run)
            cpu = statistics.median(r.logger_cpu for r in mine if r.run == run)
            ratio = f"{mb_s / peer:.2f}" if peer and run != "podman-k8s-file" else ""
            lines_s = mb_s * 1e6 / sample.line_bytes
            rows.append([payload, run, f"{mb_s:.1f}", f"{lines_s:,.0f}", f"{cpu:.1f} s", ratio])
            summary.setdefault(payload, {})[run] = {
                "mb_s": round(mb_s, 1),
                "lines_s": round(lines_s),
                "logger_cpu_s": round(cpu, 2),
                **({"ratio_vs_podman": round(mb_s / peer, 2)} if ratio else {}),
            }
    print_table(["payload", "run", "MB/s", "lines/s", "logger CPU", "vs podman"], rows, "  ")
    print("  MB/s: payload bytes / seconds from `run` to the last line in the log (1 MB = 10^6 B)")
    print("  vs podman: throughput ratio to conmon's k8s-file (higher is better, target >= 1)")
    print("  logger CPU: CPU seconds of the shim (runtimed) or conmon (podman) writing the log")
    print(f"  {doc.get('load', '')}")
    doc.update(bench="logs", mib=args.mib, rounds=args.rounds, results=summary)
    print(json.dumps(doc, separators=(",", ":")))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mib", type=int, default=128, help="MiB per run (default 128; 1024 = 1 GiB)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds per run (default 1)")
    parser.add_argument("--payload", choices=list(PAYLOADS), action="append", help="only these")
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds of rest between runs (default 3)"
    )
    parser.add_argument("--run", choices=RUNS, action="append", help="only these (repeatable)")
    parser.add_argument(
        "--podman-storage",
        choices=["auto", "native", "fuse"],
        default="auto",
        help="podman's overlay: native, through fuse-overlayfs, or native if it works (default)",
    )
    args = parser.parse_args(argv)
    if args.mib < 1 or args.rounds < 1:
        parser.error("--mib and --rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    doc: dict[str, Any] = {}
    try:
        results = bench(args, doc)
    except (BenchError, RuntimeError, TimeoutError) as exc:
        print(f"log bench failed: {exc}", file=sys.stderr)
        return 1
    report(results, args, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

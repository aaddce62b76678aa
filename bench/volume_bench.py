"""Volume benchmark: write and read a file through a named volume, a bind mount and the
container's overlay root, and the same directly on the host, in one run.

Run from the tree root as the unprivileged user: `python -m bench.volume_bench`
(`--size-mb 1024` for the full 1 GiB). Every location is measured with the same
tool, the static busybox's `dd` and `adjtimex` clock (microseconds), run by the same
shell script: on the host directly, in the containers through `exec`, so neither a
CLI's start-up nor an exec's shows in the numbers. Per round and location:

- write: `dd bs=1M conv=fsync` of SIZE MiB (the data is on disk when it stops),
- read: the file back (from the page cache, as a reader right after a writer gets it),
- direct read: the file back with O_DIRECT (from the disk, no cache).

All locations live on the same filesystem (the temporary directory's). Rounds
rotate the order of the locations. Prints MB/s medians and each one's ratio to the
host (1.00 = as fast as the host; the target for volumes and binds is >= 0.95), and a
one-line JSON summary last. With podman installed, its named volume, bind mount and
overlay root are measured in the same run for comparison (`--tool runtimed` skips it).
Exits 0 whatever the numbers; non-zero only when a step fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    LoadWatch,
    PodmanEnv,
    make_busybox_rootfs,
    print_table,
    stop_runtimed,
)
from tests.support.daemon import Daemon

BUSYBOX = "/bin/busybox"
IMAGE = "volbench:busybox"
TIMEOUT = 900.0

# $1: directory, $2: MiB. Prints microseconds: write, read, direct read ("-" if refused).
SCRIPT = r"""
B=/bin/busybox
now() { $B adjtimex | $B awk '/tv_sec/ {s=$2} /tv_usec/ {u=$2} END {printf "%d%06d", s, u}'; }
f="$1/volbench.dat"
$B rm -f "$f"
t0=$(now)
$B dd if=/dev/zero of="$f" bs=1M count="$2" conv=fsync 2>/dev/null || exit 3
t1=$(now)
$B dd if="$f" of=/dev/null bs=1M 2>/dev/null || exit 4
t2=$(now)
if $B dd if="$f" of=/dev/null bs=1M iflag=direct 2>/dev/null; then
  t3=$(now); direct=$((t3 - t2))
else
  direct=-
fi
$B rm -f "$f"
$B sync
echo "$((t1 - t0)) $((t2 - t1)) $direct"
"""


@dataclass
class Location:
    tool: str
    name: str  # volume | bind | overlay root | host
    argv: list[str]  # runs SCRIPT with the directory and size appended
    directory: str
    write: list[float] = field(default_factory=list)  # seconds
    read: list[float] = field(default_factory=list)
    direct: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name if self.tool == "host" else f"{self.tool} {self.name}"

    def measure(self, size_mb: int) -> None:
        proc = subprocess.run(
            [*self.argv, "sh", "-c", SCRIPT, "volbench", self.directory, str(size_mb)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        if proc.returncode != 0:
            raise BenchError(f"{self.label}: exit {proc.returncode}: {proc.stderr.strip()}")
        fields = proc.stdout.split()
        if len(fields) != 3:
            raise BenchError(f"{self.label}: unexpected output {proc.stdout!r}")
        self.write.append(int(fields[0]) / 1e6)
        self.read.append(int(fields[1]) / 1e6)
        if fields[2] != "-":
            self.direct.append(int(fields[2]) / 1e6)

    def rates(self, size_mb: int) -> dict[str, float | None]:
        size = size_mb * 1024 * 1024 / 1e6  # MB, as dd and docker count them

        def rate(seconds: list[float]) -> float | None:
            return size / statistics.median(seconds) if seconds else None

        return {"write": rate(self.write), "read": rate(self.read), "direct": rate(self.direct)}


class Runtimed:
    name = "runtimed"

    def __init__(self, rootfs: Path) -> None:
        self.daemon = Daemon()
        self.rootfs = rootfs

    def start(self) -> list[Location]:
        d = self.daemon.start()
        d.ok("import", "-c", 'CMD ["/bin/sh"]', str(self.rootfs), IMAGE)
        bind = d.root / "bind"
        bind.mkdir()
        os.chmod(bind, 0o777)
        d.ok("volume", "create", "benchvol")
        d.ok("run", "-d", "--name", "vb", "-v", "benchvol:/vol", "-v", f"{bind}:/bind",
             IMAGE, "sleep", "100000")  # fmt: skip
        d.ok("exec", "vb", "mkdir", "-p", "/work")
        ctl = [str(Path(sys.executable).parent / "runtimectl"), "-H", f"unix://{d.socket}"]
        exec_argv = [*ctl, "exec", "vb", BUSYBOX]
        return [
            Location(self.name, "volume", exec_argv, "/vol"),
            Location(self.name, "bind", exec_argv, "/bind"),
            Location(self.name, "overlay root", exec_argv, "/work"),
        ]

    def detail(self) -> str:
        info = json.loads(self.daemon.ok("info", "--format", "json").stdout)
        return f"runtimed, {info.get('storageDriver')} storage, {info.get('runtime')}"

    @property
    def root(self) -> Path:
        return self.daemon.root

    def cleanup(self) -> None:
        stop_runtimed(self.daemon)


class Podman:
    name = "podman"

    def __init__(self, rootfs: Path) -> None:
        self.env = PodmanEnv()
        self.rootfs = rootfs

    def start(self) -> list[Location]:
        pm = self.env
        pm.start()
        pm.podman("import", "--change", 'CMD ["/bin/sh"]', str(self.rootfs), IMAGE)
        bind = pm.root / "bind"
        bind.mkdir()
        os.chmod(bind, 0o777)
        pm.podman("volume", "create", "benchvol")
        pm.podman("run", "-d", "--name", "vb", "--network", "none", "-v", "benchvol:/vol",
                  "-v", f"{bind}:/bind", IMAGE, "sleep", "100000")  # fmt: skip
        pm.podman("exec", "vb", "mkdir", "-p", "/work")
        exec_argv = ["env", *[f"{k}={v}" for k, v in pm.env.items()], "podman", "exec", "vb"]
        exec_argv.append(BUSYBOX)
        return [
            Location(self.name, "volume", exec_argv, "/vol"),
            Location(self.name, "bind", exec_argv, "/bind"),
            Location(self.name, "overlay root", exec_argv, "/work"),
        ]

    def detail(self) -> str:
        return self.env.detail()

    @property
    def root(self) -> Path:
        return self.env.root

    def cleanup(self) -> None:
        self.env.cleanup()


def _fmt(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "n/a"


def _ratio(value: float | None, host: float | None) -> str:
    return f"{value / host:.2f}" if value is not None and host else "n/a"


def report(locations: list[Location], size_mb: int) -> dict[str, Any]:
    host = locations[0].rates(size_mb)
    rows, doc = [], {}
    for loc in locations:
        rates = loc.rates(size_mb)
        rows.append(
            [
                loc.label,
                _fmt(rates["write"]),
                _ratio(rates["write"], host["write"]),
                _fmt(rates["read"]),
                _ratio(rates["read"], host["read"]),
                _fmt(rates["direct"]),
                _ratio(rates["direct"], host["direct"]),
            ]
        )
        doc[loc.label] = {
            **{f"{k}_mb_s": round(v, 1) if v else None for k, v in rates.items()},
            **{
                f"{k}_vs_host": round(v / host[k], 3) if v and host[k] else None
                for k, v in rates.items()
            },
            "write_s": [round(s, 3) for s in loc.write],
            "read_s": [round(s, 3) for s in loc.read],
            "direct_s": [round(s, 3) for s in loc.direct],
        }
    header = ["location", "write MB/s", "x host", "read MB/s", "x host", "direct MB/s", "x host"]
    print_table(header, rows)
    return doc


def run_bench(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    names = args.tool or ["runtimed", "podman"]
    if "podman" in names and shutil.which("podman") is None:
        print("podman is not installed: measuring runtimed and the host only")
        names = [n for n in names if n != "podman"]
    load = LoadWatch()
    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="rtd-bench-vol-"))
        load.mark(work)
        stack.callback(lambda: subprocess.run(["rm", "-rf", str(work)], check=False))
        rootfs = work / "busybox.tar"
        make_busybox_rootfs(rootfs)
        host_dir = work / "host"
        host_dir.mkdir()
        locations = [Location("host", "host", [BUSYBOX], str(host_dir))]
        tools: list[Runtimed | Podman] = []
        if "runtimed" in names:
            tools.append(Runtimed(rootfs))
        if "podman" in names:
            tools.append(Podman(rootfs))
        for tool in tools:
            stack.callback(tool.cleanup)
            load.mark(tool.root)
            locations += tool.start()
        doc["tools"] = {t.name: t.detail() for t in tools}
        fs = subprocess.run(["df", "-T", str(work)], capture_output=True, text=True).stdout
        doc["filesystem"] = " ".join(fs.splitlines()[-1].split()[:2]) if fs else ""
        print("; ".join(f"{k}: {v}" for k, v in doc["tools"].items()))
        print(f"{args.size_mb} MiB per file, {args.rounds} rounds, on {doc['filesystem']}")
        for round_no in range(args.rounds):
            shift = round_no % len(locations)
            for loc in locations[shift:] + locations[:shift]:
                loc.measure(args.size_mb)
                load.sample("volumes")
        doc["results"] = report(locations, args.size_mb)
        print("  " + load.note("volumes"))
        print("  disk noise shows as spread between rounds: see write_s/read_s in the JSON")
        doc["load_high"] = load.high("volumes")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size-mb", type=int, default=256, help="MiB per file (default 256; 1024 = 1 GiB)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--tool", choices=["runtimed", "podman"], action="append", help="only these (repeatable)"
    )
    args = parser.parse_args(argv)
    if args.size_mb < 1 or args.rounds < 1:
        parser.error("--size-mb and --rounds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    doc: dict[str, Any] = {"bench": "volumes", "size_mib": args.size_mb, "rounds": args.rounds}
    try:
        run_bench(args, doc)
    except (RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        print(f"volume bench failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(doc, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pieces the benchmarks share: a private rootless podman, process bookkeeping, memory
readings, load notes and plain tables.

Everything here runs as the unprivileged bench user. Nothing outside the private
temporary directories a bench creates is touched, and only processes the bench
started are stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.daemon import Daemon, remove_tree
from tests.support.oci import Image

FUSE_OVERLAYFS = "/usr/bin/fuse-overlayfs"
# Generous: a stuck command should fail the bench, not hang it.
COMMAND_TIMEOUT = 600.0
ROOTFS_SCRIPT = Path(__file__).resolve().parent.parent / "deploy" / "make-busybox-rootfs.sh"
# podman refuses a run root longer than this (`container cleanup` then fails silently
# and every `podman run` waits 20 s for an exit code that never lands in its database).
PODMAN_MAX_RUNROOT = 50


def make_busybox_rootfs(tarball: Path) -> None:
    """The busybox root filesystem every bench imports into both tools."""
    subprocess.run(["bash", str(ROOTFS_SCRIPT), str(tarball)], check=True, capture_output=True)


class BenchError(RuntimeError):
    """A measured command or a setup step failed: the numbers would mean nothing."""


def run(
    argv: Sequence[str], env: dict[str, str], what: str, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise BenchError(f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def timed(argv: Sequence[str], env: dict[str, str], what: str) -> tuple[float, str]:
    """Wall-clock seconds of a command that must succeed, and its stdout."""
    start = time.perf_counter()
    proc = subprocess.run(
        list(argv), env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return seconds, proc.stdout


# --- processes --------------------------------------------------------------------


def children_cpu() -> float:
    """CPU seconds of every child process this bench has waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds of a running process, all its threads (fields utime, stime of stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """Children of every thread of `pid` (Go programs such as podman fork from any)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return found


def daemon_pids(daemon: Daemon) -> list[int]:
    """runtimed is two processes: the user's, and its child in the user namespace."""
    assert daemon.proc is not None
    return [daemon.proc.pid, *child_pids(daemon.proc.pid)]


def leftover_pids(marker: str) -> list[int]:
    """Our own processes whose command line mentions `marker` (a private temp path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if entry.stat().st_uid == os.getuid() and marker.encode() in (
                (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            ):
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """True until the process exits (a zombie waiting for init to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running(pid):
        time.sleep(0.05)
    if running(pid):
        os.kill(pid, signal.SIGKILL)


def stop_processes(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            wait_gone(pid)


def stop_runtimed(daemon: Daemon) -> None:
    """Remove the daemon's containers, stop it and its shim launcher, delete its state."""
    daemon.cleanup()
    # Shims of containers the daemon could not remove name our root on their command line.
    stop_processes(leftover_pids(str(daemon.root) + "/"))


# --- memory -----------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    """Resident and proportional set size of a process, in KiB (from smaps_rollup)."""

    rss: int
    pss: int

    def __add__(self, other: Memory) -> Memory:
        return Memory(self.rss + other.rss, self.pss + other.pss)


def memory(pid: int) -> Memory:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        fields[key] = int(value.split()[0])
    return Memory(fields["Rss"], fields["Pss"])


def total_memory(pids: Sequence[int]) -> Memory:
    return sum((memory(p) for p in pids), Memory(0, 0))


def median_memory(readings: Sequence[Memory]) -> Memory:
    return Memory(
        int(statistics.median(m.rss for m in readings)),
        int(statistics.median(m.pss for m in readings)),
    )


def mb(kib: float) -> str:
    return f"{kib / 1024:.1f} MB"


# --- load -------------------------------------------------------------------------


class LoadWatch:
    """Notices other work competing for the CPUs while the bench measures.

    The load average cannot tell: the bench's own containers, shims and daemons are
    runnable too. So each sample counts running tasks that are not ours, where ours
    are this process's descendants and anything whose command line names one of the
    bench's private directories (daemons, shims, conmon and their children), and
    kernel threads (they mostly write back the bench's own files).
    """

    def __init__(self) -> None:
        self.cpus = os.cpu_count() or 1
        self.markers: list[bytes] = []
        self.samples: dict[str, list[int]] = {}
        # section -> command name -> samples it was running in
        self.seen: dict[str, dict[str, int]] = {}
        self.start_load = os.getloadavg()[0]

    def mark(self, path: Path) -> None:
        """Processes whose command line names `path` are the bench's own."""
        self.markers.append(str(path).encode())

    def sample(self, section: str) -> None:
        parents, running = _processes()
        # Kernel threads (children of kthreadd, pid 2) mostly write our own files back.
        ours: dict[int, bool] = {os.getpid(): True, 0: False, 1: False, 2: True}

        def is_ours(pid: int) -> bool:
            chain = []
            while pid not in ours:
                chain.append(pid)
                if any(marker in _cmdline(pid) for marker in self.markers):
                    ours[pid] = True
                    break
                pid = parents.get(pid, 0)
            ours.update(dict.fromkeys(chain, ours[pid]))
            return ours[pid]

        foreign = [name for pid, name in running if not is_ours(pid)]
        self.samples.setdefault(section, []).append(len(foreign))
        seen = self.seen.setdefault(section, {})
        for name in foreign:
            seen[name] = seen.get(name, 0) + 1

    def busy(self, section: str) -> float:
        """Mean number of other tasks running at the samples of `section`."""
        counts = self.samples.get(section, [0])
        return sum(counts) / len(counts)

    def high(self, section: str) -> bool:
        return self.start_load > self.cpus / 2 or self.busy(section) >= self.cpus / 4

    def note(self, section: str) -> str:
        busy = self.busy(section)
        text = (
            f"other work during {section}: {busy:.2f} tasks running on average "
            f"({len(self.samples.get(section, []))} samples, {self.cpus} CPUs; "
            f"load average {self.start_load:.2f} when the bench started)"
        )
        if not self.high(section):
            return text
        top = sorted(self.seen.get(section, {}).items(), key=lambda kv: -kv[1])[:3]
        names = ", ".join(name for name, _ in top) or "unknown"
        return f"LOAD HIGH: {text}; busiest: {names}. Rounds alternate so both tools saw it."


def _processes() -> tuple[dict[int, int], list[tuple[int, str]]]:
    """Parent of every process, and (pid, command name) of every running thread."""
    parents: dict[int, int] = {}
    running: list[tuple[int, str]] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        pid = int(proc.name)
        with contextlib.suppress(OSError, ValueError):
            for task in (proc / "task").iterdir():
                raw = (task / "stat").read_text()
                state, ppid = raw.rsplit(")", 1)[1].split()[:2]
                parents[pid] = int(ppid)
                if state == "R":
                    running.append((pid, raw[raw.index("(") + 1 : raw.rindex(")")]))
    return parents, running


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# --- output -----------------------------------------------------------------------


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        print(indent + line.rstrip())


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `fraction` of them at or below."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


# --- registry benches (pull, push) ----------------------------------------------------


@dataclass
class Round:
    seconds: float  # wall clock of the command
    cpu: float  # CPU seconds the tool's processes spent on it
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class ToolResult:
    name: str
    detail: str
    rounds: list[Round]

    @property
    def times(self) -> list[float]:
        return [r.seconds for r in self.rounds]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def median_cpu(self) -> float:
        return statistics.median(r.cpu for r in self.rounds)


def image_facts(image: Image) -> dict[str, int]:
    return {
        "layers": len(image.layers),
        "compressed_bytes": sum(len(layer.blob) for layer in image.layers),
    }


def ratio(results: list[ToolResult]) -> float:
    by_name = {r.name: r.median for r in results}
    return by_name["runtimed"] / by_name["podman"]


def registry_bench_args(description: str, verb: str, argv: list[str] | None) -> argparse.Namespace:
    """The options of a registry bench; `verb` names its measured command ("pulls")."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=3, help=f"{verb} per tool (default 3)")
    parser.add_argument("--size-mb", type=int, default=100, help="image data in MiB (default 100)")
    parser.add_argument("--layers", type=int, default=5, help="data layers (default 5)")
    parser.add_argument(
        "--podman-storage",
        choices=["auto", "native", "fuse"],
        default="auto",
        help="podman's overlay: native, through fuse-overlayfs, or native if it works (default)",
    )
    parser.add_argument(
        "--tool", choices=["runtimed", "podman"], action="append", help="only these (repeatable)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.size_mb < 1 or args.layers < 1:
        parser.error("--rounds, --size-mb and --layers must be at least 1")
    return args


def print_rounds(results: list[ToolResult], verb: str) -> None:
    """Seconds per round and median per tool, CPU per `verb` ("pull"), and the ratio."""
    rounds = len(results[0].rounds)
    header = ["tool", *(f"round {i + 1}" for i in range(rounds)), "median"]
    rows = [[r.name, *(f"{t:.2f}s" for t in r.times), f"{r.median:.2f}s"] for r in results]
    print_table(header, rows)
    for r in results:
        print(f"  {r.name}: {r.detail}; CPU per {verb} (median) {r.median_cpu:.2f}s")
    if len(results) == 2:
        print(
            f"ratio runtimed/podman (median): {ratio(results):.2f} (lower is better, target <= 1)"
        )


def tool_summaries(results: list[ToolResult]) -> dict[str, object]:
    """Each tool's part of a registry bench's JSON summary, by tool name."""
    return {
        r.name: {
            "detail": r.detail,
            "seconds": [round(t, 3) for t in r.times],
            "median": round(r.median, 3),
            "cpu_median": round(r.median_cpu, 3),
        }
        for r in results
    }


# --- podman -----------------------------------------------------------------------


class PodmanEnv:
    """Rootless podman with every piece of state in a private temporary directory.

    HOME and the XDG directories point there too, so the user's own podman
    storage, configuration and pause process are never touched. `podman info`
    checks that podman really uses our directory before anything is measured.
    """

    def __init__(self, storage: str = "auto", registry_host: str | None = None) -> None:
        # Short names: podman's run root ($XDG_RUNTIME_DIR/containers) must stay under 50 chars.
        self.root = Path(tempfile.mkdtemp(prefix="rtd-bench-pm-"))
        self.runtime_dir = self.root / "xrt"
        runroot = self.runtime_dir / "containers"
        if len(str(runroot)) > PODMAN_MAX_RUNROOT:
            shutil.rmtree(self.root, ignore_errors=True)
            raise BenchError(
                f"podman's run root {runroot} would be longer than {PODMAN_MAX_RUNROOT} "
                "characters, which podman refuses: set TMPDIR to a shorter directory"
            )
        self.registry_host = registry_host
        self.storage = storage  # auto | native | fuse
        self.graph = self.root / "graph"
        self.tmp = self.root / "tmp"
        self.storage_mode = "overlay (native rootless)"
        self.started = False  # podman accepted a storage configuration
        self.env = self._environment()

    def _environment(self) -> dict[str, str]:
        home = self.root / "home"
        for path in (home, self.runtime_dir, self.tmp):
            path.mkdir(mode=0o700)
        return dict(
            os.environ,
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".local/share"),
            XDG_RUNTIME_DIR=str(self.runtime_dir),
            CONTAINERS_STORAGE_CONF=str(self.root / "storage.conf"),
            CONTAINERS_REGISTRIES_CONF=str(self.root / "registries.conf"),
            CONTAINERS_CONF=str(self.root / "containers.conf"),
        )

    def start(self) -> None:
        """Native overlay if podman accepts it here (or as asked), else fuse-overlayfs."""
        registries = ""
        if self.registry_host:
            registries = f'[[registry]]\nlocation = "{self.registry_host}"\ninsecure = true\n'
        (self.root / "registries.conf").write_text(registries)
        # No systemd or journald here: plain cgroupfs, a file for events, k8s-file logs.
        (self.root / "containers.conf").write_text(
            "[containers]\n"
            'log_driver = "k8s-file"\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{self.tmp / "events.log"}"\n'
            f'tmp_dir = "{self.tmp}"\n'
        )
        native_error = "not tried (--podman-storage fuse)"
        if self.storage != "fuse":
            self._write_storage_conf(mount_program=None)
            native_error = self.probe()
            if not native_error:
                self.started = True
                return
            if self.storage == "native":
                raise BenchError(f"podman cannot use native overlay here: {native_error}")
        # c/storage remembers its overlay decision in the graph root: start a fresh one.
        self.graph = self.root / "graph-fuse"
        self.storage_mode = "overlay + fuse-overlayfs"
        self._write_storage_conf(mount_program=FUSE_OVERLAYFS)
        if fuse_error := self.probe():
            raise BenchError(
                f"podman works with neither native overlay ({native_error}) "
                f"nor {FUSE_OVERLAYFS} ({fuse_error})"
            )
        self.started = True

    def _write_storage_conf(self, mount_program: str | None) -> None:
        # Rootless podman ignores graphroot/runroot and reads rootless_storage_path.
        options = f'[storage.options.overlay]\nmount_program = "{mount_program}"\n'
        (self.root / "storage.conf").write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f'graphroot = "{self.graph}"\n'
            f'runroot = "{self.runtime_dir / "containers"}"\n'
            f'rootless_storage_path = "{self.graph}"\n' + (options if mount_program else "")
        )

    def probe(self) -> str:
        """Why podman cannot use this storage configuration ("" if it can)."""
        proc = subprocess.run(
            ["podman", "info", "--format", "{{.Store.GraphRoot}}"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        if proc.returncode == 0 and proc.stdout.strip() != str(self.graph):
            raise BenchError(f"podman would store images in {proc.stdout.strip()}, not our dir")
        return "" if proc.returncode == 0 else proc.stderr.strip() or f"exit {proc.returncode}"

    def podman(
        self, *args: str, what: str = "", timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return run(["podman", *args], self.env, what or f"podman {' '.join(args)}", timeout)

    def version(self) -> str:
        return self.podman("--version").stdout.strip()

    def detail(self) -> str:
        return f"{self.version()}, {self.storage_mode}"

    def pause_pid(self) -> int | None:
        """The catatonit process rootless podman keeps to hold its user namespace."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.tmp / "pause.pid").read_text().strip())
            if is_our_pause_process(pid):
                return pid
        return None

    def cleanup(self) -> None:
        """Remove every container and pod, stop the pause process, remove all state."""
        if self.started:
            for args in (["pod", "rm", "-a", "-f", "-t", "0"], ["rm", "-a", "-f", "-t", "0"]):
                subprocess.run(
                    ["podman", *args], env=self.env, capture_output=True, timeout=COMMAND_TIMEOUT
                )
        # conmon and container processes podman could not stop name our root.
        stop_processes(leftover_pids(str(self.root) + "/"))
        pid = self.pause_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                wait_gone(pid)
        # Layer files belong to our subordinate ids; remove_tree deletes them from a userns.
        remove_tree(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def is_our_pause_process(pid: int) -> bool:
    """catatonit, or podman's own pause process (Debian's podman 4.3: comm "podman pause")."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    uid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))
    # catatonit, or (Debian's podman 4.3, without catatonit) podman's own "podman pause".
    return uid == os.getuid() and (b"catatonit" in cmdline or comm == "podman pause")

"""Long-lived helper processes of the network part: start, detach, find again, stop.

The DNS resolver, the port forwarders and slirp4netns must outlive a daemon
restart (running containers keep using them), so they detach: the helper does
its setup (enter the rootless namespace, take its sockets), then forks; the
parent reports the child's pid on stdout and exits, the child continues in a
session of its own. A setup error is the parent's exit status and stderr, so
the daemon learns of it before anything is left behind.

Each helper watches a lifeline file and exits when it disappears: a daemon
that is gone for good (its run dir removed) leaves no helper behind.

This module is imported by the helpers themselves: standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CLONE_NEWNET = 0x40000000
SPAWN_TIMEOUT = 30.0


class HelperError(RuntimeError):
    """A helper could not start; the message is its own explanation."""


def enter_netns(path: str) -> None:
    """Move this (still single-threaded) process into the network namespace at `path`."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot enter network namespace {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def detach(log_path: str | None = None) -> None:
    """Fork: the parent prints the child's pid and exits 0; the child returns, detached."""
    sys.stdout.flush()
    pid = os.fork()
    if pid:
        os.write(1, f"{pid}\n".encode())
        os._exit(0)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    out = null
    if log_path:
        with contextlib.suppress(OSError):
            out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def lifeline_alive(path: str) -> bool:
    return os.path.exists(path)


def spawn(argv: list[str], *, pass_fds: tuple[int, ...] = ()) -> int:
    """Run a helper that detaches (see `detach`); returns the detached child's pid."""
    try:
        proc = subprocess.run(
            argv, pass_fds=pass_fds, capture_output=True, text=True, timeout=SPAWN_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HelperError(f"{argv[0]}: {exc}") from exc
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise HelperError(lines[-1] if lines else f"{argv[0]} exited {proc.returncode}")
    try:
        return int(proc.stdout.split()[-1])
    except (ValueError, IndexError):
        raise HelperError(f"{argv[0]} did not report its pid: {proc.stdout!r}") from None


def python_module(module: str) -> list[str]:
    """argv that runs one of our helper modules with this interpreter."""
    return [sys.executable, "-m", module]


def alive(pid: int, marker: str) -> bool:
    """`pid` is a live process of ours whose command line contains `marker`."""
    if pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and marker.encode() in cmdline


def stop(pid: int, marker: str, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, a helper that `alive` recognises; anything else is left alone."""
    if not alive(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid, marker):
            return
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _exec_detached(argv: list[str]) -> None:
    """`python -m runtimed.network.helperproc PROGRAM ARGS...`: run a non-Python helper
    (slirp4netns) detached, reporting its pid once it says it is ready.

    An argument `{ready_fd}` is replaced by a pipe the program writes to when
    ready, as slirp4netns --ready-fd does.
    """
    read_end, write_end = os.pipe()
    argv = [a.replace("{ready_fd}", str(write_end)) for a in argv]
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.set_inheritable(write_end, True)
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    os.close(write_end)
    ready = b""
    with contextlib.suppress(OSError):
        ready = os.read(read_end, 1)
    if not ready:
        _reaped, status = os.waitpid(pid, os.WNOHANG)
        sys.stderr.write(f"{argv[0]} exited before it was ready (status {status})\n")
        sys.exit(1)
    print(pid)


if __name__ == "__main__":
    _exec_detached(sys.argv[1:])

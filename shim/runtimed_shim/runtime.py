"""Running the OCI runtime (crun; runc works too) from the shim.

Processes are started with posix_spawn (vfork-fast, no subprocess module,
no threads), with the signals the shim ignores put back to their defaults
so containers do not inherit them.
"""

from __future__ import annotations

import os
import signal

from runtimed_shim.cgroups import joined

_DEFAULT_SIGNALS = (
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGPIPE,
    signal.SIGTERM,
    signal.SIGQUIT,
    signal.SIGCHLD,
    signal.SIGXFSZ,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
_devnull = -1


def devnull() -> int:
    global _devnull
    if _devnull < 0:
        _devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    return _devnull


def spawn(argv: list[str], stdin: int, stdout: int, stderr: int) -> int:
    """Start argv with the given fds as its stdio; returns its pid."""
    fds = (stdin, stdout, stderr)
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)]
    return os.posix_spawnp(
        argv[0], argv, os.environ, file_actions=actions, setsigdef=_DEFAULT_SIGNALS, setsigmask=()
    )


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def error_text(stderr: bytes, code: int) -> str:
    """crun's own message, without its `time=... level=error` decoration if any."""
    text = stderr.decode("utf-8", "replace").strip()
    return text or f"exited with status {code}"


class Runtime:
    """One OCI runtime binary with its state root and global options."""

    __slots__ = ("path", "root", "global_args", "cgroup_procs")

    def __init__(
        self,
        path: str,
        root: str,
        global_args: list[str] | None = None,
        cgroup_procs: list[str] | None = None,
    ) -> None:
        self.path = path
        self.root = root
        if global_args is None:
            # The daemon manages the cgroups (runtimed.cgroups), crun does not: it would
            # also refuse this host's hybrid layout.
            global_args = ["--cgroup-manager=disabled"] if "crun" in os.path.basename(path) else []
        self.global_args = global_args
        self.cgroup_procs = list(cgroup_procs or [])

    def argv(self, *args: str) -> list[str]:
        return [self.path, "--root", self.root, *self.global_args, *args]

    def process_argv(self, *args: str) -> list[str]:
        """argv of a command that starts container processes (create, exec): inside the
        container's cgroups when it has them."""
        return joined(self.argv(*args), self.cgroup_procs)

    def run(self, *args: str) -> tuple[int, str]:
        """Run a short runtime command to completion: (exit code, stderr text)."""
        r, w = os.pipe()
        try:
            pid = spawn(self.argv(*args), devnull(), devnull(), w)
        except OSError:
            os.close(r)
            os.close(w)
            raise
        os.close(w)
        try:
            err = read_all(r)
        finally:
            os.close(r)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return code, (error_text(err, code) if code else "")

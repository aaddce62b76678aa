"""The launcher: one warm interpreter that forks a shim per container.

`python -I -m runtimed_shim.launcher --socket PATH [--pid-file PATH]`

Every shim module is imported here, once, and the heap is frozen out of the
garbage collector's reach before forking, so a shim shares the interpreter's
pages with the launcher (copy-on-write) instead of paying for its own. A
spawn request is one JSON line on a new connection,
`{"op": "spawn", "config": {...}}`; the launcher double-forks (the shim
gets its own session and is nobody's child but init's or a subreaper's), the
shim marks itself child subreaper, runs `crun create` and reports; the
launcher answers `{"ok": true, "shim_pid": N, "pid": N}` or
`{"ok": false, "error": "..."}`. `{"op": "pod_infra", "pid_file": PATH}` forks
the init of a new pid namespace for a pod (runtimed_shim.podinfra), records it
in PATH and answers `{"ok": true, "pid": N}`. `{"op": "ping"}` answers
`{"ok": true, "pid": N}`.

Shims outlive the launcher, and the launcher outlives the daemon that
started it (it is what keeps the daemon's namespaces alive between runs).
It prints `ready` on stdout once it listens.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import sys

from runtimed_shim import podinfra
from runtimed_shim import shim as shim_module
from runtimed_shim.atomicfile import replace_file
from runtimed_shim.host import libc, set_name
from runtimed_shim.loop import Loop
from runtimed_shim.protocol import MAX_REQUEST, bind_unix, connect_unix, encode_line

TYPE_CHECKING = False  # typing costs every shim ~2 MB; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

PR_SET_CHILD_SUBREAPER = 36


class Launcher:
    def __init__(self, path: str) -> None:
        self.path = path
        self.loop = Loop()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.conns: dict[int, socket.socket] = {}
        self.reports: set[int] = set()

    def listen(self) -> None:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connect_unix(probe, self.path)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        else:
            raise SystemExit(f"a launcher already listens on {self.path}")
        finally:
            probe.close()
        bind_unix(self.server, self.path)
        os.chmod(self.path, 0o600)
        self.server.listen(64)
        self.server.setblocking(False)
        self.loop.set_reader(self.server.fileno(), self._accept)

    def serve(self) -> NoReturn:
        while True:
            self.loop.run_once()

    # -- connections -----------------------------------------------------------

    def _accept(self) -> None:
        try:
            conn, _ = self.server.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        fd = conn.fileno()
        self.conns[fd] = conn
        buf = bytearray()

        def readable() -> None:
            try:
                data = conn.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._drop(fd)
                return
            buf.extend(data)
            if b"\n" not in buf:
                if len(buf) > MAX_REQUEST:
                    self._answer(fd, {"ok": False, "error": "request too large"})
                return
            self.loop.set_reader(fd, None)
            self._request(fd, bytes(buf[: buf.index(b"\n")]))

        self.loop.set_reader(fd, readable)

    def _request(self, fd: int, line: bytes) -> None:
        try:
            request = json.loads(line)
            op = request.get("op")
        except (ValueError, AttributeError):
            self._answer(fd, {"ok": False, "error": "bad request: not a JSON object"})
            return
        if op == "ping":
            self._answer(fd, {"ok": True, "pid": os.getpid()})
        elif op == "spawn" and isinstance(request.get("config"), dict):
            config = request["config"]
            self._fork_reporting(fd, lambda report_fd: self._start_shim(config, report_fd))
        elif op == "pod_infra" and isinstance(request.get("pid_file"), str):
            pid_file = request["pid_file"]
            self._fork_reporting(fd, lambda w: podinfra.start(pid_file, w, self._shed))
        else:
            self._answer(fd, {"ok": False, "error": f"unknown op {op!r} (spawn, pod_infra, ping)"})

    def _answer(self, fd: int, answer: dict[str, Any]) -> None:
        conn = self.conns.get(fd)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.setblocking(True)
                conn.settimeout(5.0)
                conn.sendall(encode_line(answer))
        self._drop(fd)

    def _drop(self, fd: int) -> None:
        conn = self.conns.pop(fd, None)
        if conn is not None:
            self.loop.forget(fd)
            conn.close()

    # -- spawning --------------------------------------------------------------

    def _fork_reporting(self, fd: int, body: Callable[[int], NoReturn]) -> None:
        """Run `body(report_fd)` in a forked child; what it writes there answers `fd`."""
        r, w = os.pipe()
        try:
            child = os.fork()
        except OSError as exc:
            os.close(r)
            os.close(w)
            self._answer(fd, {"ok": False, "error": f"cannot fork: {exc.strerror}"})
            return
        if child == 0:
            try:
                os.close(r)
                body(w)
            finally:
                os._exit(1)
        os.close(w)
        self.reports.add(r)
        report = bytearray()

        def readable() -> None:
            try:
                data = os.read(r, 65536)
            except BlockingIOError:
                return
            if data:
                report.extend(data)
                return
            self.loop.forget(r)
            self.reports.discard(r)
            os.close(r)
            # The child has written its report and exits (or has exited): reap it.
            os.waitpid(child, 0)
            try:
                answer = json.loads(report)
            except ValueError:
                answer = {"ok": False, "error": "the launcher's child died before reporting"}
            self._answer(fd, answer)

        self.loop.set_reader(r, readable)

    def _start_shim(self, config: dict[str, Any], report_fd: int) -> NoReturn:
        """In the child: a session of its own, then the shim in a grandchild (init adopts it)."""
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        self._become_shim(config, report_fd)

    def _shed(self, keep_fd: int = -1) -> None:
        """In a forked child: drop every fd of the launcher's but `keep_fd`; stdio to null."""
        self.loop.close()
        self.server.close()
        for conn in self.conns.values():
            conn.close()
        for fd in self.reports:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        os.close(null)
        # Whatever else was inherited (the daemon's fds, if any leaked) goes too.
        if keep_fd < 0:
            os.closerange(3, 1 << 20)
        else:
            os.closerange(3, keep_fd)
            os.closerange(keep_fd + 1, 1 << 20)

    def _become_shim(self, config: dict[str, Any], report_fd: int) -> NoReturn:
        """In the grandchild: shed everything of the launcher's, then be the shim."""
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        set_name("runtimed-shim")
        self._shed(report_fd)
        shim_module.run(config, report_fd)


USAGE = "usage: python -m runtimed_shim.launcher --socket PATH [--pid-file PATH]"


def _parse(argv: list[str]) -> tuple[str, str | None]:
    socket_path, pid_file = "", None
    it = iter(argv)
    for arg in it:
        if arg == "--socket":
            socket_path = next(it, "")
        elif arg == "--pid-file":
            pid_file = next(it, None)
        else:
            raise SystemExit(f"{USAGE}\nunknown argument {arg!r}")
    if not socket_path:
        raise SystemExit(USAGE)
    return socket_path, pid_file


def main(argv: list[str] | None = None) -> NoReturn:
    socket_path, pid_file = _parse(sys.argv[1:] if argv is None else argv)
    set_name("shim-launcher")
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    os.chdir("/")
    launcher = Launcher(socket_path)
    launcher.listen()
    if pid_file:
        replace_file(pid_file, f"{os.getpid()}\n".encode())
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    # The daemon may go away: stdin and stdout must not tie us to it.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    gc.collect()
    gc.freeze()
    launcher.serve()


if __name__ == "__main__":
    main()

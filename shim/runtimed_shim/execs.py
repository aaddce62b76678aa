"""A process started in the running container with `crun exec`.

crun exec (without --detach) waits for the process and exits with its status,
so the exec's exit is the exit of our crun child. Its output goes to the one
client that asked for it, never to the container log (Docker does the same).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal

from runtimed_shim.client import Client
from runtimed_shim.console import ConsoleSocket, set_size
from runtimed_shim.exitfile import exit_code
from runtimed_shim.loop import Loop
from runtimed_shim.procio import ProcessIo
from runtimed_shim.protocol import CLOSE_STDIN, EXIT, RESIZE, STDERR, STDIN, STDOUT, encode_frame
from runtimed_shim.runtime import Runtime, devnull, spawn

EXEC_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ExecError(Exception):
    pass


class ExecSession:
    __slots__ = (
        "exec_id",
        "client",
        "pid",
        "io",
        "console",
        "files",
        "exit_code",
        "pending_size",
    )

    def __init__(
        self,
        loop: Loop,
        runtime: Runtime,
        container_id: str,
        client: Client,
        request: dict,
    ) -> None:
        exec_id = str(request.get("exec_id") or "")
        if not EXEC_ID.fullmatch(exec_id):
            raise ExecError(f"invalid exec_id {exec_id!r}: letters, digits, _ . - (max 64)")
        process = request.get("process")
        if not isinstance(process, dict) or not process.get("args"):
            raise ExecError("exec needs an OCI process object with args")
        tty = bool(request.get("tty"))
        want_stdin = bool(request.get("stdin"))
        self.exec_id = exec_id
        self.client: Client | None = client
        self.exit_code: int | None = None
        self.io = ProcessIo(loop, self._output, self._output_end)
        self.console: ConsoleSocket | None = None
        # A size asked for before crun handed us the pty (clients send one right away).
        self.pending_size: tuple[int, int] | None = None
        base = f"exec-{exec_id}"  # relative to the shim's cwd, its state dir
        if os.path.exists(base + ".json"):
            raise ExecError(f"exec {exec_id} exists already")
        process = dict(process, terminal=tty)
        self.files = [base + ".json", base + ".pid"]
        with open(base + ".json", "w") as f:
            json.dump(process, f)
        args = ["exec", "--process", base + ".json", "--pid-file", base + ".pid"]
        child: list[int] = []  # fds only the child keeps
        try:
            if tty:
                self.console = ConsoleSocket(base + ".sock")
                args += ["--console-socket", base + ".sock"]
                err_r, err_w = os.pipe()
                child.append(err_w)
                stdio = (devnull(), devnull(), err_w)
                self.io.add_output(err_r, STDOUT)
            else:
                out_r, out_w = os.pipe()
                err_r, err_w = os.pipe()
                child += [out_w, err_w]
                stdin = devnull()
                if want_stdin:
                    in_r, in_w = os.pipe()
                    child.append(in_r)
                    self.io.set_stdin(in_w)
                    stdin = in_r
                stdio = (stdin, out_w, err_w)
                self.io.add_output(out_r, STDOUT)
                self.io.add_output(err_r, STDERR)
            self.pid = spawn(runtime.process_argv(*args, container_id), *stdio)
        except BaseException:
            self.io.close()
            self._remove_files()
            raise
        finally:
            for fd in child:
                os.close(fd)
        if self.console is not None:
            loop.set_reader(self.console.fileno(), self._console_ready)
        client.wants = frozenset((STDOUT, STDERR))
        client.stdin = want_stdin
        client.on_close = self._client_gone
        client.start_frames(self._frame)

    # -- events ----------------------------------------------------------------

    def _console_ready(self) -> None:
        console, self.console = self.console, None
        if console is None:
            return
        self.io.loop.forget(console.fileno())
        try:
            master = console.receive(timeout=1.0)
        except OSError:
            return
        finally:
            console.close()
        self.io.set_tty(master)
        if self.pending_size is not None:
            with contextlib.suppress(OSError):
                set_size(master, *self.pending_size)

    def _output(self, kind: int, data: bytes) -> None:
        if self.client is not None:
            self.client.send(encode_frame(kind, data), droppable=True)

    def _output_end(self, _kind: int) -> None:
        pass

    def _frame(self, client: Client, kind: int, payload: bytes) -> None:
        if kind == STDIN and client.stdin:
            self.io.write_stdin(payload)
            if self.io.stdin_full:
                client.pause()
                self.io.paused.append(client.resume)
        elif kind == CLOSE_STDIN:
            self.io.close_stdin()
        elif kind == RESIZE:
            with contextlib.suppress(ValueError, OSError, TypeError, KeyError):
                size = json.loads(payload)
                rows, cols = int(size["rows"]), int(size["cols"])
                if self.io.tty >= 0:
                    set_size(self.io.tty, rows, cols)
                else:
                    self.pending_size = (rows, cols)

    def _client_gone(self, _client: Client) -> None:
        # A detached exec (docker exec -d) keeps running; its output goes nowhere.
        self.client = None
        self.io.close_stdin()

    def kill(self, sig: int) -> None:
        if self.exit_code is not None:
            raise ExecError(f"exec {self.exec_id} has exited")
        try:
            with open(f"exec-{self.exec_id}.pid") as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            os.kill(self.pid, signal.SIGKILL)  # not started yet: stop crun exec itself
            return
        fd = os.pidfd_open(pid)
        try:
            signal.pidfd_send_signal(fd, sig)
        finally:
            os.close(fd)

    def exited(self, status: int) -> None:
        """crun exec was reaped: forward the last output, then the exit code."""
        self.exit_code = exit_code(status)
        if self.console is not None:
            self._console_ready()
        self.io.drain()
        self.io.close()
        if self.client is not None:
            payload = json.dumps({"exit_code": self.exit_code, "exec_id": self.exec_id})
            self.client.send(encode_frame(EXIT, payload.encode()))
            self.client.on_close = None
            self.client.finish()
            self.client = None
        self._remove_files()

    def _remove_files(self) -> None:
        for name in self.files:
            with contextlib.suppress(OSError):
                os.unlink(name)
        if self.console is not None:
            self.io.loop.forget(self.console.fileno())
            self.console.close()
            self.console = None

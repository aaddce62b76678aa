"""The shim proper: one container, from `crun create` to `crun delete`.

It owns the container's stdio (pipes, or the pty master crun sends), writes
every byte of output to the log before offering it to attach clients, reaps
the container's init (we are its subreaper once crun create exits), records
the exit in exit.json, and serves the control socket until `delete`. All of
it runs in one thread around an epoll loop; nothing waits on a client.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import time

from runtimed_shim import cgroups
from runtimed_shim.atomicfile import replace_file
from runtimed_shim.client import Client
from runtimed_shim.console import ConsoleSocket, set_size
from runtimed_shim.execs import ExecError, ExecSession
from runtimed_shim.exitfile import exit_code, oom_kills, reason_for, write_json_atomic
from runtimed_shim.host import descendants, in_namespace, namespace_inode, reaped, remove_tree
from runtimed_shim.logpipe import LogPipeline, LogSetupError, open_pipeline
from runtimed_shim.logs import NoLog
from runtimed_shim.loop import Loop
from runtimed_shim.procio import ProcessIo
from runtimed_shim.protocol import (
    CLOSE_STDIN,
    EXIT,
    MAX_SUN_PATH,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    encode_frame,
)
from runtimed_shim.runtime import Runtime, devnull, error_text, spawn

TYPE_CHECKING = False  # typing costs every shim ~2 MB; annotations are strings
if TYPE_CHECKING:
    from typing import Any, NoReturn

CONTROL_SOCKET = "shim.sock"
CONSOLE_SOCKET = "console.sock"
PID_FILE = "shim.pid"
CONTAINER_PID_FILE = "container.pid"
ERROR_LOG = "shim.log"
MAX_LOGGED_ERRORS = 100  # a bug that repeats must not fill the disk
CREATE_TIMEOUT = 120.0
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}


class ShimError(Exception):
    """A request cannot be honoured; the message goes back to the caller as is."""


def _noop(_signum: int, _frame: object) -> None:
    pass


class Shim:
    def __init__(self, config: dict[str, Any]) -> None:
        try:
            self.id = str(config["id"])
            self.bundle = str(config["bundle"])
            self.state_dir = str(config["state_dir"])
            self.runtime = Runtime(
                str(config["runtime"]),
                str(config["runtime_root"]),
                config.get("runtime_args"),
                config.get("cgroup_procs"),
            )
        except KeyError as exc:
            raise ShimError(f"shim config lacks {exc.args[0]!r}") from None
        self.tty = bool(config.get("tty"))
        self.stdin = bool(config.get("stdin"))
        self.stdin_once = bool(config.get("stdin_once"))
        self.log_config = config.get("log") or {"driver": "none"}
        self.exit_file = str(config.get("exit_file") or os.path.join(self.state_dir, "exit.json"))
        self.cgroup_path: str | None = config.get("cgroup_path")  # its memory cgroup
        self.freezer: str | None = config.get("freezer")  # freezer.state / cgroup.freeze
        # In the host's pid namespace nothing ends the container's other processes when
        # its init exits (in a namespace of its own, the kernel does): they are orphans
        # that come to us, their subreaper, and we end them.
        self.host_pid = bool(config.get("host_pid"))
        # In a pid namespace it shares (a pod's, another container's), the init's orphans
        # go to that namespace's init, not to us: they are found by the container's mount
        # namespace, which only its own processes (and those exec'd into it) are in.
        self.shared_pid = bool(config.get("shared_pid"))
        self.mount_ns = 0
        self.create_timeout = float(config.get("create_timeout") or CREATE_TIMEOUT)

        self.loop = Loop()
        self.io = ProcessIo(self.loop, self._output, self._output_end)
        self.log = LogPipeline(NoLog())
        self.output_paused = False
        self.server: socket.socket | None = None
        self.sig_r = -1
        self.status = "created"
        self.pid = 0
        self.exit_code: int | None = None
        self.started_at: int | None = None
        self.finished_at: int | None = None
        self.reason: str | None = None
        self.oom_before: int | None = None
        self.attached: set[Client] = set()
        self.waiters: set[Client] = set()
        self.execs: dict[int, ExecSession] = {}  # by crun exec pid
        self.exec_ids: dict[str, ExecSession] = {}
        self.deleted = False
        self.errors = 0

    # -- create ----------------------------------------------------------------

    def create(self) -> dict[str, Any]:
        """Run `crun create`; on success the control socket is listening."""
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        # Relative socket names from here stay short whatever the state dir's length.
        os.chdir(self.state_dir)
        self._install_signals()
        self._open_log()
        # crun resolves --pid-file after moving into the bundle: it must be absolute.
        pid_file = os.path.join(self.state_dir, CONTAINER_PID_FILE)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_file)
        console = ConsoleSocket(CONSOLE_SOCKET) if self.tty else None
        try:
            crun, out_r, err_r = self._spawn_create(pid_file, console)
            code = self._wait_create(crun)
            if code != 0:
                # Without a tty crun's stderr is the container's: nothing else wrote to it yet.
                raise ShimError(error_text(_read_ready(err_r), code))
            with open(pid_file) as f:
                self.pid = int(f.read().strip())
            if self.shared_pid:
                self.mount_ns = namespace_inode(self.pid, "mnt")
            if console is not None:
                try:
                    master = console.receive(timeout=10.0)
                except OSError as exc:
                    raise ShimError(f"no terminal came from the runtime: {exc}") from None
                os.close(err_r)  # crun's own stderr: the container writes to the pty
                self.io.set_tty(master)
            else:
                self.io.add_output(out_r, STDOUT)
                self.io.add_output(err_r, STDERR)
            self.oom_before = oom_kills(self.cgroup_path)
            self._listen()
        except BaseException:
            # Half made, or made but unreachable: no container may linger without its shim.
            self.runtime.run("delete", "--force", self.id)
            raise
        finally:
            if console is not None:
                console.close()
        return {"ok": True, "shim_pid": os.getpid(), "pid": self.pid}

    def _open_log(self) -> None:
        try:
            self.log = open_pipeline(self.log_config)
        except LogSetupError as exc:
            raise ShimError(str(exc)) from None
        if self.log.wake_fd >= 0:
            self.loop.set_reader(self.log.wake_fd, self._log_drained)

    def _spawn_create(self, pid_file: str, console: ConsoleSocket | None) -> tuple[int, int, int]:
        """Start crun create with the container's stdio; returns (pid, stdout_r, stderr_r)."""
        args = ["create", "--bundle", self.bundle, "--pid-file", pid_file]
        child: list[int] = []  # ends only crun (and then the container) keeps
        out_r = -1
        try:
            err_r, err_w = os.pipe()
            child.append(err_w)
            if console is not None:
                args += ["--console-socket", self._console_arg()]
                stdio = (devnull(), devnull(), err_w)
            else:
                out_r, out_w = os.pipe()
                child.append(out_w)
                stdin = devnull()
                if self.stdin:
                    in_r, in_w = os.pipe()
                    child.append(in_r)
                    self.io.set_stdin(in_w)
                    stdin = in_r
                stdio = (stdin, out_w, err_w)
            return spawn(self.runtime.process_argv(*args, self.id), *stdio), out_r, err_r
        finally:
            for fd in child:
                os.close(fd)

    def _listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(CONTROL_SOCKET)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(CONTROL_SOCKET)
        os.chmod(CONTROL_SOCKET, 0o600)
        self.server.listen(64)
        self.server.setblocking(False)
        replace_file(PID_FILE, f"{os.getpid()}\n".encode())

    def _console_arg(self) -> str:
        """The console socket as crun create can reach it: absolute if that fits in
        sun_path, else relative to the bundle (crun connects after entering it)."""
        path = os.path.join(self.state_dir, CONSOLE_SOCKET)
        if len(os.fsencode(path)) <= MAX_SUN_PATH:
            return path
        return os.path.relpath(path, self.bundle)

    def _wait_create(self, pid: int) -> int:
        pidfd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([pidfd], [], [], self.create_timeout)
        finally:
            os.close(pidfd)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            self.runtime.run("delete", "--force", self.id)
            raise ShimError(f"the runtime did not create the container in {self.create_timeout:g}s")
        _, status = os.waitpid(pid, 0)
        return exit_code(status)

    def _install_signals(self) -> None:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self.sig_r = r
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        # A handler (not SIG_DFL) so SIGCHLD reaches the wakeup fd.
        signal.signal(signal.SIGCHLD, _noop)
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)

    # -- serve -----------------------------------------------------------------

    def serve(self) -> None:
        """Run until `delete`."""
        assert self.server is not None
        self.loop.set_reader(self.sig_r, self._on_signal)
        self.loop.set_reader(self.server.fileno(), self._accept)
        self._reap()  # anything that ended before the loop ran
        while not self.deleted:
            try:
                self.loop.run_once()
            except Exception:
                self._log_exception()

    def _accept(self) -> None:
        assert self.server is not None
        for _ in range(16):
            try:
                sock, _ = self.server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._log_exception()
                return
            Client(self.loop, sock, self._dispatch)

    def _on_signal(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self.sig_r, 512):
                pass
        self._reap()

    def _reap(self) -> None:
        for pid, status in reaped():
            if pid == self.pid and self.status != "exited":
                self._container_exited(status)
            elif (session := self.execs.pop(pid, None)) is not None:
                self.exec_ids.pop(session.exec_id, None)
                session.exited(status)
            # Anything else is an orphan we adopted as subreaper: reaping is all it needs.

    # -- output ----------------------------------------------------------------

    def _output(self, kind: int, data: bytes) -> None:
        self.log.write(STREAM_NAMES[kind], data)
        if self.log.worker is not None and not self.output_paused and self.log.congested:
            # Blocking mode and the driver is behind: the container waits, we do not.
            self.io.pause_output()
            self.output_paused = True
        if self.attached:
            frame = encode_frame(kind, data)
            for client in list(self.attached):
                if kind in client.wants:
                    client.send(frame, droppable=True)

    def _output_end(self, kind: int) -> None:
        self.log.end(STREAM_NAMES[kind])

    def _log_drained(self) -> None:
        self.log.woken()
        if self.output_paused and not self.log.congested:
            self.output_paused = False
            self.io.resume_output()

    # -- exit ------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "pid": self.pid,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "reason": self.reason,
            **self.log.stats(),
        }

    def _container_processes(self, living: bool = False) -> list[int]:
        """Its init's tree, the init left out; with the host's pid namespace, every process
        below the shim (the init's orphans and exec'd processes end up here)."""
        if self.mount_ns:
            return [pid for pid in in_namespace("mnt", self.mount_ns, living=living)
                    if pid != self.pid]  # fmt: skip
        if not self.host_pid:
            return descendants(self.pid, living=living)
        return [pid for pid in descendants(os.getpid(), living=living) if pid != self.pid]

    def _end_leftovers(self) -> None:
        """The init is gone: SIGKILL what it left, until a look finds nothing new (one may
        have forked while we looked; a killed one forks no more)."""
        killed: set[int] = set()
        while fresh := set(self._container_processes(living=True)) - killed:
            for pid in fresh:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed |= fresh

    def _container_exited(self, status: int) -> None:
        if self.host_pid or self.mount_ns:
            self._end_leftovers()
        self.io.drain()
        for name in STREAM_NAMES.values():
            self.log.end(name)
        self.log.flush()
        self.io.close_stdin()
        self.exit_code = exit_code(status)
        self.finished_at = time.time_ns()
        self.reason = reason_for(self.exit_code, self.oom_before, oom_kills(self.cgroup_path))
        self.status = "exited"
        state = self.state()
        try:
            write_json_atomic(self.exit_file, state)
        except OSError:
            self._log_exception()
        answer = dict(state, ok=True)
        waiters, self.waiters = self.waiters, set()
        for client in waiters:
            client.on_close = None
            client.reply(answer)
            client.finish()
        frame = encode_frame(EXIT, json.dumps(state).encode())
        attached, self.attached = self.attached, set()
        for client in attached:
            client.on_close = None
            client.send(frame)
            client.finish()

    # -- requests --------------------------------------------------------------

    def _dispatch(self, client: Client, request: dict[str, Any]) -> None:
        op = request.get("op")
        handler = getattr(self, f"_op_{op}", None) if isinstance(op, str) else None
        if handler is None:
            client.reply_error(f"unknown op {op!r}")
            return
        try:
            handler(client, request)
        except (ShimError, ExecError) as exc:
            client.reply_error(str(exc))
        except OSError as exc:
            client.reply_error(f"{op}: {exc.strerror or exc}")
        except (ValueError, TypeError, KeyError) as exc:
            client.reply_error(f"bad {op} request: {exc}")

    def _done(self, client: Client, **extra: Any) -> None:
        client.reply({"ok": True, **extra})
        client.finish()

    def _op_state(self, client: Client, _request: dict[str, Any]) -> None:
        self._done(client, **self.state())

    def _op_start(self, client: Client, _request: dict[str, Any]) -> None:
        if self.status != "created":
            raise ShimError(f"container {self.id} is {self.status}: it can only start once")
        code, err = self.runtime.run("start", self.id)
        if code != 0:
            raise ShimError(err)
        if self.status == "created":
            self.status = "running"
            self.started_at = time.time_ns()
        self._done(client)

    def _op_kill(self, client: Client, request: dict[str, Any]) -> None:
        sig = int(request.get("signal") or signal.SIGTERM)
        if not 0 < sig < signal.NSIG:
            raise ShimError(f"invalid signal {sig}")
        if self.status == "exited":
            raise ShimError(f"container {self.id} is not running")
        targets = self._container_processes() if request.get("all") else []
        for pid in [self.pid, *targets]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if self.freezer and cgroups.frozen(self.freezer):
            # A frozen process acts on no signal: thaw, as Docker does to kill a paused one.
            cgroups.freeze(self.freezer, False)
        self._done(client)

    def _op_pause(self, client: Client, _request: dict[str, Any]) -> None:
        self._freeze(True)
        self._done(client)

    def _op_resume(self, client: Client, _request: dict[str, Any]) -> None:
        self._freeze(False)
        self._done(client)

    def _freeze(self, on: bool) -> None:
        """The container's cgroup freezer; without one, the runtime's (which then refuses)."""
        if self.status != "running":
            raise ShimError(f"container {self.id} is not running")
        if self.freezer:
            cgroups.freeze(self.freezer, on)
            return
        command = "pause" if on else "resume"
        code, err = self.runtime.run(command, self.id)
        if code != 0:
            raise ShimError(f"runtime {command} failed: {err}")

    def _op_wait(self, client: Client, _request: dict[str, Any]) -> None:
        if self.status == "exited":
            self._done(client, **self.state())
            return
        self.waiters.add(client)
        client.on_close = self.waiters.discard

    def _op_attach(self, client: Client, request: dict[str, Any]) -> None:
        wants = set()
        if request.get("stdout"):
            wants.add(STDOUT)
        if request.get("stderr"):
            wants.add(STDERR)
        client.wants = frozenset(wants)
        client.stdin = bool(request.get("stdin")) and self.stdin
        client.reply({"ok": True})
        if self.status == "exited":
            client.send(encode_frame(EXIT, json.dumps(self.state()).encode()))
            client.finish()
            return
        self.attached.add(client)
        client.on_close = self._detached
        client.start_frames(self._attach_frame)

    def _attach_frame(self, client: Client, kind: int, payload: bytes) -> None:
        if kind == STDIN:
            if client.stdin:
                self.io.write_stdin(payload)
                if self.io.stdin_full:
                    client.pause()
                    self.io.paused.append(client.resume)
        elif kind == CLOSE_STDIN:
            self._stdin_done(client)
        elif kind == RESIZE and self.io.tty >= 0:
            size = json.loads(payload)
            set_size(self.io.tty, int(size["rows"]), int(size["cols"]))

    def _stdin_done(self, client: Client) -> None:
        # Docker's StdinOnce: the first client's end of input is the container's.
        if client.stdin and self.stdin_once and not self.tty:
            self.io.close_stdin()
        client.stdin = False

    def _detached(self, client: Client) -> None:
        self.attached.discard(client)
        self._stdin_done(client)

    def _op_exec(self, client: Client, request: dict[str, Any]) -> None:
        if self.status != "running":
            raise ShimError(f"container {self.id} is not running")
        if str(request.get("exec_id")) in self.exec_ids:
            raise ShimError(f"exec {request.get('exec_id')} is running already")
        session = ExecSession(self.loop, self.runtime, self.id, client, request)
        self.execs[session.pid] = session
        self.exec_ids[session.exec_id] = session
        client.reply({"ok": True, "exec_id": session.exec_id})

    def _op_kill_exec(self, client: Client, request: dict[str, Any]) -> None:
        session = self.exec_ids.get(str(request.get("exec_id")))
        if session is None:
            raise ShimError(f"no running exec {request.get('exec_id')!r}")
        session.kill(int(request.get("signal") or signal.SIGKILL))
        self._done(client)

    def _op_reopen_log(self, client: Client, _request: dict[str, Any]) -> None:
        self.log.reopen()
        self._done(client)

    def _op_delete(self, client: Client, _request: dict[str, Any]) -> None:
        if self.status == "running":
            raise ShimError(f"container {self.id} is running: stop or kill it before deleting")
        if self.status == "created":
            # Never started: its init waits for `start`; end it here.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            _, status = os.waitpid(self.pid, 0)
            self._container_exited(status)
        code, err = self.runtime.run("delete", self.id)
        if code != 0:
            code, err = self.runtime.run("delete", "--force", self.id)
            if code != 0 and "does not exist" not in err:
                raise ShimError(f"runtime delete failed: {err}")
        self.io.close()
        self.log.close()
        remove_tree(self.state_dir)
        # Answer before going: the caller learns the shim is gone for good.
        sock = client.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setblocking(True)
                sock.sendall(b'{"ok":true}\n')
        client.close()
        self.deleted = True

    # -- diagnostics -----------------------------------------------------------

    def _log_exception(self) -> None:
        self.errors += 1
        if self.errors > MAX_LOGGED_ERRORS:
            return
        import traceback  # only on the error path: keeps every shim smaller

        with contextlib.suppress(OSError), open(ERROR_LOG, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {traceback.format_exc()}\n")


def _read_ready(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def run(config: dict[str, Any], report_fd: int) -> NoReturn:
    """Body of a forked shim: create, report to the launcher through report_fd, serve."""
    shim: Shim | None = None
    try:
        shim = Shim(config)
        report = shim.create()
    except ShimError as exc:
        report = {"ok": False, "error": str(exc)}
    except Exception as exc:
        report = {"ok": False, "error": f"shim failed: {exc!r}"}
    with contextlib.suppress(OSError):
        os.write(report_fd, json.dumps(report).encode())
        os.close(report_fd)
    if not report.get("ok") or shim is None:
        os._exit(1)
    shim.serve()
    os._exit(0)

"""The daemon's side of the shim: start the launcher, spawn shims, talk to them.

Wire format (see runtimed_shim.protocol): one JSON line per request and per
answer on a fresh unix-socket connection; `attach` and `exec` then carry
frames of 1 byte type, 4 bytes big-endian length, payload. The framing is
restated here rather than imported so the daemon does not depend on where
the shim package was installed.

The launcher is started with subprocess.Popen rather than asyncio's
subprocess support on purpose: asyncio kills the child when its transport is
closed, and the launcher must outlive the daemon (it holds the namespaces
between daemon runs; shims outlive both).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from runtimed.errors import FailedPrecondition, InvalidArgument, Unavailable

log = structlog.get_logger(__name__)

STDIN, STDOUT, STDERR, RESIZE, CLOSE_STDIN, EXIT = 0, 1, 2, 3, 4, 5
_HEADER = struct.Struct("!BI")
_MAX_FRAME = 1 << 20
_MAX_SUN_PATH = 107
_LAUNCHER_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from runtimed_shim.launcher import main; main()"
)
READY_TIMEOUT = 15.0
SPAWN_TIMEOUT = 180.0
INFRA_TIMEOUT = 30.0


async def _open(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a unix connection; paths too long for sun_path go through /proc/self/fd."""
    fd = None
    target = str(path)
    if len(os.fsencode(target)) > _MAX_SUN_PATH:
        fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        target = f"/proc/self/fd/{fd}/{path.name}"
    try:
        return await asyncio.open_unix_connection(target, limit=1 << 20)
    finally:
        if fd is not None:
            os.close(fd)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _answer(raw: bytes, what: str) -> dict[str, Any]:
    if not raw:
        raise Unavailable(f"{what} closed the connection without answering")
    try:
        answer = json.loads(raw)
    except ValueError as exc:
        raise Unavailable(f"{what} answered garbage: {exc}") from None
    if not isinstance(answer, dict):
        raise Unavailable(f"{what} answered garbage: {raw[:100]!r}")
    return answer


class AttachStream:
    """Frames of one attach or exec connection.

    `read()` returns (type, payload) with type STDOUT, STDERR or EXIT (the
    payload of EXIT is JSON: the container's state object, or
    {"exit_code", "exec_id"} for an exec), and None at the end of the stream.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        # Told the EXIT payload once it passes by (the exec_die event).
        self.on_exit: Callable[[dict[str, Any]], None] | None = None

    async def read(self) -> tuple[int, bytes] | None:
        try:
            header = await self._reader.readexactly(_HEADER.size)
            kind, size = _HEADER.unpack(header)
            payload = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        if kind == EXIT and self.on_exit is not None:
            notify, self.on_exit = self.on_exit, None
            with contextlib.suppress(ValueError):
                notify(json.loads(payload or b"{}"))
        return kind, payload

    async def _send(self, kind: int, payload: bytes = b"") -> None:
        # After the process has gone the shim hangs up; input then has nowhere to go.
        with contextlib.suppress(ConnectionError):
            self._writer.write(_HEADER.pack(kind, len(payload)) + payload)
            await self._writer.drain()

    async def write_stdin(self, data: bytes) -> None:
        for start in range(0, len(data), _MAX_FRAME):
            await self._send(STDIN, data[start : start + _MAX_FRAME])

    async def close_stdin(self) -> None:
        await self._send(CLOSE_STDIN)

    async def resize(self, rows: int, cols: int) -> None:
        await self._send(RESIZE, json.dumps({"rows": rows, "cols": cols}).encode())

    async def close(self) -> None:
        await _close(self._writer)


class ShimClient:
    """Requests to the shim of one container, found by its state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.socket = self.state_dir / "shim.sock"

    @property
    def _what(self) -> str:
        return f"the shim of container {self.state_dir.name}"

    async def _exchange(
        self, request: dict[str, Any]
    ) -> tuple[dict[str, Any], asyncio.StreamReader, asyncio.StreamWriter]:
        """Send one request, read its answer; the connection stays open for frames."""
        try:
            reader, writer = await _open(self.socket)
        except (FileNotFoundError, ConnectionError) as exc:
            raise Unavailable(f"{self._what} is gone ({exc.strerror or exc})") from None
        try:
            writer.write(_line(request))
            await writer.drain()
            answer = _answer(await reader.readline(), self._what)
            if not answer.get("ok"):
                op = request["op"]
                raise FailedPrecondition(str(answer.get("error") or f"{op} failed in {self._what}"))
        except ConnectionError as exc:
            await _close(writer)
            raise Unavailable(f"{self._what} is gone ({exc.strerror or exc})") from None
        except BaseException:
            await _close(writer)
            raise
        return answer, reader, writer

    async def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        answer, _reader, writer = await self._exchange(request)
        await _close(writer)
        return answer

    async def start(self) -> None:
        await self._call({"op": "start"})

    async def state(self) -> dict[str, Any]:
        """{"status": created|running|exited, "pid", "exit_code", "started_at",
        "finished_at", "reason"} (times in ns since the epoch)."""
        answer = await self._call({"op": "state"})
        answer.pop("ok", None)
        return answer

    async def kill(self, sig: int, all_processes: bool = False) -> None:
        await self._call({"op": "kill", "signal": int(sig), "all": all_processes})

    async def pause(self) -> None:
        """Freeze the container (FailedPrecondition where the runtime cannot)."""
        await self._call({"op": "pause"})

    async def resume(self) -> None:
        await self._call({"op": "resume"})

    async def wait(self) -> dict[str, Any]:
        """The state object, once the container has exited (no timeout: wrap in wait_for)."""
        answer = await self._call({"op": "wait"})
        answer.pop("ok", None)
        return answer

    async def reopen_log(self) -> None:
        await self._call({"op": "reopen_log"})

    async def delete(self) -> None:
        """crun delete, remove the state dir; the shim exits."""
        await self._call({"op": "delete"})

    async def kill_exec(self, exec_id: str, sig: int) -> None:
        await self._call({"op": "kill_exec", "exec_id": exec_id, "signal": int(sig)})

    async def _stream(self, request: dict[str, Any]) -> AttachStream:
        _ok, reader, writer = await self._exchange(request)
        return AttachStream(reader, writer)

    async def attach(self, stdin: bool, stdout: bool, stderr: bool) -> AttachStream:
        return await self._stream(
            {"op": "attach", "stdin": stdin, "stdout": stdout, "stderr": stderr}
        )

    async def exec(
        self, process: dict[str, Any], tty: bool, stdin: bool, exec_id: str | None = None
    ) -> AttachStream:
        """Run `process` (an OCI process object) in the container; frames as in attach,
        the EXIT frame carries {"exit_code", "exec_id"}."""
        exec_id = exec_id or os.urandom(8).hex()
        return await self._stream(
            {"op": "exec", "process": process, "tty": tty, "stdin": stdin, "exec_id": exec_id}
        )


class ShimLauncher:
    """The long-lived process that forks shims (runtimed_shim.launcher).

    Started on first use, or found again if one from an earlier daemon run
    still listens on `socket`. `shim_path` is the folder holding the
    runtimed_shim package (default: where this interpreter finds it).
    `pid_file`, if given, is written by the launcher (the daemon uses it to
    find the process holding its namespaces).
    """

    def __init__(
        self,
        *,
        socket: Path,
        python: str = sys.executable,
        shim_path: Path | None = None,
        pid_file: Path | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.socket = Path(socket)
        self.python = python
        self.shim_path = shim_path
        self.pid_file = pid_file
        self.log_file = log_file or self.socket.with_suffix(".log")
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = asyncio.Lock()

    def command(self) -> list[str]:
        """`python -I -S -c BOOT DIR --socket ...`: no site processing (.pth hooks, editable
        finders) in a process every shim is forked from; the package folder is explicit."""
        args = ["--socket", str(self.socket)]
        if self.pid_file is not None:
            args += ["--pid-file", str(self.pid_file)]
        path = self.shim_path or _package_parent()
        return [self.python, "-I", "-S", "-c", _LAUNCHER_BOOT, str(path), *args]

    async def _request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        reader, writer = await _open(self.socket)
        try:
            writer.write(_line(request))
            await writer.drain()
            raw = await asyncio.wait_for(reader.readline(), timeout)
        finally:
            await _close(writer)
        return _answer(raw, "the shim launcher")

    async def ping(self) -> int | None:
        """The launcher's pid if one answers on the socket."""
        try:
            answer = await self._request({"op": "ping"}, timeout=5.0)
        except (OSError, Unavailable, TimeoutError):
            return None
        return int(answer["pid"]) if answer.get("ok") else None

    async def ensure(self) -> int:
        """Make sure a launcher listens; returns its pid."""
        async with self._lock:
            if self._proc is not None and self._proc.poll() is not None:
                self._proc = None  # reaped: it died
            pid = await self.ping()
            if pid is not None:
                return pid
            self._proc = await asyncio.to_thread(self._start)
            log.info("shim_launcher_started", pid=self._proc.pid, socket=str(self.socket))
            return self._proc.pid

    def _start(self) -> subprocess.Popen[bytes]:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as errors:
            proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                start_new_session=True,
                close_fds=True,
            )
        assert proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        line = b""
        with proc.stdout:
            while not line.endswith(b"\n") and time.monotonic() < deadline:
                ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
                if not ready:
                    break
                chunk = os.read(proc.stdout.fileno(), 64)
                if not chunk:
                    break
                line += chunk
        if line.strip() == b"ready":
            return proc
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise Unavailable(f"the shim launcher did not start: {self._log_tail() or 'no output'}")

    def _log_tail(self) -> str:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 2000))
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    async def spawn(self, config: dict[str, Any]) -> tuple[int, int]:
        """Start a shim for `config` (a ShimConfig) and create the container.

        Returns (shim pid, container pid); crun's own error text comes back as
        FailedPrecondition.
        """
        if not config.get("id"):
            raise InvalidArgument("shim config needs the container id")
        answer = await self._ask({"op": "spawn", "config": config}, SPAWN_TIMEOUT)
        if not answer.get("ok"):
            raise FailedPrecondition(f"OCI runtime create failed: {answer.get('error')}")
        return int(answer["shim_pid"]), int(answer["pid"])

    async def start_pod_infra(self, pid_file: Path) -> int:
        """Fork the init of a new pid namespace for a pod (runtimed_shim.podinfra).

        The launcher records it in `pid_file` before answering; returns its pid.
        """
        answer = await self._ask({"op": "pod_infra", "pid_file": str(pid_file)}, INFRA_TIMEOUT)
        if not answer.get("ok"):
            error = str(answer.get("error") or "the pod infra process failed")
            if "unknown op" in error:  # a launcher kept alive across an upgrade
                error = (
                    "the running shim launcher is from an older runtimed and cannot start a "
                    "pod's infra process; it is replaced when runtimed restarts with no "
                    "container or pod left"
                )
            raise FailedPrecondition(error)
        return int(answer["pid"])

    async def _ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One request to the launcher, started first if need be."""
        for attempt in range(2):
            await self.ensure()
            try:
                return await self._request(request, timeout)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                # Gone between ensure() and connect: nothing was asked yet, so ask again.
                if attempt:
                    raise Unavailable(f"the shim launcher is unreachable: {exc}") from None
            except (OSError, TimeoutError) as exc:
                raise Unavailable(f"the shim launcher failed: {exc}") from None
        raise AssertionError("unreachable")

    async def stop(self) -> None:
        """Stop the launcher (tests, uninstall), also one an earlier run left; shims go on."""
        async with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                proc.terminate()
                await asyncio.to_thread(proc.wait)
                return
            pid = await self.ping()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)


def _package_parent() -> Path:
    """The folder that holds the runtimed_shim package (installed, or this source tree)."""
    spec = importlib.util.find_spec("runtimed_shim")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve().parent
    tree = Path(__file__).resolve().parents[2] / "shim"
    if (tree / "runtimed_shim" / "launcher.py").is_file():
        return tree
    raise FailedPrecondition(
        "the shim package runtimed_shim is not installed: reinstall runtimed (pip install .)"
    )

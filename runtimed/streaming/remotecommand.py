"""exec and attach for a streaming client, whatever carries its channels (SPDY or WebSocket).

The channels are kubelet's: stdin and resize from the client; stdout, stderr
and error to it. The error channel ends every session with its outcome: in the
v4 and v5 protocols a Kubernetes Status object (client-go turns a Failure with
reason NonZeroExitCode into the command's exit code), in v1 to v3 a plain
message, empty on success.

Exec runs through the shim's exec path (as ExecSync does); attach joins the
container's own stdio (as `runtimectl attach` does). A client that hangs up
ends its exec with SIGKILL, as containerd does; an attach just detaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from runtimed.core.containers import ContainerService
from runtimed.core.shim_client import EXIT, STDERR, STDOUT, AttachStream
from runtimed.errors import FailedPrecondition, RuntimedError
from runtimed.streaming.requests import AttachRequest, ExecRequest

log = structlog.get_logger(__name__)

# Stream types, as SPDY clients name them in the streamType header.
STDIN, STDOUT_T, STDERR_T, ERROR, RESIZE = "stdin", "stdout", "stderr", "error", "resize"


class Reader(Protocol):
    async def read(self) -> bytes:
        """The next bytes; b"" at the end."""


class Writer(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


@dataclass
class Channels:
    error: Writer
    stdin: Reader | None = None
    stdout: Writer | None = None
    stderr: Writer | None = None
    resize: Reader | None = None


def wanted(tty: bool, stdin: bool, stdout: bool, stderr: bool, *, resize: bool) -> set[str]:
    """The streams a client opens for these options (stderr is merged into a tty)."""
    kinds = {ERROR}
    if stdin:
        kinds.add(STDIN)
    if stdout:
        kinds.add(STDOUT_T)
    if stderr and not tty:
        kinds.add(STDERR_T)
    if tty and resize:
        kinds.add(RESIZE)
    return kinds


# -- the outcome ------------------------------------------------------------------------


def success() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_failure(code: int) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def internal_error(message: str) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


def encode_status(status: dict[str, Any], structured: bool) -> bytes:
    """What the error channel carries: JSON (v4, v5), or the bare message (v1-v3)."""
    if structured:
        return json.dumps(status, separators=(",", ":")).encode()
    return b"" if status["status"] == "Success" else status["message"].encode()


async def _report(channels: Channels, status: dict[str, Any], structured: bool) -> None:
    for out in (channels.stdout, channels.stderr):
        if out is not None:
            with contextlib.suppress(Exception):
                await out.close()
    with contextlib.suppress(Exception):
        payload = encode_status(status, structured)
        if payload:
            await channels.error.write(payload)
        await channels.error.close()


# -- relaying ---------------------------------------------------------------------------


async def sizes(source: Reader) -> AsyncIterator[tuple[int, int]]:
    """Terminal sizes from a resize channel: JSON objects {"Width", "Height"}, one after
    another (client-go's encoder puts a newline between them; WebSocket sends one a message)."""
    decoder = json.JSONDecoder()
    buf = ""
    while data := await source.read():
        buf += data.decode("utf-8", "replace")
        while buf := buf.lstrip():
            try:
                obj, end = decoder.raw_decode(buf)
            except ValueError:
                break  # incomplete: wait for more
            buf = buf[end:]
            if isinstance(obj, dict):
                with contextlib.suppress(TypeError, ValueError):
                    yield int(obj.get("Width") or 0), int(obj.get("Height") or 0)


async def _pump_in(stream: AttachStream, channels: Channels) -> None:
    if channels.stdin is None:
        return
    while data := await channels.stdin.read():
        await stream.write_stdin(data)
    await stream.close_stdin()


async def _pump_resize(stream: AttachStream, channels: Channels) -> None:
    if channels.resize is None:
        return
    async for width, height in sizes(channels.resize):
        if width > 0 and height > 0:
            await stream.resize(rows=height, cols=width)


async def _pump_out(stream: AttachStream, channels: Channels) -> dict[str, Any] | None:
    """Output to the client until the shim's EXIT frame (returned, decoded), or None if
    the shim hung up without one."""
    while (frame := await stream.read()) is not None:
        kind, data = frame
        target = channels.stdout if kind == STDOUT else channels.stderr if kind == STDERR else None
        if target is not None:
            await target.write(data)
        elif kind == EXIT:
            try:
                return dict(json.loads(data or b"{}"))
            except (ValueError, TypeError):
                return {}
    return None


async def _relay(
    stream: AttachStream, channels: Channels, hangup: asyncio.Event
) -> tuple[dict[str, Any] | None, bool]:
    """Run the three pumps until the output ends or the client hangs up.

    Returns (the EXIT frame's object or None, whether the client hung up first).
    """
    out = asyncio.create_task(_pump_out(stream, channels))
    helpers = [
        asyncio.create_task(_pump_in(stream, channels)),
        asyncio.create_task(_pump_resize(stream, channels)),
    ]
    gone = asyncio.create_task(hangup.wait())
    try:
        await asyncio.wait({out, gone}, return_when=asyncio.FIRST_COMPLETED)
        if hangup.is_set() or not out.done():
            # Gone (its leaving may also have ended stdin, and so the process): nobody
            # is left to tell.
            return None, True
        return out.result(), False
    finally:
        for task in (out, gone, *helpers):
            task.cancel()
        for task in (out, gone, *helpers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await stream.close()


async def serve_exec(
    containers: ContainerService,
    request: ExecRequest,
    channels: Channels,
    *,
    structured: bool,
    hangup: asyncio.Event,
) -> None:
    exec_id = secrets.token_hex(8)
    try:
        stream = await containers.exec(
            request.container_id,
            list(request.cmd),
            tty=request.tty,
            stdin=channels.stdin is not None,
            exec_id=exec_id,
        )
    except RuntimedError as exc:
        await _report(channels, internal_error(f"error executing command: {exc}"), structured)
        return
    log.debug("stream_exec_started", container_id=request.container_id, exec_id=exec_id)
    exit_state, hung_up = await _relay(stream, channels, hangup)
    if hung_up:
        # Nobody is left to read its output or give it input (containerd does the same).
        await containers.kill_exec(request.container_id, exec_id)
        log.debug("stream_exec_abandoned", container_id=request.container_id, exec_id=exec_id)
        return
    if exit_state is None:
        status = internal_error(f"the shim of container {request.container_id} went away")
    else:
        code = int(exit_state.get("exit_code") or 0)
        status = exit_failure(code) if code else success()
    await _report(channels, status, structured)


async def serve_attach(
    containers: ContainerService,
    request: AttachRequest,
    channels: Channels,
    *,
    structured: bool,
    hangup: asyncio.Event,
) -> None:
    try:
        container = containers.get(request.container_id)
        if not container.running:
            raise FailedPrecondition(f"container {container.id} is not running")
        stream = await containers.attach(
            container.id,
            stdin=channels.stdin is not None,
            stdout=channels.stdout is not None,
            stderr=channels.stderr is not None,
        )
    except RuntimedError as exc:
        await _report(channels, internal_error(f"error attaching: {exc}"), structured)
        return
    exit_state, hung_up = await _relay(stream, channels, hangup)
    if hung_up:
        return
    if exit_state is None:
        status = internal_error(f"the shim of container {request.container_id} went away")
    else:
        status = success()  # the container ended; attach reports no exit code (as kubelet)
    await _report(channels, status, structured)

"""Run a command in a running container to its end and collect what it printed.

For CRI's ExecSync and the health checks: one exec through the shim, its output
gathered, killed when it outlives its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runtimed.core.shim_client import EXIT, STDERR, STDOUT
from runtimed.errors import Unavailable

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService


@dataclass
class ExecResult:
    exit_code: int = 0
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    output: bytearray = field(default_factory=bytearray)  # both, in the order they came


async def run_to_exit(
    containers: ContainerService,
    container_id: str,
    args: list[str],
    *,
    timeout: float | None,
    exec_id: str,
) -> ExecResult:
    """The exec's exit code and output; TimeoutError (the process killed) after `timeout`."""
    stream = await containers.exec(container_id, args, exec_id=exec_id)
    result = ExecResult()

    async def pump() -> None:
        while (frame := await stream.read()) is not None:
            kind, data = frame
            if kind in (STDOUT, STDERR):
                (result.stdout if kind == STDOUT else result.stderr).extend(data)
                result.output.extend(data)
            elif kind == EXIT:
                result.exit_code = int(json.loads(data or b"{}").get("exit_code") or 0)
                return
        raise Unavailable(f"the shim of {container_id} went away during exec")

    try:
        await asyncio.wait_for(pump(), timeout)
    except TimeoutError:
        await containers.kill_exec(container_id, exec_id)
        raise
    finally:
        with contextlib.suppress(Exception):
            await stream.close()
    return result

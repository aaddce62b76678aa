"""docker top: the host's `ps`, narrowed to the container's processes (procfs.container_pids)."""

from __future__ import annotations

import asyncio
import shlex

from runtimed.core.model import Container
from runtimed.core.procfs import container_pids
from runtimed.errors import FailedPrecondition, InvalidArgument


async def top(container: Container, ps_args: str) -> tuple[list[str], list[list[str]]]:
    if not container.running or not container.state.pid:
        raise FailedPrecondition(f"container {container.id} is not running")
    args = shlex.split(ps_args)
    proc = await asyncio.create_subprocess_exec(
        "ps", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise InvalidArgument(f"ps {ps_args}: {err.decode().strip()}")
    lines = out.decode().splitlines()
    if not lines:
        return [], []
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument(f"ps {ps_args}: no PID column in its output")
    pid_col = titles.index("PID")
    pids = await asyncio.to_thread(container_pids, container.state.pid, container.config.pid_mode)
    rows = []
    for line in lines[1:]:
        # The last column (the command) may contain spaces.
        fields = line.split(None, len(titles) - 1)
        if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
            rows.append(fields)
    return titles, rows

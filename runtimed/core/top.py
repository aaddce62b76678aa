"""docker top: the host's `ps`, narrowed to the processes of the container's PID namespace."""

from __future__ import annotations

import asyncio
import os
import shlex

from runtimed.core.model import Container
from runtimed.errors import FailedPrecondition, InvalidArgument


def _pid_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def container_pids(init_pid: int) -> set[int]:
    """Every process sharing the init's PID namespace (readable: they are in our userns)."""
    target = _pid_namespace(init_pid)
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if _pid_namespace(int(entry)) == target:
                pids.add(int(entry))
        except OSError:
            continue
    return pids


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
    pids = await asyncio.to_thread(container_pids, container.state.pid)
    rows = []
    for line in lines[1:]:
        # The last column (the command) may contain spaces.
        fields = line.split(None, len(titles) - 1)
        if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
            rows.append(fields)
    return titles, rows

"""docker top: the host's `ps`, narrowed to the processes of the container's PID namespace
(with `--pid host`, to the processes below its shim)."""

from __future__ import annotations

import asyncio
import os
import shlex

from runtimed_shim.host import descendants, parent

from runtimed.core.model import PID_HOST, Container
from runtimed.errors import FailedPrecondition, InvalidArgument


def _pid_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def container_pids(init_pid: int, host_pid: bool = False) -> set[int]:
    """Every process sharing the init's PID namespace (readable: they are in our userns).

    In the host's namespace that would be all of the user's processes: there the
    container's are those below its shim, the init's parent once crun is done, which
    also adopts what the init leaves behind and runs the exec'd processes.
    """
    if host_pid:
        return set(descendants(parent(init_pid), living=True))
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
    host_pid = container.config.pid_mode == PID_HOST
    pids = await asyncio.to_thread(container_pids, container.state.pid, host_pid)
    rows = []
    for line in lines[1:]:
        # The last column (the command) may contain spaces.
        fields = line.split(None, len(titles) - 1)
        if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
            rows.append(fields)
    return titles, rows

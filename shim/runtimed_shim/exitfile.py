"""The exit facts of a process, and writing them so that they survive a crash."""

from __future__ import annotations

import json
import os

from runtimed_shim.atomicfile import replace_file


def write_json_atomic(path: str, obj: object) -> None:
    replace_file(path, json.dumps(obj, separators=(",", ":")).encode() + b"\n")


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + the signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 255


def oom_kills(cgroup_path: str | None) -> int | None:
    """OOM kills the kernel counted in a container's cgroup, None when unknown.

    Cgroups are not managed yet; this is the hook for when the daemon passes
    one: cgroup v2 `memory.events`, v1 `memory.oom_control`.
    """
    if not cgroup_path:
        return None
    for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
        try:
            with open(os.path.join(cgroup_path, name)) as f:
                for line in f:
                    field, _, value = line.partition(" ")
                    if field == key:
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def reason_for(code: int, oom_before: int | None, oom_after: int | None) -> str:
    """Kubernetes' reasons: OOMKilled when the kernel killed anything in the container's
    cgroup for memory (as containerd decides it), else Completed or Error."""
    if oom_after is not None and oom_after > (oom_before or 0):
        return "OOMKilled"
    return "Completed" if code == 0 else "Error"

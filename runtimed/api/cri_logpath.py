"""Where a CRI container's log goes: kubelet's `log_path`, inside the pod's log directory.

kubelet names the file relative to the sandbox's `log_directory`; a path that is
absolute or climbs out with `..` would have the shim create and write a file
anywhere the daemon's user may, so it is refused.
"""

from __future__ import annotations

import os

from runtimed.errors import InvalidArgument


def confined_log_path(log_directory: str, log_path: str) -> str:
    """The log file's absolute path, or "" for no file log (no log_path, or a pod
    without a log directory, as containerd has it)."""
    if not log_path or not log_directory:
        return ""
    if not os.path.isabs(log_directory):
        raise InvalidArgument(f"the pod's log_directory {log_directory!r} is not absolute")
    base = os.path.normpath(log_directory)
    full = os.path.normpath(os.path.join(base, log_path))
    if os.path.isabs(log_path) or os.path.commonpath([base, full]) != base or full == base:
        raise InvalidArgument(
            f"log_path {log_path!r} must name a file inside the pod's log directory {base}"
        )
    return full

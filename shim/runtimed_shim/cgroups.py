"""The container's cgroups, from the shim's side: start processes inside them, freeze.

The daemon makes the cgroups and writes their limits; crun runs with its cgroup
manager disabled. A command that starts container processes (`crun create`,
`crun exec`) is started by a shell that first writes its own pid into every
cgroup.procs of the container, then execs the command: everything it forks is
born inside, before any code of the container runs.
"""

from __future__ import annotations

import os
import time

# sh -c JOIN sh PROCS... -- ARGV...
JOIN = 'while [ "$1" != -- ]; do echo $$ >"$1" || exit 125; shift; done; shift; exec "$@"'
FREEZE_TIMEOUT = 10.0

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def joined(argv: Sequence[str], procs: Sequence[str]) -> list[str]:
    """argv started inside the cgroups whose cgroup.procs files are `procs`."""
    if not procs:
        return list(argv)
    return ["/bin/sh", "-c", JOIN, "sh", *procs, "--", *argv]


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def frozen(path: str) -> bool:
    """Whether the cgroup is frozen: v1 freezer.state, v2 cgroup.freeze."""
    try:
        value = _read(path)
    except OSError:
        return False
    return value in ("FROZEN", "FREEZING", "1")


def freeze(path: str, on: bool) -> None:
    """Freeze or thaw; v1 goes through FREEZING, so wait until every task stopped."""
    v1 = path.endswith("freezer.state")
    _write(path, ("FROZEN" if on else "THAWED") if v1 else ("1" if on else "0"))
    if not (v1 and on):
        return
    deadline = time.monotonic() + FREEZE_TIMEOUT
    while _read(path) != "FROZEN":
        if time.monotonic() > deadline:
            _write(path, "THAWED")
            raise OSError(f"the container did not freeze within {FREEZE_TIMEOUT:g}s")
        _write(path, "FROZEN")  # v1 retries a freeze that raced with a fork this way
        time.sleep(0.01)

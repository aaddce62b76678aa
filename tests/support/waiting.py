"""Waiting for something a test expects to happen soon, with a clear failure."""

from __future__ import annotations

import time
from collections.abc import Callable

from runtimed.network import helperproc


def wait_for(
    predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def ended(pid: int) -> bool:
    """The process is gone (a zombie counts: this machine's init does not reap orphans)."""
    return not helperproc.alive(pid, "")

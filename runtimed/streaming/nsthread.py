"""Sockets made inside another network namespace, for the event loop to use.

A socket belongs to the network namespace it was created in, wherever it is
used afterwards. So a short-lived thread enters the namespace, makes the
sockets and ends: the daemon, root of its user namespace only, could not bring
a thread back to the host's namespace, and a pooled thread must never be left
in a pod's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

from runtimed.network.netns import setns_path

T = TypeVar("T")


async def run_in_netns(
    netns: str, make: Callable[[], T], discard: Callable[[T], None] = lambda _r: None
) -> T:
    """`make()` on a thread of its own inside `netns`; `discard` undoes what it made if
    the caller was cancelled meanwhile."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            if error is None:
                discard(result)  # type: ignore[arg-type]
        elif error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            setns_path(netns)
            result = make()
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
            loop.call_soon_threadsafe(deliver, None, exc)
        else:
            loop.call_soon_threadsafe(deliver, result, None)

    threading.Thread(target=work, name="netns-socket", daemon=True).start()
    return await done

"""Freezing a running container while the daemon reads or writes its files (cp, commit).

Docker pauses the container for `cp` and (by default) `commit`, so what is
read is one consistent state. The shim freezes the container's cgroup
(runtimed_shim.cgroups); without a delegated cgroup it asks crun, which
refuses, and the work goes on unpaused (commit then takes whatever each file
holds when it is read).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import structlog

from runtimed.core.model import Container
from runtimed.errors import FailedPrecondition, Unavailable

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService
    from runtimed.core.shim_client import ShimClient

log = structlog.get_logger(__name__)

# One user at a time works in a paused container: the first one's resume must not
# thaw it under a second.
_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


# Thaws scheduled for cancelled freezes (kept here so they are not collected early).
_thawing: set[asyncio.Future[None]] = set()


async def _thaw_after(pausing: asyncio.Future[None], shim: ShimClient) -> None:
    with contextlib.suppress(Exception):
        await pausing
        await shim.resume()


@contextlib.asynccontextmanager
async def paused(service: ContainerService, container: Container, what: str) -> AsyncIterator[bool]:
    """The container frozen for `what`, where its runtime can freeze it; yields whether it is."""
    if not container.running or container.state.paused:  # a paused one is frozen already
        yield container.state.paused
        return
    lock = _locks.setdefault(container.id, asyncio.Lock())
    async with lock:
        shim = service.shim(container)
        frozen = True
        pausing = asyncio.ensure_future(shim.pause())
        try:
            await asyncio.shield(pausing)
        except asyncio.CancelledError:
            # The client hung up while the shim froze it: thaw it once the freeze is done.
            _thawing.add(thaw := asyncio.ensure_future(_thaw_after(pausing, shim)))
            thaw.add_done_callback(_thawing.discard)
            raise
        except (FailedPrecondition, Unavailable) as exc:
            log.debug(f"{what}_unpaused", container_id=container.id, reason=exc.message)
            frozen = False
        try:
            yield frozen
        finally:
            if frozen:
                try:
                    # Shielded: a client that hangs up cancels the work, never the thaw.
                    await asyncio.shield(shim.resume())
                except (FailedPrecondition, Unavailable) as exc:
                    log.error(f"{what}_resume_failed", container_id=container.id, error=exc.message)

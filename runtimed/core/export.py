"""docker export: a container's whole filesystem (its image and its changes) as one tar.

The snapshot's merged tree is read as the daemon sees it, without the
container's own mounts (volumes, /proc, binds), as docker exports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from runtimed.core.containers import ContainerService
from runtimed.core.model import Container
from runtimed.pipestream import thread_stream
from runtimed.snapshots import diff


async def export_container(service: ContainerService, container: Container) -> AsyncIterator[bytes]:
    root = await asyncio.to_thread(
        service.snapshotter.mount, container.id, service._lowers(container.config.image_id)
    )
    async for data in thread_stream(lambda out: diff.write_tree_tar(root, out)):
        yield data

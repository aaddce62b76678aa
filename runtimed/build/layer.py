"""A build step's new layer: what a snapshot wrote on top of its image, as one layer.

The layer is made the way `commit` makes one (runtimed.snapshots.diff's tar
of the upper directory with docker's whiteouts, unpacked into the layer
store), then recorded as an image on top of the step's parent with
runtimed.images.compose, so built, committed, pulled and loaded images are
one kind of thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtimed.images.compose import NewLayer, layer_from_tar, store_image
from runtimed.snapshots import diff

if TYPE_CHECKING:
    from runtimed.images.service import ImageService
    from runtimed.snapshots import Snapshotter
    from runtimed.store.metadata import ImageRecord


def lowers_of(images: ImageService, image_id: str | None) -> list[Path]:
    """An image's unpacked layers, top-most first (none for scratch)."""
    if image_id is None:
        return []
    record = images.metadata.get_image(image_id)
    if record is None:
        return []
    return [images.layers.path(c) for c in reversed(record.chain_ids)]


async def diff_layer(
    images: ImageService,
    snapshotter: Snapshotter,
    key: str,
    lowers: list[Path],
    ignore: frozenset[tuple[str, ...]] = frozenset(),
) -> NewLayer | None:
    """The snapshot's changes as a registered-to-be layer (None when it changed nothing)."""
    tmp = images.content.new_ingest()
    try:
        if not await asyncio.to_thread(write_diff, snapshotter, key, lowers, ignore, tmp):
            return None
        return await layer_from_tar(images, tmp)
    finally:
        images.content.discard(tmp)


def write_diff(
    snapshotter: Snapshotter,
    key: str,
    lowers: list[Path],
    ignore: frozenset[tuple[str, ...]],
    out_path: Path,
) -> int:
    """The snapshot's diff as a tar at `out_path`; the entries written (0: no changes)."""
    with out_path.open("wb") as out:
        return diff.write_diff_tar(snapshotter, key, lowers, ignore, out)


@contextlib.asynccontextmanager
async def scratch_snapshot(
    snapshotter: Snapshotter, lowers: list[Path]
) -> AsyncIterator[tuple[str, Path]]:
    """A throwaway writable root on an image (COPY, ADD, WORKDIR write into it)."""
    key = f"build-{secrets.token_hex(12)}"
    root = await asyncio.to_thread(snapshotter.mount, key, lowers)
    try:
        yield key, root
    finally:
        await asyncio.to_thread(snapshotter.remove, key)


def record_step(
    images: ImageService,
    doc: dict[str, Any],
    parent: ImageRecord | None,
    layer: NewLayer | None,
) -> str:
    """Store the step's image (untagged, `parent` as its parent); its id."""
    image_id, _ = store_image(
        images,
        config_doc=doc,
        base=parent,
        layer=layer,
        names=[],
        parent=parent.id if parent is not None else None,
    )
    return image_id

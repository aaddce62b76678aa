"""Blobs for layers that have none here, made at push time.

An image loaded from a docker-archive names its layers by their plain tars
(digest = diff_id), and one loaded from an OCI layout or pulled long ago may
name compressed blobs that were never kept. Every such layer still has its
files and tar framing, so its exact tar stream can be rebuilt
(LayerStore.tar_stream). A layer whose blob neither this store nor the target
registry has is gzipped from that stream, once: the layer keeps the new blob,
and the image gets a manifest naming it, which every later push sends
unchanged. That is what docker does for a loaded image too: the pushed
manifest is made on the first push.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import structlog

from runtimed.errors import FailedPrecondition
from runtimed.images import manifest as mt
from runtimed.images.compose import canonical
from runtimed.images.decompress import SNIFF, decompressor
from runtimed.images.localimage import compress_stream
from runtimed.images.service import ImageService
from runtimed.store.metadata import ImageRecord, LayerRecord

log = structlog.get_logger(__name__)


async def complete(
    images: ImageService,
    record: ImageRecord,
    data: bytes,
    doc: mt.ImageManifest,
    elsewhere: Callable[[str], Awaitable[bool]],
) -> tuple[bytes, mt.ImageManifest]:
    """The manifest to push for `record`: `data` itself when every layer's blob is
    stored here or `elsewhere(digest)` (the registry has it, or can mount it)."""
    if len(doc.layers) != len(record.chain_ids):
        return data, doc  # not one blob per layer: nothing here can be rebuilt
    replaced: dict[int, mt.Descriptor] = {}
    for position, desc in enumerate(doc.layers):
        if images.content.has(desc.digest) or await elsewhere(desc.digest):
            continue
        chain = record.chain_ids[position]
        layer = images.metadata.get_layer(chain)
        if layer is None:
            raise FailedPrecondition(f"image {record.id} lost its layer {chain}")
        replaced[position] = await _gzip_blob(images, chain, layer, doc.media_type)
    if not replaced:
        return data, doc
    raw = json.loads(data)
    for position, desc in replaced.items():
        raw["layers"][position] = desc.to_json()
    new_data = canonical(raw)
    digest = images.content.write_bytes(new_data)
    old = record.manifest_digest
    images.metadata.put_image(
        image_id=record.id,
        manifest_digest=digest,
        manifest_media_type=doc.media_type,
        created=record.created,
        size=record.size,
        chain_ids=list(record.chain_ids),
        names=[],
    )
    images._drop_unused_blob(old)
    log.info("image_blobs_made", image_id=record.id, layers=len(replaced), manifest=digest)
    parsed = mt.parse_manifest(new_data, doc.media_type)
    assert isinstance(parsed, mt.ImageManifest)
    return new_data, parsed


async def _gzip_blob(
    images: ImageService, chain: str, layer: LayerRecord, manifest_type: str
) -> mt.Descriptor:
    """The layer's gzip blob: the one it keeps (a pull's), else one made from its tar."""
    gzip_type = mt.DOCKER_LAYER_GZIP if manifest_type == mt.DOCKER_MANIFEST else mt.OCI_LAYER_GZIP
    kept = layer.blob_digest
    if kept and images.content.has(kept):
        with images.content.path(kept).open("rb") as f:
            if decompressor(f.read(SNIFF))[0] == "gzip":
                return mt.Descriptor(gzip_type, kept, images.content.path(kept).stat().st_size)
    made = await asyncio.to_thread(compress_stream, images.content, images.layers.tar_stream(layer))
    images.metadata.set_layer_blob(chain, made.digest, made.size, replacing=kept)
    return mt.Descriptor(gzip_type, made.digest, made.size)

"""Recording an image made here (import, commit): config blob, manifest, new layer, names.

The image is its config; the manifest written beside it lists the base
image's layers as its own manifest had them and the new layer as the gzip blob
made when the layer was (runtimed.images.localimage): writing it then fixes the
manifest's digest for the image's life, so every push sends the same bytes.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtimed.errors import InvalidArgument
from runtimed.images import manifest as mt
from runtimed.images.layers import chain_ids
from runtimed.images.localimage import compress_layer
from runtimed.store.metadata import ImageRecord, LayerRecord

if TYPE_CHECKING:
    from runtimed.images.service import ImageService


@dataclass(frozen=True)
class NewLayer:
    staging: Path  # from LayerStore.unpack
    diff_id: str
    size: int  # bytes of file content
    tar_size: int  # bytes of the uncompressed tar stream
    blob: mt.Descriptor  # the compressed blob, in the content store


async def layer_from_tar(images: ImageService, tar: Path) -> NewLayer:
    """Unpack a layer tarball into staging and gzip it for push, at once (a thread each)."""
    unpacking = asyncio.ensure_future(images.layers.unpack(tar, None))
    compressing = asyncio.ensure_future(asyncio.to_thread(compress_layer, images.content, tar))
    try:
        staging, unpacked = await unpacking
    except BaseException:
        (made,) = await asyncio.gather(compressing, return_exceptions=True)
        if isinstance(made, mt.Descriptor):
            images._drop_unused_blob(made.digest)
        raise
    try:
        blob = await compressing
    except BaseException:
        images.layers.discard(staging)
        raise
    return NewLayer(staging, unpacked.diff_id, unpacked.size, unpacked.tar_size, blob)


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def oci_manifest(config_digest: str, config_size: int, layers: list[dict[str, Any]]) -> bytes:
    """The OCI image manifest naming a config and layer descriptors, as stored here."""
    return canonical(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": layers,
        }
    )


def _base_descriptors(images: ImageService, base: ImageRecord) -> list[dict[str, Any]]:
    """The base image's layer descriptors, from its manifest when that is at hand."""
    if base.manifest_digest and images.content.has(base.manifest_digest):
        try:
            parsed = mt.parse_manifest(images.content.read_bytes(base.manifest_digest))
        except InvalidArgument:
            parsed = None
        if isinstance(parsed, mt.ImageManifest) and len(parsed.layers) == len(base.chain_ids):
            return [d.to_json() for d in parsed.layers]
    out = []
    for chain in base.chain_ids:
        layer = images.metadata.get_layer(chain)
        if layer is None:
            raise InvalidArgument(f"image {base.id} lost its layer {chain}")
        out.append(
            {
                "mediaType": mt.OCI_LAYER if not layer.blob_digest else mt.OCI_LAYER_GZIP,
                "digest": layer.blob_digest or layer.diff_id,
                "size": layer.blob_size or layer.size,
            }
        )
    return out


def store_image(
    images: ImageService,
    *,
    config_doc: dict[str, Any],
    base: ImageRecord | None,
    layer: NewLayer | None,
    names: list[tuple[str, str]],
    parent: str | None = None,
) -> tuple[str, list[str]]:
    """Write config and manifest, register `layer` on top of `base`'s; (image id, names moved).

    `config_doc["rootfs"]["diff_ids"]` must already list the new layer last.
    The staging directory is consumed either way.
    """
    diff_ids = list(config_doc["rootfs"]["diff_ids"])
    chains = chain_ids(diff_ids)
    base_chains = list(base.chain_ids) if base is not None else []
    expected = len(base_chains) + (1 if layer is not None else 0)
    if len(chains) != expected or chains[: len(base_chains)] != base_chains:
        if layer is not None:
            images.layers.discard(layer.staging)
        raise InvalidArgument("image config does not stack on its base image's layers")
    config_bytes = canonical(config_doc)
    image_id = images.content.write_bytes(config_bytes)
    descriptors = _base_descriptors(images, base) if base is not None else []
    size = base.size if base is not None else 0
    if layer is not None:
        blob = layer.blob
        size += layer.size
        chain = chains[-1]
        existing = images.metadata.get_layer(chain)
        if existing is not None:
            images.layers.discard(layer.staging)
            if existing.blob_digest and existing.blob_digest != blob.digest:
                # The same files came from a registry with its own (gzip) blob: name that
                # one, so the manifest's blobs are the layer's and none is left unowned.
                images._drop_unused_blob(blob.digest)
                blob = mt.Descriptor(mt.OCI_LAYER_GZIP, existing.blob_digest, existing.blob_size)
            else:
                images.metadata.set_layer_blob(chain, blob.digest, blob.size)
        else:
            record = LayerRecord(
                chain_id=chain,
                diff_id=layer.diff_id,
                parent=base_chains[-1] if base_chains else None,
                blob_digest=layer.blob.digest,
                blob_size=layer.blob.size,
                size=layer.size,
            )
            images.layers.register(layer.staging, record)
    if layer is not None:
        descriptors.append(blob.to_json())
    manifest_digest = images.content.write_bytes(
        oci_manifest(image_id, len(config_bytes), descriptors)
    )
    moved = images.metadata.put_image(
        image_id=image_id,
        manifest_digest=manifest_digest,
        manifest_media_type=mt.OCI_MANIFEST,
        created=config_doc.get("created"),
        size=size,
        chain_ids=chains,
        names=names,
        parent=parent,
    )
    return image_id, moved

"""docker save: images as one tar, readable as a docker-archive and as an OCI layout.

The layout is Docker 25's: every blob (configs, layer tars, OCI manifests)
under `blobs/sha256/<hex>`, `index.json` and `oci-layout` for OCI readers,
and `manifest.json` plus `repositories` for docker-archive readers. Layers
go out uncompressed, byte for byte the streams their diff_ids name (rebuilt
from what was unpacked, see runtimed.images.tarsplit), so the image ids of
what another tool loads are ours.

Everything is planned (names resolved, sizes known) before the first byte,
so a bad name fails the call cleanly; the tar itself is written by a thread
into a pipe and streamed from there, a megabyte at a time.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import IO

from runtimed.errors import DataLoss, InvalidArgument, NotFound
from runtimed.images import manifest as mt
from runtimed.images.compose import oci_manifest
from runtimed.images.reference import parse_reference
from runtimed.images.service import ImageService
from runtimed.pipestream import thread_stream
from runtimed.store.metadata import ImageRecord, LayerRecord

CHUNK = 1 << 20
_CONTAINERD_NAME = "io.containerd.image.name"
_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass
class _Image:
    record: ImageRecord
    config: bytes
    layers: list[LayerRecord]
    tags: list[str] = field(default_factory=list)  # canonical names
    manifest: bytes = b""


@dataclass
class SavePlan:
    images: list[_Image]
    sizes: dict[str, int]  # diff_id -> tar bytes


def _familiar(name: str) -> str:
    return parse_reference(name).familiar()


def _has_tag(text: str) -> bool:
    last = text.rsplit("/", 1)[-1]
    return ":" in last or "@" in text


def plan_save(images: ImageService, references: list[str]) -> SavePlan:
    """Resolve every name and size every layer; raises before anything is written."""
    if not references:
        raise InvalidArgument("save: at least one image is required")
    by_id: dict[str, _Image] = {}
    for text in references:
        found: list[tuple[ImageRecord, str | None]] = []
        if not _has_tag(text):
            with contextlib.suppress(InvalidArgument):
                ref = parse_reference(text)
                # A bare repository name saves every tag it has, as docker does.
                for record in images.list():
                    found += [(record, t) for t in record.tags if t.rsplit(":", 1)[0] == ref.name]
        if not found:
            record, matched = images._lookup(text)
            tag = matched if matched in record.tags else None
            found = [(record, tag)]
        for record, tag in found:
            entry = by_id.get(record.id)
            if entry is None:
                entry = by_id[record.id] = _Image(record, images.content.read_bytes(record.id), [])
                for chain in record.chain_ids:
                    layer = images.metadata.get_layer(chain)
                    if layer is None:
                        raise NotFound(f"image {record.id} lost its layer {chain}")
                    entry.layers.append(layer)
            if tag and tag not in entry.tags:
                entry.tags.append(tag)
    sizes: dict[str, int] = {}
    for entry in by_id.values():
        for layer in entry.layers:
            if layer.diff_id not in sizes:
                sizes[layer.diff_id] = images.layers.tar_size(layer.chain_id)
        layer_descs = [
            {"mediaType": mt.OCI_LAYER, "digest": layer.diff_id, "size": sizes[layer.diff_id]}
            for layer in entry.layers
        ]
        entry.manifest = oci_manifest(entry.record.id, len(entry.config), layer_descs)
    return SavePlan(list(by_id.values()), sizes)


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


class _TarOut:
    """Tar members written straight to `out`: no copy of a layer's data through tarfile."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def _header(self, name: str, size: int, kind: bytes = tarfile.REGTYPE) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.type = size, kind
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        self.out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def directory(self, name: str) -> None:
        self._header(name, 0, tarfile.DIRTYPE)

    def file(self, name: str, size: int, chunks: Iterator[bytes]) -> None:
        self._header(name, size)
        written = 0
        for chunk in chunks:
            written += len(chunk)
            if written > size:
                raise DataLoss(f"{name} grew while it was written")
            self.out.write(chunk)
        if written != size:
            raise DataLoss(f"{name} has {written} bytes, {size} were announced")
        self.out.write(b"\0" * (-size % tarfile.BLOCKSIZE))

    def data(self, name: str, data: bytes) -> None:
        self.file(name, len(data), iter([data]))

    def close(self) -> None:
        self.out.write(b"\0" * (2 * tarfile.BLOCKSIZE))


def write_archive(images: ImageService, plan: SavePlan, out: IO[bytes]) -> None:
    """The archive for `plan`; blocking, for a thread."""
    tar = _TarOut(out)
    tar.directory("blobs")
    tar.directory("blobs/sha256")
    written: set[str] = set()
    for entry in plan.images:
        for layer in entry.layers:
            if layer.diff_id in written:
                continue
            written.add(layer.diff_id)
            # The rebuilt stream's digest is checked as it ends.
            tar.file(
                _blob_name(layer.diff_id),
                plan.sizes[layer.diff_id],
                images.layers.tar_stream(layer),
            )
        manifest_digest = mt.sha256_digest(entry.manifest)
        for digest, data in ((entry.record.id, entry.config), (manifest_digest, entry.manifest)):
            if digest not in written:
                written.add(digest)
                tar.data(_blob_name(digest), data)
    tar.data("index.json", _index(plan))
    tar.data("manifest.json", _docker_manifest(plan))
    tar.data("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    tar.data("repositories", _repositories(plan))
    tar.close()


def _index(plan: SavePlan) -> bytes:
    manifests = []
    for entry in plan.images:
        desc = {
            "mediaType": mt.OCI_MANIFEST,
            "digest": mt.sha256_digest(entry.manifest),
            "size": len(entry.manifest),
        }
        if not entry.tags:
            manifests.append(desc)
        for tag in entry.tags:
            annotations = {_CONTAINERD_NAME: tag, _REF_NAME: tag.rsplit(":", 1)[1]}
            manifests.append({**desc, "annotations": annotations})
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    return json.dumps(doc, separators=(",", ":")).encode()


def _docker_manifest(plan: SavePlan) -> bytes:
    doc = [
        {
            "Config": _blob_name(entry.record.id),
            "RepoTags": [_familiar(t) for t in entry.tags] or None,
            "Layers": [_blob_name(layer.diff_id) for layer in entry.layers],
        }
        for entry in plan.images
    ]
    return json.dumps(doc, separators=(",", ":")).encode()


def _repositories(plan: SavePlan) -> bytes:
    repos: dict[str, dict[str, str]] = {}
    for entry in plan.images:
        if not entry.layers:
            continue
        top = entry.layers[-1].diff_id.removeprefix("sha256:")
        for tag in entry.tags:
            repo, _, name = _familiar(tag).rpartition(":")
            repos.setdefault(repo, {})[name] = top
    return json.dumps(repos, separators=(",", ":")).encode()


async def stream_archive(images: ImageService, plan: SavePlan) -> AsyncIterator[bytes]:
    """The archive in chunks, written by a thread, so memory stays flat."""
    async for data in thread_stream(lambda out: write_archive(images, plan, out), CHUNK):
        yield data
    for image in plan.images:
        images.announce("save", image.record.id, image.record.id)

"""docker load: images from a docker-archive or an OCI layout tarball.

Archives are hostile input. The stream (gzip, zstd, bzip2, xz or plain) is
decompressed into a spool file; the tar is then only indexed, never
extracted: members are read in place by offset. Member names that climb out
of the archive, links that point outside it or in circles, sizes beyond the
archive's end, oversized JSON, and blobs whose digests do not match their
bytes are refused with INVALID_ARGUMENT. Layers are unpacked by the same
safe unpacker as pulls, into staging directories; only when every image of
the archive has unpacked and verified are layers, configs and names
recorded, so a bad archive leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from runtimed.errors import DataLoss, FailedPrecondition, InvalidArgument
from runtimed.images import manifest as mt
from runtimed.images import tarsplit
from runtimed.images.compose import canonical
from runtimed.images.decompress import ERRORS as DECOMPRESS_ERRORS
from runtimed.images.decompress import Sniffing
from runtimed.images.layers import chain_ids
from runtimed.images.reference import parse_reference
from runtimed.images.service import ImageService, _parse_config
from runtimed.store.metadata import LayerRecord

log = structlog.get_logger(__name__)

MAX_JSON = 16 << 20  # manifests, indexes and configs are kilobytes; more is an attack
MAX_LINK_HOPS = 16
_CHUNK = 1 << 20
_BLOB_NAME = re.compile(r"(?:^|/)(?:blobs/sha256/)?([a-f0-9]{64})(?:\.json|\.tar)?$")
_CONTAINERD_NAME = "io.containerd.image.name"
_REF_NAME = "org.opencontainers.image.ref.name"


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(f"load: {message}")


# -- spooling: any compression in, a plain tar on disk ---------------------------------


async def spool(chunks: AsyncIterator[bytes], path: Path) -> int:
    """Write the decompressed stream to `path`; its size."""
    stream = Sniffing()
    total = 0
    with path.open("wb") as out:

        def write(data: bytes | None) -> int:
            """Decompress `data` (None: the stream's end) and spool what it gives."""
            try:
                plain = stream.end() if data is None else stream.feed(data)
            except DECOMPRESS_ERRORS as exc:
                raise _bad(f"the archive is not valid {stream.kind} data: {exc}") from None
            try:
                out.write(plain)
            except OSError as exc:
                raise FailedPrecondition(
                    f"load: cannot spool the archive: {exc.strerror}"
                ) from None
            return len(plain)

        async for chunk in chunks:
            total += await asyncio.to_thread(write, chunk)
        total += await asyncio.to_thread(write, None)
    if total == 0:
        raise _bad("the archive is empty")
    return total


# -- reading the tar in place ---------------------------------------------------------


def _clean(name: str) -> str:
    if name.startswith("/"):
        raise _bad(f"archive member {name!r} has an absolute path")
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise _bad(f"archive member {name!r} climbs out of the archive")
            parts.pop()
        else:
            parts.append(comp)
    return "/".join(parts)


class _Section:
    """A read-only view of bytes [start, start+size) of a file, hashing what it hands out."""

    def __init__(self, f: Any, start: int, size: int, name: str) -> None:
        self.f = f
        self.start = start
        self.size = size
        self.pos = 0
        self.name = name
        self.hash: Any = None  # hashing costs a pass of sha256: only when asked

    def hashing(self) -> _Section:
        self.hash = hashlib.sha256()
        return self

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.pos
        n = left if n < 0 else min(n, left)
        if n <= 0:
            return b""
        self.f.seek(self.start + self.pos)
        data = self.f.read(n)
        self.pos += len(data)
        if self.hash is not None:
            self.hash.update(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) != (0, 0):
            raise OSError("only rewinding is supported")
        self.pos = 0
        if self.hash is not None:
            self.hash = hashlib.sha256()
        return 0

    def tell(self) -> int:
        return self.pos

    def digest(self) -> str:
        assert self.hash is not None, "open the section with hashing()"
        while self.read(_CHUNK):
            pass
        return "sha256:" + self.hash.hexdigest()


class Archive:
    """The members of a spooled tar, by cleaned name; links resolved inside it."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            with tarfile.open(path, "r:") as tf:
                for member in tf:
                    self._index(member)
        except tarfile.TarError as exc:
            raise _bad(f"the archive is not a valid tar file: {exc}") from None
        self.file = path.open("rb")

    def _index(self, member: tarfile.TarInfo) -> None:
        name = _clean(member.name)
        if not name:
            return
        if name in self.members:
            raise _bad(f"archive member {name!r} appears twice")
        if member.isfile():
            if member.sparse:
                raise _bad(f"archive member {name!r} is a sparse file")
            if member.offset_data + member.size > self.size:
                raise _bad(
                    f"archive member {name!r} claims {member.size} bytes, beyond the end "
                    "of the archive"
                )
        elif not (member.isdir() or member.issym() or member.islnk()):
            raise _bad(
                f"archive member {name!r} is a device or fifo, which image archives never hold"
            )
        self.members[name] = member

    def close(self) -> None:
        self.file.close()

    def has(self, name: str) -> bool:
        """Whether the archive has a member of that name (links are checked when read)."""
        return _clean(name) in self.members

    def _resolve(self, name: str) -> tarfile.TarInfo | None:
        current = _clean(name)
        for _ in range(MAX_LINK_HOPS):
            member = self.members.get(current)
            if member is None:
                return None
            if member.isfile():
                return member
            if member.isdir():
                raise _bad(f"archive member {current!r} is a directory, not a file")
            target = member.linkname
            if member.issym():
                if target.startswith("/"):
                    raise _bad(f"archive member {current!r} is a symlink out of the archive")
                base = current.rsplit("/", 1)[0] if "/" in current else ""
                target = f"{base}/{target}" if base else target
            try:
                current = _clean(target)
            except InvalidArgument:
                raise _bad(f"archive member {current!r} links out of the archive") from None
        raise _bad(f"archive member {name!r}: too many links")

    def open(self, name: str) -> _Section:
        member = self._resolve(name)
        if member is None:
            raise _bad(f"the archive has no {name!r}")
        return _Section(self.file, member.offset_data, member.size, _clean(name))

    def read_json(self, name: str, *, digest: str | None = None) -> tuple[bytes, Any]:
        section = self.open(name)
        if section.size > MAX_JSON:
            raise _bad(f"{name!r} is {section.size} bytes, too large for image metadata")
        data = section.read()
        if digest is not None and mt.sha256_digest(data) != digest:
            raise _bad(f"{name!r} does not match its digest {digest}")
        try:
            return data, json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _bad(f"{name!r} is not valid JSON: {exc}") from None


# -- what the archive holds -----------------------------------------------------------


@dataclass
class _LayerPlan:
    path: str
    diff_id: str
    digest: str | None  # the blob's own digest, checked when it is not the diff_id
    media_type: str = mt.OCI_LAYER
    size: int = 0  # bytes of the member


@dataclass
class _ImagePlan:
    config: bytes
    config_doc: dict[str, Any]
    layers: list[_LayerPlan]
    tags: list[str] = field(default_factory=list)  # canonical NAME:TAG
    manifest: bytes | None = None
    manifest_type: str = mt.OCI_MANIFEST

    @property
    def image_id(self) -> str:
        return mt.sha256_digest(self.config)


def _blob_digest(path: str) -> str | None:
    match = _BLOB_NAME.search(path)
    return f"sha256:{match.group(1)}" if match else None


def _tag_name(text: str) -> str:
    try:
        ref = parse_reference(text)
    except InvalidArgument as exc:
        raise _bad(f"the archive names an image {text!r}: {exc.message}") from None
    if ref.digest:
        raise _bad(f"the archive tags an image with a digest reference {text!r}")
    return f"{ref.name}:{ref.tag}"


def _config(archive: Archive, path: str, digest: str | None) -> tuple[bytes, dict[str, Any]]:
    data, doc = archive.read_json(path, digest=digest)
    if digest is None and (named := _blob_digest(path)) and mt.sha256_digest(data) != named:
        raise _bad(f"image config {path!r} does not match its digest {named}")
    try:
        config = _parse_config(data, mt.sha256_digest(data))
    except InvalidArgument as exc:
        raise _bad(exc.message) from None
    return data, config


def _docker_plans(archive: Archive) -> list[_ImagePlan]:
    _, doc = archive.read_json("manifest.json")
    if not isinstance(doc, list):
        raise _bad("manifest.json must be a list of images")
    plans = []
    for item in doc:
        if not isinstance(item, dict):
            raise _bad("manifest.json lists something that is not an image")
        config_path, layers, tags = item.get("Config"), item.get("Layers"), item.get("RepoTags")
        if not isinstance(config_path, str) or not isinstance(layers, list):
            raise _bad("manifest.json: an image needs Config and Layers")
        if not all(isinstance(x, str) for x in layers):
            raise _bad("manifest.json: Layers must be paths")
        if tags is not None and (
            not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)
        ):
            raise _bad("manifest.json: RepoTags must be a list of names")
        config, config_doc = _config(archive, config_path, None)
        diff_ids = config_doc["rootfs"]["diff_ids"]
        if len(diff_ids) != len(layers):
            raise _bad(
                f"image {config_path!r} has {len(layers)} layers but its config lists "
                f"{len(diff_ids)}"
            )
        plans.append(
            _ImagePlan(
                config=config,
                config_doc=config_doc,
                layers=[
                    _LayerPlan(path, diff_id, _blob_digest(path))
                    for path, diff_id in zip(layers, diff_ids, strict=True)
                ],
                tags=[_tag_name(t) for t in tags or []],
            )
        )
    return plans


def _oci_name(annotations: dict[str, str]) -> str | None:
    name = annotations.get(_CONTAINERD_NAME)
    if name:
        return _tag_name(name)
    ref = annotations.get(_REF_NAME, "")
    # A bare tag ("latest") names no repository: the image loads untagged.
    if "/" in ref or ":" in ref:
        return _tag_name(ref)
    return None


def _oci_plans(archive: Archive) -> list[_ImagePlan]:
    _, layout = archive.read_json("oci-layout") if archive.has("oci-layout") else (b"", {})
    if layout and not isinstance(layout, dict):
        raise _bad("oci-layout is not a JSON object")
    data, _ = archive.read_json("index.json")
    try:
        index = mt.parse_manifest(data, mt.OCI_INDEX, what="index.json")
    except InvalidArgument as exc:
        raise _bad(exc.message) from None
    if not isinstance(index, mt.ImageIndex):
        raise _bad("index.json is not an image index")
    by_id: dict[str, _ImagePlan] = {}
    for desc in index.manifests:
        plan = _oci_image(archive, desc, depth=0)
        if plan is None:
            continue
        existing = by_id.setdefault(plan.image_id, plan)
        name = _oci_name(dict(desc.annotations))
        if name and name not in existing.tags:
            existing.tags.append(name)
    return list(by_id.values())


def _oci_image(archive: Archive, desc: mt.Descriptor, depth: int) -> _ImagePlan | None:
    path = "blobs/" + desc.digest.replace(":", "/")
    data, _ = archive.read_json(path, digest=desc.digest)
    try:
        parsed = mt.parse_manifest(data, desc.media_type, what=path)
    except InvalidArgument as exc:
        raise _bad(exc.message) from None
    if isinstance(parsed, mt.ImageIndex):
        if depth > 2:
            raise _bad(f"{path!r}: indexes nest too deeply")
        return _oci_image(archive, parsed.select(mt.Platform.host(), path), depth + 1)
    if parsed.config.media_type not in mt.CONFIG_MEDIA_TYPES:
        return None  # an artifact (signature, SBOM), not an image
    try:
        parsed.check_is_image(path)
    except InvalidArgument as exc:
        raise _bad(exc.message) from None
    config_path = "blobs/" + parsed.config.digest.replace(":", "/")
    config, config_doc = _config(archive, config_path, parsed.config.digest)
    diff_ids = config_doc["rootfs"]["diff_ids"]
    if len(diff_ids) != len(parsed.layers):
        raise _bad(f"{path!r} lists {len(parsed.layers)} layers but its config {len(diff_ids)}")
    return _ImagePlan(
        config=config,
        config_doc=config_doc,
        layers=[
            _LayerPlan("blobs/" + d.digest.replace(":", "/"), diff_id, d.digest, d.media_type)
            for d, diff_id in zip(parsed.layers, diff_ids, strict=True)
        ],
        manifest=data,
        manifest_type=parsed.media_type,
    )


def read_plans(archive: Archive) -> list[_ImagePlan]:
    if archive.has("manifest.json"):
        plans = _docker_plans(archive)
    elif archive.has("index.json"):
        plans = _oci_plans(archive)
    else:
        raise _bad(
            "the archive is neither a docker-archive (manifest.json) nor an OCI layout (index.json)"
        )
    if not plans:
        raise _bad("the archive holds no image")
    return plans


# -- loading --------------------------------------------------------------------------


@dataclass
class LoadResult:
    images: list[tuple[str, list[str]]]  # (image id, canonical tags)
    replaced: dict[str, str]  # canonical tag -> the image it named before


async def load_archive(images: ImageService, chunks: AsyncIterator[bytes]) -> LoadResult:
    tmp = images.content.new_ingest()
    staged: dict[str, tuple[Path, LayerRecord]] = {}
    archive: Archive | None = None
    try:
        size = await spool(chunks, tmp)
        archive = await asyncio.to_thread(Archive, tmp, size)
        plans = await asyncio.to_thread(read_plans, archive)
        for plan in plans:
            await _unpack_layers(images, archive, plan, staged)
        result = _record(images, plans, staged)
        staged.clear()  # registered now
        return result
    finally:
        if archive is not None:
            archive.close()
        images.content.discard(tmp)
        for path, _ in staged.values():
            images.layers.discard(path)


async def _unpack_layers(
    images: ImageService,
    archive: Archive,
    plan: _ImagePlan,
    staged: dict[str, tuple[Path, LayerRecord]],
) -> None:
    chains = chain_ids([layer.diff_id for layer in plan.layers])
    parent = None
    for layer, chain in zip(plan.layers, chains, strict=True):
        section = archive.open(layer.path)
        if chain in staged or images.layers.has(chain):
            layer.size = _known_tar_size(images, staged, chain, section.size)
            parent = chain
            continue
        blob = layer.digest
        if blob is not None and blob != layer.diff_id:
            section.hashing()  # a compressed blob: its own digest is checked as well
        try:
            staging, result = await images.layers.unpack(section, layer.diff_id)
        except (InvalidArgument, DataLoss) as exc:
            raise _bad(exc.message) from None
        if blob is not None and blob != layer.diff_id:
            actual = section.digest()
            if actual != blob:
                images.layers.discard(staging)
                raise _bad(f"layer {layer.path!r} does not match its digest {blob}")
        compressed = blob is not None and blob != layer.diff_id
        layer.size = result.tar_size
        staged[chain] = (
            staging,
            LayerRecord(
                chain_id=chain,
                diff_id=layer.diff_id,
                parent=parent,
                blob_digest=blob if compressed else None,
                blob_size=section.size,
                size=result.size,
            ),
        )
        parent = chain


def _known_tar_size(
    images: ImageService, staged: dict[str, tuple[Path, LayerRecord]], chain: str, fallback: int
) -> int:
    if chain in staged:
        framing = staged[chain][0]
        with contextlib.suppress(DataLoss, OSError):
            return tarsplit.tar_size(framing / tarsplit.FRAMING_NAME)
        return fallback
    with contextlib.suppress(FailedPrecondition):
        return images.layers.tar_size(chain)
    return fallback


def _record(
    images: ImageService, plans: list[_ImagePlan], staged: dict[str, tuple[Path, LayerRecord]]
) -> LoadResult:
    for path, record in staged.values():  # insertion order: parents before children
        images.layers.register(path, record)
    result = LoadResult([], {})
    for plan in plans:
        image_id = images.content.write_bytes(plan.config)
        chains = chain_ids([layer.diff_id for layer in plan.layers])
        manifest = plan.manifest
        if manifest is None:
            # docker-archive layers are plain tars named by their diff_ids.
            layers = [
                {"mediaType": mt.OCI_LAYER, "digest": layer.diff_id, "size": layer.size}
                for layer in plan.layers
            ]
            manifest = canonical(
                {
                    "schemaVersion": 2,
                    "mediaType": mt.OCI_MANIFEST,
                    "config": {
                        "mediaType": mt.OCI_CONFIG,
                        "digest": image_id,
                        "size": len(plan.config),
                    },
                    "layers": layers,
                }
            )
        manifest_digest = images.content.write_bytes(manifest)
        before = {t: images.metadata.image_for_name(t) for t in plan.tags}
        sizes = [images.metadata.get_layer(c) for c in chains]
        images.metadata.put_image(
            image_id=image_id,
            manifest_digest=manifest_digest,
            manifest_media_type=plan.manifest_type,
            created=plan.config_doc.get("created"),
            size=sum(layer.size for layer in sizes if layer is not None),
            chain_ids=chains,
            names=[(t, "tag") for t in plan.tags],
        )
        for tag, old in before.items():
            if old and old != image_id:
                result.replaced[tag] = old
        result.images.append((image_id, plan.tags))
        log.info("image_loaded", image_id=image_id, tags=plan.tags)
        images.announce("load", image_id, image_id)
    return result


__all__ = ["Archive", "LoadResult", "load_archive", "read_plans", "spool"]

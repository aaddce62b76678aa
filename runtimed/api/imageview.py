"""How images look from the outside: docker's summary and inspect documents, filters."""

from __future__ import annotations

import fnmatch
from typing import Any

from runtimed.errors import InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.images.reference import parse_reference
from runtimed.images.service import ImageService, parse_created
from runtimed.store.metadata import ImageRecord


def familiar(name: str) -> str:
    """docker.io/library/busybox:1.36 -> busybox:1.36 (names we stored are always valid)."""
    return parse_reference(name).familiar()


def _labels(config: dict[str, Any]) -> dict[str, str]:
    return dict((config.get("config") or {}).get("Labels") or {})


def summary(images: ImageService, record: ImageRecord) -> pb.ImageSummary:
    config = images.config(record)
    return pb.ImageSummary(
        id=record.id,
        repo_tags=[familiar(n) for n in record.tags],
        repo_digests=[familiar(n) for n in record.digests],
        created=int(parse_created(record.created)),
        size=record.size,
        labels=_labels(config),
        containers=len(images.containers_using(record.id)),
    )


def inspect(images: ImageService, record: ImageRecord) -> dict[str, Any]:
    """The document `docker image inspect` prints, from our records and the config blob."""
    config = images.config(record)
    layers = [images.metadata.get_layer(c) for c in record.chain_ids]
    return {
        "Id": record.id,
        "RepoTags": [familiar(n) for n in record.tags],
        "RepoDigests": [familiar(n) for n in record.digests],
        "Parent": images.metadata.parent_of(record.id) or "",
        "Comment": (config.get("history") or [{}])[-1].get("comment", ""),
        "Container": config.get("container", ""),
        "Created": record.created or "",
        "DockerVersion": config.get("docker_version", ""),
        "Author": config.get("author", ""),
        "Config": config.get("config") or {},
        "Architecture": config.get("architecture", ""),
        "Variant": config.get("variant", ""),
        "Os": config.get("os", ""),
        "Size": record.size,
        "GraphDriver": {
            "Name": "overlay",
            # Top-most first, as overlayfs's lowerdir= wants them.
            "Data": {
                "LowerDir": ":".join(str(images.layers.path(c)) for c in reversed(record.chain_ids))
            },
        },
        "RootFS": {"Type": "layers", "Layers": list(config["rootfs"]["diff_ids"])},
        "History": config.get("history") or [],
        "Metadata": {"LastTagTime": ""},
        "Descriptor": {
            "mediaType": record.manifest_media_type or "",
            "digest": record.manifest_digest or "",
        },
        "Layers": [
            {
                "ChainID": layer.chain_id,
                "DiffID": layer.diff_id,
                "Size": layer.size,
                "BlobDigest": layer.blob_digest or "",
            }
            for layer in layers
            if layer is not None
        ],
    }


def _matches_reference(record: ImageRecord, pattern: str) -> bool:
    """docker images --filter reference=PATTERN (and the positional NAME[:TAG])."""
    for name in record.tags:
        short = familiar(name)
        repo, _, tag = short.rpartition(":")
        candidates = (short, name)
        if ":" not in pattern:
            candidates = (repo, name.rpartition(":")[0])
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            return True
        if ":" in pattern and fnmatch.fnmatchcase(short, pattern) and tag:
            return True
    return False


def filter_images(
    images: ImageService,
    records: list[ImageRecord],
    filters: dict[str, str],
    reference: str,
    *,
    intermediate: bool = True,
) -> list[ImageRecord]:
    """docker images: untagged parents of other images only with -a (`intermediate`)."""
    allowed = {"dangling", "reference", "label", "before", "since"}
    unknown = set(filters) - allowed
    if unknown:
        raise InvalidArgument(f"invalid filter {sorted(unknown)[0]!r}")
    out = []
    before = images.resolve(filters["before"]) if "before" in filters else None
    since = images.resolve(filters["since"]) if "since" in filters else None
    dangling = filters.get("dangling")
    if dangling not in (None, "true", "false", "1", "0"):
        raise InvalidArgument(f"invalid filter 'dangling={dangling}': want true or false")
    for record in records:
        untagged_parent = not record.tags and bool(images.metadata.children_of(record.id))
        if untagged_parent and not intermediate:
            continue
        is_dangling = not record.tags and not untagged_parent
        if dangling is not None and is_dangling != (dangling in ("true", "1")):
            continue
        if reference and not _matches_reference(record, reference):
            continue
        if "reference" in filters and not _matches_reference(record, filters["reference"]):
            continue
        if "label" in filters:
            key, sep, value = filters["label"].partition("=")
            labels = _labels(images.config(record))
            if key not in labels or (sep and labels[key] != value):
                continue
        if before is not None and record.added_at >= before.added_at:
            continue
        if since is not None and record.added_at <= since.added_at:
            continue
        out.append(record)
    return out

"""What images, containers, volumes and the build cache hold on disk (docker system df),
as plain records any front end shows: the Engine API's SystemDf, the Docker API's
/system/df.

Image sizes are the unpacked layers; a layer two images share counts once in
layers_size and is each image's shared size. A container's size is its writable
layer (apparent bytes, docker's SizeRw). The build cache is the step images builds
keep (runtimed.build): each one's own layer.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runtimed.images.service import parse_created
from runtimed.volumes.plan import volume_names

if TYPE_CHECKING:
    from runtimed.core.model import Container
    from runtimed.services import Runtime
    from runtimed.snapshots import Snapshotter
    from runtimed.store.metadata import ImageRecord
    from runtimed.volumes.service import VolumeView

# What a caller may ask for (docker's `type` filter of /system/df).
KINDS = ("image", "container", "volume", "build-cache")


@dataclass(frozen=True)
class ImageUsage:
    record: ImageRecord
    shared_size: int  # bytes of its layers that another listed image uses too


@dataclass(frozen=True)
class ContainerUsage:
    container: Container
    size_rw: int  # apparent bytes of its writable layer
    local_volumes: int


@dataclass(frozen=True)
class VolumeUsage:
    view: VolumeView
    size: int  # -1: not ours to measure (a plugin's volume)


@dataclass(frozen=True)
class BuildCacheUsage:
    id: str  # the step image's id without "sha256:"
    size: int
    created: int  # seconds since the epoch
    in_use: bool
    shared: bool  # an image the list shows has its layer too


@dataclass
class DiskUsage:
    layers_size: int = 0
    images: list[ImageUsage] = field(default_factory=list)
    containers: list[ContainerUsage] = field(default_factory=list)
    volumes: list[VolumeUsage] = field(default_factory=list)
    build_cache: list[BuildCacheUsage] = field(default_factory=list)


def layer_sizes(snapshotter: Snapshotter, container_ids: list[str]) -> dict[str, int]:
    """Blocking. Apparent bytes of each container's writable layer (0: none left)."""
    sizes = {}
    for ident in container_ids:
        try:
            sizes[ident] = snapshotter.usage(ident).bytes
        except OSError:
            sizes[ident] = 0
    return sizes


def _images(rt: Runtime, hidden: set[str]) -> tuple[dict[str, int], list[ImageUsage]]:
    """Blocking. The size of each layer the listed images use, and the images."""
    images = rt.images
    records = [r for r in images.list() if r.id not in hidden]
    sizes: dict[str, int] = {}
    users: Counter[str] = Counter()
    for record in records:
        for chain in record.chain_ids:
            if chain not in sizes:
                layer = images.metadata.get_layer(chain)
                sizes[chain] = layer.size if layer is not None else 0
            users[chain] += 1
    found = [
        ImageUsage(r, sum(sizes[c] for c in set(r.chain_ids) if users[c] > 1)) for r in records
    ]
    return sizes, found


def _containers(rt: Runtime) -> list[ContainerUsage]:
    """Blocking. Newest first, as docker lists them."""
    listed = sorted(rt.containers.list(), key=lambda c: c.created_at, reverse=True)
    sizes = layer_sizes(rt.snapshotter, [c.id for c in listed])
    return [ContainerUsage(c, sizes[c.id], len(volume_names(c.config.extras))) for c in listed]


async def _volumes(rt: Runtime) -> list[VolumeUsage]:
    views, _warnings = await rt.volumes.list()
    return [VolumeUsage(v, await rt.volumes.size(v.record) if v.managed else -1) for v in views]


def _build_cache(rt: Runtime, hidden: set[str], listed: set[str]) -> list[BuildCacheUsage]:
    """Blocking. Step images; shared: an image `images` lists has its layer too."""
    images = rt.images
    found = []
    for image_id in sorted(hidden):
        record = images.metadata.get_image(image_id)
        if record is None:
            continue
        found.append(
            BuildCacheUsage(
                id=image_id.removeprefix("sha256:"),
                size=rt.builds.own_size(image_id),
                created=int(parse_created(record.created)) or int(record.added_at),
                in_use=bool(images.containers_using(image_id)),
                shared=bool(record.chain_ids) and record.chain_ids[-1] in listed,
            )
        )
    return found


async def disk_usage(rt: Runtime, kinds: frozenset[str] = frozenset(KINDS)) -> DiskUsage:
    """What the `kinds` asked for hold; the layers are measured for images and the
    build cache (which tells its shared layers by them)."""
    usage = DiskUsage()
    hidden = rt.builds.hidden_images()
    layers: dict[str, int] = {}
    if kinds & {"image", "build-cache"}:
        layers, images = await asyncio.to_thread(_images, rt, hidden)
        if "image" in kinds:
            usage.layers_size = sum(layers.values())
            usage.images = images
    if "container" in kinds:
        usage.containers = await asyncio.to_thread(_containers, rt)
    if "volume" in kinds:
        usage.volumes = await _volumes(rt)
    if "build-cache" in kinds:
        usage.build_cache = await asyncio.to_thread(_build_cache, rt, hidden, set(layers))
    return usage

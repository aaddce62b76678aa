"""docker system df over runtimed.v1.Engine: what images, containers, volumes and the
build cache hold on disk, with what the client needs to tell active from reclaimable.

Image sizes are the unpacked layers; a layer two images share counts once in
layers_size and is each image's shared size. A container's size is its writable
layer (apparent bytes, docker's SizeRw). The build cache is the step images builds
keep (runtimed.build): each one's own layer.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any

from runtimed.api import containerview, imageview
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.images.service import parse_created
from runtimed.volumes.plan import volume_names

if TYPE_CHECKING:
    from runtimed.services import Runtime
    from runtimed.snapshots import Snapshotter


def layer_sizes(snapshotter: Snapshotter, container_ids: list[str]) -> dict[str, int]:
    """Blocking. Apparent bytes of each container's writable layer (0: none left)."""
    sizes = {}
    for ident in container_ids:
        try:
            sizes[ident] = snapshotter.usage(ident).bytes
        except OSError:
            sizes[ident] = 0
    return sizes


class DfRpcs:
    rt: Runtime

    def _df_images(self, hidden: set[str]) -> tuple[dict[str, int], list[pb.DfImage]]:
        """The size of each layer the listed images use, and the images."""
        images = self.rt.images
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
            pb.DfImage(
                image=imageview.summary(images, r),
                shared_size=sum(sizes[c] for c in set(r.chain_ids) if users[c] > 1),
            )
            for r in records
        ]
        return sizes, found

    def _df_containers(self) -> list[pb.DfContainer]:
        found = []
        listed = sorted(self.rt.containers.list(), key=lambda c: c.created_at, reverse=True)
        sizes = layer_sizes(self.rt.snapshotter, [c.id for c in listed])
        for c in listed:
            summary = containerview.summary(self.rt.containers, c)
            summary.size_rw = sizes[c.id]
            found.append(
                pb.DfContainer(container=summary, local_volumes=len(volume_names(c.config.extras)))
            )
        return found

    async def _df_volumes(self) -> list[pb.DfVolume]:
        views, _warnings = await self.rt.volumes.list()
        return [
            pb.DfVolume(
                name=v.record.name,
                driver=v.record.driver,
                size=await self.rt.volumes.size(v.record) if v.managed else -1,
                links=len(v.used_by),
                anonymous=v.record.anonymous,
            )
            for v in views
        ]

    def _df_build_cache(self, hidden: set[str], listed: set[str]) -> list[pb.DfBuildCache]:
        """Step images; shared: an image `images` lists has its layer too."""
        images = self.rt.images
        found = []
        for image_id in sorted(hidden):
            record = images.metadata.get_image(image_id)
            if record is None:
                continue
            created = int(parse_created(record.created)) or int(record.added_at)
            found.append(
                pb.DfBuildCache(
                    id=image_id.removeprefix("sha256:"),
                    type="regular",
                    size=self.rt.builds.own_size(image_id),
                    created=created,
                    last_used=created,
                    usage_count=1,
                    in_use=bool(images.containers_using(image_id)),
                    shared=bool(record.chain_ids) and record.chain_ids[-1] in listed,
                )
            )
        return found

    async def SystemDf(self, request: pb.SystemDfRequest, context: Any) -> pb.SystemDfResponse:
        hidden = self.rt.builds.hidden_images()
        layers, images = await asyncio.to_thread(self._df_images, hidden)
        return pb.SystemDfResponse(
            layers_size=sum(layers.values()),
            images=images,
            containers=await asyncio.to_thread(self._df_containers),
            volumes=await self._df_volumes(),
            build_cache=await asyncio.to_thread(self._df_build_cache, hidden, set(layers)),
        )

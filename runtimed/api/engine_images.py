"""Image making and moving in runtimed.v1.Engine: commit, diff, export, history, save, load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from runtimed.api import imageview
from runtimed.build.commit import commit, mount_points
from runtimed.core.export import export_container
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.images.history import image_history
from runtimed.images.load import load_archive
from runtimed.images.save import plan_save, stream_archive
from runtimed.snapshots import diff

if TYPE_CHECKING:
    from runtimed.services import Runtime


class ImageMakingRpcs:
    rt: Runtime

    async def CommitContainer(
        self, request: pb.CommitContainerRequest, context: Any
    ) -> pb.CommitContainerResponse:
        result = await commit(
            self.rt.containers,
            request.container,
            reference=request.reference,
            author=request.author,
            comment=request.comment,
            changes=list(request.changes),
            pause=request.pause,
        )
        return pb.CommitContainerResponse(image_id=result.image_id, paused=result.paused)

    async def ContainerChanges(
        self, request: pb.ContainerRef, context: Any
    ) -> pb.ContainerChangesResponse:
        containers = self.rt.containers
        container = containers.get(request.id)
        lowers = containers._lowers(container.config.image_id)
        found = await asyncio.to_thread(
            diff.changes,
            containers.snapshotter,
            container.id,
            lowers,
            mount_points(containers, container),
        )
        return pb.ContainerChangesResponse(
            changes=[pb.FileChange(path=c.path, kind=c.kind) for c in found]
        )

    async def ExportContainer(
        self, request: pb.ContainerRef, context: Any
    ) -> AsyncIterator[pb.DataChunk]:
        container = self.rt.containers.get(request.id)
        async for data in export_container(self.rt.containers, container):
            yield pb.DataChunk(data=data)

    async def ImageHistory(
        self, request: pb.ImageHistoryRequest, context: Any
    ) -> pb.ImageHistoryResponse:
        record = self.rt.images.resolve(request.reference)
        rows = image_history(self.rt.images, record)
        return pb.ImageHistoryResponse(
            items=[
                pb.HistoryItem(
                    id=row.id,
                    created=int(row.created),
                    created_by=row.created_by,
                    size=row.size,
                    comment=row.comment,
                    tags=[imageview.familiar(t) for t in row.tags],
                )
                for row in rows
            ]
        )

    async def SaveImages(
        self, request: pb.SaveImagesRequest, context: Any
    ) -> AsyncIterator[pb.DataChunk]:
        plan = await asyncio.to_thread(plan_save, self.rt.images, list(request.references))
        async for data in stream_archive(self.rt.images, plan):
            yield pb.DataChunk(data=data)

    async def LoadImages(
        self, request_iterator: AsyncIterator[pb.DataChunk], context: Any
    ) -> pb.LoadImagesResponse:
        async def data() -> AsyncIterator[bytes]:
            async for chunk in request_iterator:
                yield chunk.data

        result = await load_archive(self.rt.images, data())
        return pb.LoadImagesResponse(
            images=[
                pb.LoadedImage(image_id=image_id, tags=[imageview.familiar(t) for t in tags])
                for image_id, tags in result.images
            ],
            replaced={imageview.familiar(k): v for k, v in result.replaced.items()},
        )

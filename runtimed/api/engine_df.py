"""docker system df over runtimed.v1.Engine: core/diskusage's records as the API's
messages (what images, containers, volumes and the build cache hold on disk)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtimed.api import containerview, imageview
from runtimed.core.diskusage import ContainerUsage, disk_usage
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

if TYPE_CHECKING:
    from runtimed.services import Runtime


class DfRpcs:
    rt: Runtime

    def _df_container(self, used: ContainerUsage) -> pb.DfContainer:
        summary = containerview.summary(self.rt.containers, used.container)
        summary.size_rw = used.size_rw
        return pb.DfContainer(container=summary, local_volumes=used.local_volumes)

    async def SystemDf(self, request: pb.SystemDfRequest, context: Any) -> pb.SystemDfResponse:
        usage = await disk_usage(self.rt)
        images = self.rt.images
        return pb.SystemDfResponse(
            layers_size=usage.layers_size,
            images=[
                pb.DfImage(image=imageview.summary(images, i.record), shared_size=i.shared_size)
                for i in usage.images
            ],
            containers=[self._df_container(c) for c in usage.containers],
            volumes=[
                pb.DfVolume(
                    name=v.view.record.name,
                    driver=v.view.record.driver,
                    size=v.size,
                    links=len(v.view.used_by),
                    anonymous=v.view.record.anonymous,
                )
                for v in usage.volumes
            ],
            build_cache=[
                pb.DfBuildCache(
                    id=b.id,
                    type="regular",
                    size=b.size,
                    created=b.created,
                    last_used=b.created,
                    usage_count=1,
                    in_use=b.in_use,
                    shared=b.shared,
                )
                for b in usage.build_cache
            ],
        )

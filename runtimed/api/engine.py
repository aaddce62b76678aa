"""runtimed.v1.Engine: docker-style operations translated onto the core."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from runtimed import __version__, hostinfo
from runtimed.api import imageview
from runtimed.api.engine_build import BuildRpcs
from runtimed.api.engine_containers import ContainerRpcs
from runtimed.api.engine_df import DfRpcs
from runtimed.api.engine_events import EventRpcs
from runtimed.api.engine_images import ImageMakingRpcs
from runtimed.api.engine_networks import NetworkRpcs
from runtimed.api.engine_push import PushRpcs, request_credential
from runtimed.api.engine_resources import ResourceRpcs, info_fields
from runtimed.api.engine_stats import StatsRpcs
from runtimed.api.engine_volumes import VolumeRpcs
from runtimed.api.progress_stream import event_fields, stream_progress
from runtimed.api.unimplemented import fill_unimplemented
from runtimed.errors import InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.gen.runtimed.v1 import engine_pb2_grpc
from runtimed.images.auth import Credential, normalize_registry
from runtimed.images.service import ProgressFn, PullEvent, PullResult

if TYPE_CHECKING:
    from runtimed.services import Runtime

API_VERSION = "1"
CRI_VERSION = "v1"


class EngineServicer(
    ContainerRpcs,
    EventRpcs,
    ImageMakingRpcs,
    NetworkRpcs,
    VolumeRpcs,
    PushRpcs,
    ResourceRpcs,
    BuildRpcs,
    StatsRpcs,
    DfRpcs,
    engine_pb2_grpc.EngineServicer,
):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def Version(self, request: pb.VersionRequest, context: Any) -> pb.VersionResponse:
        return pb.VersionResponse(
            version=__version__,
            api_version=API_VERSION,
            python_version=platform.python_version(),
            os=sys.platform,
            arch=platform.machine(),
            kernel_version=platform.release(),
            cri_version=CRI_VERSION,
        )

    async def Info(self, request: pb.InfoRequest, context: Any) -> pb.InfoResponse:
        cfg, rt = self.rt.config, self.rt
        containers = rt.containers.list()
        regs = rt.registries
        return pb.InfoResponse(
            server_version=__version__,
            storage_driver=rt.snapshotter.name,
            runtime=rt.oci_runtime.name,
            runtime_path=rt.oci_runtime.path,
            runtime_version=rt.oci_runtime.version,
            rootless=rt.rootless,
            registries=[
                pb.RegistryInfo(
                    prefix=entry.prefix,
                    location=entry.location,
                    insecure=entry.insecure,
                    blocked=entry.blocked,
                    mirrors=[m.location for m in entry.mirrors],
                )
                for entry in regs.registries
            ],
            insecure_registries=list(cfg.insecure_registries),
            search_registries=list(regs.unqualified_search_registries),
            data_dir=str(cfg.data_dir),
            run_dir=str(cfg.run_dir),
            socket=str(cfg.socket),
            images=len(rt.images.list()),
            containers=len(containers),
            containers_running=sum(1 for c in containers if c.running),
            containers_stopped=sum(1 for c in containers if not c.running),
            kernel_version=platform.release(),
            operating_system=hostinfo.os_name(),
            arch=platform.machine(),
            ncpu=os.cpu_count() or 0,
            mem_total=hostinfo.mem_total(),
            cgroup_version=hostinfo.cgroup_version(),
            uid_map=hostinfo.uid_map(),
            default_log_driver=cfg.default_log_driver,
            debug=cfg.debug,
            **info_fields(rt.cgroups),
        )

    async def PullImage(
        self, request: pb.PullImageRequest, context: Any
    ) -> AsyncIterator[pb.PullImageProgress]:
        credential = request_credential(request.auth if request.HasField("auth") else None)

        async def work(progress: ProgressFn) -> PullResult:
            return await self.rt.images.pull(
                request.reference,
                platform=request.platform,
                credential=credential,
                progress=progress,
            )

        # A client that hangs up does not stop the pull: others may want the image.
        async for message in stream_progress(
            work, _pull_progress, _pull_result, stop_on_hangup=False
        ):
            yield message

    async def ListImages(
        self, request: pb.ListImagesRequest, context: Any
    ) -> pb.ListImagesResponse:
        listed = self.rt.images.list()
        if not request.all:
            # Build steps nobody named stay out of sight, as docker hides intermediate images.
            hidden = self.rt.builds.hidden_images()
            listed = [r for r in listed if r.id not in hidden]
        records = imageview.filter_images(
            self.rt.images,
            listed,
            dict(request.filters),
            request.reference,
            intermediate=request.all,
        )
        return pb.ListImagesResponse(images=[imageview.summary(self.rt.images, r) for r in records])

    async def InspectImage(
        self, request: pb.InspectImageRequest, context: Any
    ) -> pb.InspectImageResponse:
        record = self.rt.images.resolve(request.reference)
        doc = imageview.inspect(self.rt.images, record)
        return pb.InspectImageResponse(
            json=json.dumps(doc), summary=imageview.summary(self.rt.images, record)
        )

    async def TagImage(self, request: pb.TagImageRequest, context: Any) -> pb.TagImageResponse:
        self.rt.images.tag(request.source, request.target)
        return pb.TagImageResponse()

    async def RemoveImage(
        self, request: pb.RemoveImageRequest, context: Any
    ) -> pb.RemoveImageResponse:
        result = await self.rt.images.remove(
            request.reference, force=request.force, prune=not request.no_prune
        )
        return pb.RemoveImageResponse(
            untagged=[imageview.familiar(n) for n in result.untagged], deleted=result.deleted
        )

    async def PruneImages(
        self, request: pb.PruneImagesRequest, context: Any
    ) -> pb.PruneImagesResponse:
        result = await self.rt.images.prune(all_images=request.all, filters=dict(request.filters))
        return pb.PruneImagesResponse(
            untagged=[imageview.familiar(n) for n in result.untagged],
            deleted=result.deleted,
            space_reclaimed=result.space_reclaimed,
        )

    async def ImportImage(
        self, request_iterator: AsyncIterator[pb.ImportImageChunk], context: Any
    ) -> pb.ImportImageResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "options":
            raise InvalidArgument("ImportImage: the first message must carry the options")
        opts = first.options

        async def data() -> AsyncIterator[bytes]:
            async for chunk in request_iterator:
                if chunk.WhichOneof("part") != "data":
                    raise InvalidArgument("ImportImage: options may only be sent once")
                yield chunk.data

        image_id = await self.rt.images.import_tarball(
            data(),
            reference=opts.reference,
            changes=list(opts.changes),
            message=opts.message,
            platform=opts.platform,
            source=opts.source or "-",
        )
        return pb.ImportImageResponse(image_id=image_id)

    async def Login(self, request: pb.LoginRequest, context: Any) -> pb.LoginResponse:
        if not request.username:
            raise InvalidArgument("login: a username is required")
        server = normalize_registry(request.server or "docker.io")
        await self.rt.registry.check_login(server, Credential(request.username, request.password))
        return pb.LoginResponse(status="Login Succeeded", server=server)

    async def Namespaces(
        self, request: pb.NamespacesRequest, context: Any
    ) -> pb.NamespacesResponse:
        # The launcher holds our user and mount namespaces for as long as anything runs.
        pid = await self.rt.launcher.ensure()
        netns = str(self.rt.network.namespace_path()) if request.network else ""
        return pb.NamespacesResponse(
            pid=pid,
            user_ns=os.stat("/proc/self/ns/user").st_ino,
            mount_ns=os.stat("/proc/self/ns/mnt").st_ino,
            network_ns_path=netns,
            socket=str(self.rt.config.socket),
        )


def _pull_progress(event: PullEvent) -> pb.PullImageProgress:
    return pb.PullImageProgress(**event_fields(event))


def _pull_result(result: PullResult) -> pb.PullImageProgress:
    return pb.PullImageProgress(
        result=pb.PullImageResult(
            image_id=result.image_id,
            reference=result.reference,
            repo_digest=result.repo_digest,
            up_to_date=result.up_to_date,
        )
    )


fill_unimplemented(EngineServicer, pb.DESCRIPTOR.services_by_name["Engine"])

"""docker build and builder prune in runtimed.v1.Engine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from runtimed.build.builder import BuildOptions
from runtimed.build.service import BuildRequest
from runtimed.errors import InvalidArgument, RuntimedError
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

if TYPE_CHECKING:
    from runtimed.services import Runtime

_NETWORKS = ("", "default", "bridge", "none", "host")


class BuildRpcs:
    rt: Runtime

    async def Build(
        self, request_iterator: AsyncIterator[pb.BuildInput], context: Any
    ) -> AsyncIterator[pb.BuildOutput]:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "options":
            raise InvalidArgument("Build: the first message must carry the options")
        opts = first.options
        if opts.network not in _NETWORKS:
            raise InvalidArgument(f"build --network={opts.network}: use default, none or host")
        request = BuildRequest(
            options=BuildOptions(
                build_args=dict(opts.build_args),
                target=opts.target,
                no_cache=opts.no_cache,
                pull=opts.pull,
                labels=dict(opts.labels),
                platform=opts.platform,
                network="" if opts.network in ("default", "bridge") else opts.network,
            ),
            dockerfile=bytes(opts.dockerfile),
            dockerfile_path=opts.dockerfile_path or "Dockerfile",
            tags=list(opts.tags),
        )

        async def data() -> AsyncIterator[bytes]:
            async for chunk in request_iterator:
                if chunk.WhichOneof("part") != "context":
                    raise InvalidArgument("Build: options may only be sent once")
                yield chunk.context

        queue: asyncio.Queue[pb.BuildOutput | None] = asyncio.Queue()

        async def emit(text: str) -> None:
            await queue.put(pb.BuildOutput(stream=text))

        async def work() -> None:
            try:
                result = await self.rt.builds.build(request, data(), emit)
                await queue.put(pb.BuildOutput(image_id=result.image_id, tags=result.tags))
            except RuntimedError as exc:
                # A failed build is an answer, not a broken call: docker's stream ends the same way.
                await queue.put(pb.BuildOutput(error=exc.message))
            finally:
                await queue.put(None)

        task = asyncio.create_task(work())
        try:
            while (item := await queue.get()) is not None:
                yield item
            await task
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def PruneBuildCache(
        self, request: pb.PruneBuildCacheRequest, context: Any
    ) -> pb.PruneBuildCacheResponse:
        result = await self.rt.builds.prune()
        return pb.PruneBuildCacheResponse(
            deleted=result.deleted, space_reclaimed=result.space_reclaimed
        )

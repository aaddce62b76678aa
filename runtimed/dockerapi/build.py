"""POST /build (the classic builder: a tar context in, Docker's JSON stream out) and
POST /build/prune."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import structlog

from runtimed.build.builder import BuildOptions
from runtimed.build.service import BuildRequest
from runtimed.dockerapi.context import Context
from runtimed.dockerapi.http import Request, Response, StreamResponse, json_line, json_response
from runtimed.dockerapi.images import error_message
from runtimed.dockerapi.router import Router
from runtimed.errors import Internal, InvalidArgument, RuntimedError

log = structlog.get_logger(__name__)

_NETWORKS = ("", "default", "bridge", "none", "host")


def register(router: Router, ctx: Context) -> None:
    h = BuildHandlers(ctx)
    router.add("POST", "/build", h.build)
    router.add("POST", "/build/prune", h.prune)


def _json_map(request: Request, name: str) -> dict[str, str]:
    text = request.arg(name)
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"invalid {name}: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidArgument(f"invalid {name}: want a JSON object")
    # buildargs may map a name to null: "take it from the environment" (none here).
    return {str(k): str(v) for k, v in raw.items() if v is not None}


def build_request(request: Request) -> BuildRequest:
    if request.arg("remote"):
        raise InvalidArgument("building from a remote context is not supported by runtimed")
    network = request.arg("networkmode")
    if network not in _NETWORKS:
        raise InvalidArgument(f"build --network={network}: use default, none or host")
    return BuildRequest(
        options=BuildOptions(
            build_args=_json_map(request, "buildargs"),
            target=request.arg("target"),
            no_cache=request.flag("nocache"),
            pull=request.flag("pull"),
            labels=_json_map(request, "labels"),
            platform=request.arg("platform"),
            network="" if network in ("default", "bridge") else network,
        ),
        dockerfile_path=request.arg("dockerfile") or "Dockerfile",
        tags=[t for t in request.query.get("t", []) if t],
    )


class BuildHandlers:
    def __init__(self, ctx: Context) -> None:
        self.builds = ctx.services.builds

    async def build(self, request: Request) -> StreamResponse:
        spec = build_request(request)
        quiet = request.flag("q")
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def emit(text: str) -> None:
            if not quiet:
                await queue.put({"stream": text})

        async def work() -> None:
            try:
                result = await self.builds.build(spec, request.body_chunks(), emit)
                await queue.put({"aux": {"ID": result.image_id}})
                if quiet:
                    await queue.put({"stream": result.image_id + "\n"})
            except RuntimedError as exc:
                # A failed build is an answer: the stream's last line says why.
                await queue.put(error_message(exc))
            except Exception as exc:  # a bug: said in the stream, logged with its traceback
                log.error("docker_api_build_crashed", exc_info=exc)
                await queue.put(error_message(Internal(f"internal error in build: {exc}")))
            finally:
                await queue.put(None)

        async def body() -> AsyncIterator[bytes]:
            task = asyncio.create_task(work())
            try:
                while (item := await queue.get()) is not None:
                    yield json_line(item)
                await task
            finally:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

        return StreamResponse(body())

    async def prune(self, request: Request) -> Response:
        result = await self.builds.prune()
        return json_response(
            {"CachesDeleted": result.deleted or None, "SpaceReclaimed": result.space_reclaimed}
        )

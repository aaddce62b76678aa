"""Images to registries: push, with Docker's JSON progress stream."""

from __future__ import annotations

from typing import Any

from runtimed.dockerapi.context import Context
from runtimed.dockerapi.http import Request, StreamResponse
from runtimed.dockerapi.images import progress_message, progress_response, registry_credential
from runtimed.dockerapi.router import Router
from runtimed.images.push import ImagePusher, PushResult
from runtimed.images.service import ProgressFn, PullEvent


def register(router: Router, ctx: Context) -> None:
    h = DistributionHandlers(ctx)
    router.add("POST", "/images/{name*}/push", h.push)


def push_message(event: PullEvent) -> dict[str, Any]:
    """Push statuses have pull's shape; "Pushing" carries progress as "Downloading" does."""
    doc = progress_message(event)
    if event.layer_id and event.status == "Pushing" and event.total:
        doc["progressDetail"] = {"current": event.current, "total": event.total}
    return doc


def pushed(result: PushResult) -> list[dict[str, Any]]:
    """The last lines: each tag's digest and size, as `aux` (docker-py and the CLI read it)."""
    return [
        {"progressDetail": {}, "aux": {"Tag": t.tag, "Digest": t.digest, "Size": t.size}}
        for t in result.tags
    ]


class DistributionHandlers:
    def __init__(self, ctx: Context) -> None:
        self.services = ctx.services

    async def push(self, request: Request) -> StreamResponse:
        name, tag = request.params["name"], request.arg("tag")
        # Without a tag, docker push sends every tag of the repository.
        reference = f"{name}:{tag}" if tag else name
        pusher = ImagePusher(self.services.images, self.services.registry)
        credential = registry_credential(request)

        async def work(progress: ProgressFn) -> PushResult:
            return await pusher.push(
                reference, all_tags=not tag, credential=credential, progress=progress
            )

        # docker push stops when its client is interrupted; so does ours.
        return await progress_response(work, push_message, pushed, stop_on_hangup=True)

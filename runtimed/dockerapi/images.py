"""/images: pull (and import) with Docker's JSON progress stream, list, inspect, tag, remove,
prune; search is refused (there is no index to search without a network)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from runtimed.api import imageview
from runtimed.dockerapi.context import Context
from runtimed.dockerapi.errors import HttpError
from runtimed.dockerapi.http import Request, Response, StreamResponse, json_line, json_response
from runtimed.dockerapi.router import Router, at_least
from runtimed.errors import InvalidArgument, RuntimedError
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.images.auth import Credential
from runtimed.images.service import ProgressFn, PullEvent, PullResult

R = TypeVar("R")
_ZERO_TIME = "0001-01-01T00:00:00Z"


def register(router: Router, ctx: Context) -> None:
    h = ImageHandlers(ctx)
    router.add("POST", "/images/create", h.create)
    router.add("GET", "/images/json", h.list)
    router.add("POST", "/images/prune", h.prune)
    router.add("GET", "/images/search", h.search)
    router.add("GET", "/images/{name*}/json", h.inspect)
    router.add("POST", "/images/{name*}/tag", h.tag)
    router.add("DELETE", "/images/{name*}", h.remove)


def image_doc(request: Request, s: pb.ImageSummary, shared_size: int = -1) -> dict[str, Any]:
    """One entry of GET /images/json (and of /system/df's Images)."""
    doc: dict[str, Any] = {
        "Id": s.id,
        "ParentId": "",
        "RepoTags": list(s.repo_tags),
        "RepoDigests": list(s.repo_digests),
        "Created": s.created,
        "Size": s.size,
        "SharedSize": shared_size,
        "Labels": dict(s.labels) or None,
        "Containers": s.containers,
    }
    if not at_least(request, "1.44"):
        doc["VirtualSize"] = s.size
    return doc


def registry_credential(request: Request) -> Credential | None:
    """X-Registry-Auth: base64url JSON of an AuthConfig ({} or absent: none given)."""
    text = request.headers.get("x-registry-auth", "").strip()
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        doc = json.loads(raw or b"{}")
    except (ValueError, binascii.Error):
        raise InvalidArgument("X-Registry-Auth is not base64-encoded JSON") from None
    if not isinstance(doc, dict):
        return None
    username = str(doc.get("username") or "")
    token = str(doc.get("identitytoken") or "") or None
    if not username and not token:
        return None
    return Credential(username, str(doc.get("password") or ""), token)


def progress_message(event: PullEvent) -> dict[str, Any]:
    """A PullEvent as one line of Docker's JSON progress stream."""
    if not event.layer_id:
        tag, sep, rest = event.status.partition(": Pulling from ")
        if sep:
            return {"status": f"Pulling from {rest}", "id": tag}
        return {"status": event.status}
    doc: dict[str, Any] = {"status": event.status, "progressDetail": {}, "id": event.layer_id}
    if event.status in ("Downloading", "Extracting") and event.total:
        doc["progressDetail"] = {"current": event.current, "total": event.total}
    return doc


def error_message(err: RuntimedError) -> dict[str, Any]:
    return {"errorDetail": {"message": err.message}, "error": err.message}


async def progress_response(
    work: Callable[[ProgressFn], Awaitable[R]],
    message: Callable[[PullEvent], dict[str, Any]],
    final: Callable[[R], list[dict[str, Any]]] = lambda _result: [],
    *,
    stop_on_hangup: bool,
) -> StreamResponse:
    """Docker's JSON progress stream of `work` (a pull, a push): one line per event, then
    `final`'s lines. A failure before any layer moved is the answer's status (404 for an
    unknown image, 401 for credentials), as dockerd answers before it has flushed
    anything; a later one is the stream's last line (errorDetail)."""
    queue: asyncio.Queue[PullEvent | _Done[R] | BaseException] = asyncio.Queue()

    async def run() -> None:
        try:
            queue.put_nowait(_Done(await work(queue.put_nowait)))
        except BaseException as exc:  # handed to the stream below
            queue.put_nowait(exc)

    task = asyncio.create_task(run())
    first: list[PullEvent | _Done[R]] = []
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            first.append(item)
            if isinstance(item, _Done) or item.layer_id:
                break
    except BaseException:
        task.cancel()
        raise

    async def body() -> AsyncIterator[bytes]:
        pending: list[PullEvent | _Done[R] | BaseException] = list(first)
        try:
            while True:
                item = pending.pop(0) if pending else await queue.get()
                if isinstance(item, RuntimedError):
                    yield json_line(error_message(item))
                    return
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, _Done):
                    for doc in final(item.result):
                        yield json_line(doc)
                    return
                yield json_line(message(item))
        finally:
            if not task.done():
                if stop_on_hangup:
                    task.cancel()
                else:
                    task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    return StreamResponse(body())


class _Done(Generic[R]):
    def __init__(self, result: R) -> None:
        self.result = result


class ImageHandlers:
    def __init__(self, ctx: Context) -> None:
        self.images = ctx.services.images

    async def create(self, request: Request) -> StreamResponse:
        if request.arg("fromSrc"):
            return await self._import(request)
        image = request.arg("fromImage")
        if not image:
            raise InvalidArgument("fromImage or fromSrc is required")
        tag = request.arg("tag")
        if tag:
            image = f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"
        return await self._pull(image, request.arg("platform"), registry_credential(request))

    async def _pull(
        self, image: str, platform: str, credential: Credential | None
    ) -> StreamResponse:
        async def work(progress: ProgressFn) -> PullResult:
            return await self.images.pull(
                image, platform=platform, credential=credential, progress=progress
            )

        # A client that hangs up does not stop the pull: others may want the image.
        return await progress_response(work, progress_message, stop_on_hangup=False)

    async def _import(self, request: Request) -> StreamResponse:
        source = request.arg("fromSrc")
        if source != "-":
            raise InvalidArgument(
                "importing from a URL is not supported by runtimed: send the tarball"
            )
        repo, tag = request.arg("repo"), request.arg("tag")
        reference = f"{repo}:{tag}" if repo and tag else repo
        image_id = await self.images.import_tarball(
            request.body_chunks(),
            reference=reference,
            changes=request.query.get("changes", []),
            message=request.arg("message"),
            platform=request.arg("platform"),
            source=source,
        )

        async def body() -> AsyncIterator[bytes]:
            yield json_line({"status": image_id})

        return StreamResponse(body())

    async def list(self, request: Request) -> Response:
        filters = {k: v[-1] for k, v in request.filters().items() if v}
        records = imageview.filter_images(self.images, self.images.list(), filters, "")
        show_all = request.flag("all")
        out = []
        for record in records:
            if (
                not record.tags
                and not record.digests
                and not show_all
                and "dangling" not in filters
            ):
                continue
            out.append(image_doc(request, imageview.summary(self.images, record)))
        out.sort(key=lambda d: d["Created"], reverse=True)
        return json_response(out)

    async def inspect(self, request: Request) -> Response:
        record = self.images.resolve(request.params["name"])
        doc = imageview.inspect(self.images, record)
        if not at_least(request, "1.44"):
            doc["VirtualSize"] = doc["Size"]
        # A time the CLI parses: Go's zero time for "never tagged" (an empty one fails).
        doc["Metadata"] = {"LastTagTime": doc["Metadata"].get("LastTagTime") or _ZERO_TIME}
        doc["Created"] = doc.get("Created") or _ZERO_TIME
        doc.setdefault("Container", "")
        doc.setdefault("ContainerConfig", None)
        return json_response(doc)

    async def tag(self, request: Request) -> Response:
        repo = request.arg("repo")
        if not repo:
            raise InvalidArgument("repository name must have at least one component")
        tag = request.arg("tag") or "latest"
        self.images.tag(request.params["name"], f"{repo}:{tag}")
        return Response(status=201, content_type="text/plain; charset=utf-8")

    async def remove(self, request: Request) -> Response:
        result = await self.images.remove(request.params["name"], force=request.flag("force"))
        return json_response(
            [{"Untagged": imageview.familiar(n)} for n in result.untagged]
            + [{"Deleted": d} for d in result.deleted if d.startswith("sha256:")]
        )

    async def prune(self, request: Request) -> Response:
        filters = {k: v[-1] for k, v in request.filters().items() if v}
        dangling = filters.pop("dangling", "true").lower()
        result = await self.images.prune(all_images=dangling in ("false", "0"), filters=filters)
        deleted = [{"Untagged": imageview.familiar(n)} for n in result.untagged]
        deleted += [{"Deleted": d} for d in result.deleted]
        return json_response(
            {"ImagesDeleted": deleted or None, "SpaceReclaimed": result.space_reclaimed}
        )

    async def search(self, request: Request) -> Response:
        raise HttpError(
            501,
            f"cannot search for {request.arg('term')!r}: runtimed has no image index to search "
            "(registries are reached by name only; pull the image by its full reference)",
        )

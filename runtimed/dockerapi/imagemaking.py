"""Making and moving images: commit, container diff and export, image history, save, load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from runtimed.api import imageview
from runtimed.build.commit import commit, mount_points
from runtimed.core.export import export_container
from runtimed.dockerapi.context import Context
from runtimed.dockerapi.http import Request, Response, StreamResponse, json_line, json_response
from runtimed.dockerapi.router import Router
from runtimed.errors import InvalidArgument
from runtimed.images.history import image_history
from runtimed.images.load import load_archive
from runtimed.images.save import plan_save, stream_archive
from runtimed.snapshots import diff

TAR = "application/x-tar"
# Docker's kinds of a change: 0 modified, 1 added, 2 deleted.
_KINDS = {"C": 0, "A": 1, "D": 2}


def register(router: Router, ctx: Context) -> None:
    h = ImageMakingHandlers(ctx)
    router.add("POST", "/commit", h.commit)
    router.add("GET", "/containers/{id}/changes", h.changes)
    router.add("GET", "/containers/{id}/export", h.export)
    router.add("GET", "/images/get", h.save)
    router.add("POST", "/images/load", h.load)
    router.add("GET", "/images/{name*}/history", h.history)
    router.add("GET", "/images/{name*}/get", h.save_one)


class ImageMakingHandlers:
    def __init__(self, ctx: Context) -> None:
        self.containers = ctx.services.containers
        self.images = ctx.services.images

    async def commit(self, request: Request) -> Response:
        ref = request.arg("container")
        if not ref:
            raise InvalidArgument("container is required: the container to commit")
        repo, tag = request.arg("repo"), request.arg("tag")
        reference = f"{repo}:{tag}" if repo and tag else repo
        body = await request.json(default=None)
        if body:
            raise InvalidArgument("commit: a config in the body is not supported; use changes")
        result = await commit(
            self.containers,
            ref,
            reference=reference,
            author=request.arg("author"),
            comment=request.arg("comment"),
            changes=request.query.get("changes", []),
            pause=request.flag("pause", default=True),
        )
        return json_response({"Id": result.image_id}, 201)

    async def changes(self, request: Request) -> Response:
        container = self.containers.get(request.params["id"])
        found = await asyncio.to_thread(
            diff.changes,
            self.containers.snapshotter,
            container.id,
            self.containers._lowers(container.config.image_id),  # noqa: SLF001 - as the Engine API
            mount_points(self.containers, container),
        )
        return json_response([{"Path": c.path, "Kind": _KINDS[c.kind]} for c in found] or None)

    async def export(self, request: Request) -> StreamResponse:
        container = self.containers.get(request.params["id"])
        return StreamResponse(export_container(self.containers, container), content_type=TAR)

    async def history(self, request: Request) -> Response:
        record = self.images.resolve(request.params["name"])
        return json_response(
            [
                {
                    "Id": row.id or "<missing>",
                    "Created": int(row.created),
                    "CreatedBy": row.created_by,
                    "Tags": [imageview.familiar(t) for t in row.tags] or None,
                    "Size": row.size,
                    "Comment": row.comment,
                }
                for row in image_history(self.images, record)
            ]
        )

    async def _save(self, names: list[str]) -> StreamResponse:
        if not names:
            raise InvalidArgument("names is required: the images to save")
        plan = await asyncio.to_thread(plan_save, self.images, names)
        return StreamResponse(stream_archive(self.images, plan), content_type=TAR)

    async def save(self, request: Request) -> StreamResponse:
        return await self._save(request.query.get("names", []))

    async def save_one(self, request: Request) -> StreamResponse:
        return await self._save([request.params["name"]])

    async def load(self, request: Request) -> StreamResponse:
        result = await load_archive(self.images, request.body_chunks())
        lines = []
        for old_name, old_id in result.replaced.items():
            lines.append(
                f"The image {imageview.familiar(old_name)} already exists, renaming the old "
                f"one with ID {old_id} to empty string\n"
            )
        for image_id, tags in result.images:
            if tags:
                lines += [f"Loaded image: {imageview.familiar(t)}\n" for t in tags]
            else:
                lines.append(f"Loaded image ID: {image_id}\n")

        async def body() -> AsyncIterator[bytes]:
            for line in lines:
                yield json_line({"stream": line})

        return StreamResponse(body())

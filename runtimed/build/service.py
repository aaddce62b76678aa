"""docker build, daemon side: take the context, run the Dockerfile, name the result.

The context arrives as a tar stream and is unpacked as it comes into a
private directory (runtimed.build.context), then read only through paths
resolved inside it. The Dockerfile comes with the options, or is read from
the context at `-f`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from runtimed.build import dockerfile as df
from runtimed.build.builder import Builder, BuildOptions, Emit, automatic_args
from runtimed.build.cache import BuildCache
from runtimed.build.context import receive
from runtimed.build.stages import plan
from runtimed.core.inroot import open_in_root
from runtimed.errors import InvalidArgument
from runtimed.images.reference import parse_reference
from runtimed.images.service import RemoveResult, short_id

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService
    from runtimed.images.service import ImageService

log = structlog.get_logger(__name__)


@dataclass
class BuildRequest:
    options: BuildOptions = field(default_factory=BuildOptions)
    dockerfile: bytes = b""  # the Dockerfile's text; empty: read `dockerfile_path` from the context
    dockerfile_path: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tags: list[str]


class BuildService:
    def __init__(self, images: ImageService, containers: ContainerService, data_dir: Path) -> None:
        self.images = images
        self.containers = containers
        self.root = data_dir / "build"
        self.cache = BuildCache(images.metadata)
        self.cache_mounts = self.root / "cache-mounts"
        self.cache_mounts.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / "tmp"
        # What a crash left of earlier builds' contexts.
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._cleanups: set[asyncio.Future[None]] = set()

    async def build(
        self, request: BuildRequest, context: AsyncIterator[bytes], emit: Emit
    ) -> BuildResult:
        names = [_tag_name(t) for t in request.tags]
        work = self._tmp / uuid.uuid4().hex
        ctx = work / "context"
        ctx.mkdir(parents=True)
        try:
            digests = await receive(context, ctx, request.dockerfile_path)
            text = request.dockerfile or await asyncio.to_thread(
                _read_dockerfile, ctx, request.dockerfile_path
            )
            parsed = df.parse(text)
            options = request.options
            the_plan = plan(parsed, options.build_args, automatic_args(options.platform))
            builder = Builder(
                images=self.images,
                containers=self.containers,
                cache=self.cache,
                context=ctx,
                context_digests=digests,
                cache_mounts=self.cache_mounts,
                dockerfile=parsed,
                plan=the_plan,
                options=options,
                emit=emit,
            )
            image_id = await builder.run()
        finally:
            # Not waited for: the build's answer need not wait on deleting its context.
            self._cleanup(work)
        self.cache.mark_result(image_id)
        await emit(f"Successfully built {short_id(image_id)}\n")
        for name, shown in names:
            self.images.metadata.set_name(name, "tag", image_id)
            await emit(f"Successfully tagged {shown}\n")
        log.info("image_built", image_id=image_id, tags=[n for n, _ in names])
        return BuildResult(image_id, [s for _, s in names])

    def _cleanup(self, work: Path) -> None:
        task = asyncio.ensure_future(asyncio.to_thread(shutil.rmtree, work, True))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    # -- the cache -------------------------------------------------------------

    def hidden_images(self) -> set[str]:
        return self.cache.hidden_images()

    def usage(self) -> tuple[int, int]:
        """(entries, bytes of the layers only the cache keeps)."""
        hidden = self.cache.hidden_images()
        return len(hidden), sum(self.own_size(i) for i in hidden)

    def own_size(self, image_id: str) -> int:
        """Bytes of the layer a step image adds (its cache entry's size)."""
        record = self.images.metadata.get_image(image_id)
        if record is None or not record.chain_ids:
            return 0
        layer = self.images.metadata.get_layer(record.chain_ids[-1])
        return layer.size if layer is not None else 0

    async def prune(self) -> RemoveResult:
        """builder prune: the step images no build result, tag or container needs."""
        total = RemoveResult()
        while True:
            removed = False
            for image_id in sorted(self.cache.hidden_images()):
                record = self.images.metadata.get_image(image_id)
                if record is None:
                    continue
                if self.images.containers_using(image_id) or _has_children(self.images, image_id):
                    continue
                self.cache.forget([image_id])
                result = await self.images.remove(image_id, force=False)
                total.deleted.extend(result.deleted)
                total.space_reclaimed += result.space_reclaimed
                removed = True
            if not removed:
                break
        # What stays in the cache table then is only what something else still needs.
        return total


def _has_children(images: ImageService, image_id: str) -> bool:
    children_of = getattr(images.metadata, "children_of", None)
    return bool(children_of(image_id)) if children_of is not None else False


def _tag_name(text: str) -> tuple[str, str]:
    ref = parse_reference(text)
    if ref.digest:
        raise InvalidArgument(f"invalid tag {text!r}: a build result cannot be named by digest")
    return f"{ref.name}:{ref.tag}", ref.familiar()


def _read_dockerfile(ctx: Path, path: str) -> bytes:
    root_fd = os.open(ctx, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_in_root(root_fd, path or "Dockerfile", os.O_RDONLY)
    except OSError:
        raise InvalidArgument(
            f"Cannot locate specified Dockerfile: {path or 'Dockerfile'} (in the build context)"
        ) from None
    finally:
        os.close(root_fd)
    with os.fdopen(fd, "rb") as f:
        return f.read()

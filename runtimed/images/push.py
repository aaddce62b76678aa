"""docker push: send an image's blobs and manifest to its registry.

Per blob, the cheapest way that works: nothing when the repository has it
already (HEAD), a cross-repository mount when another repository of the same
registry is known to hold it (from earlier pulls and pushes, kept in the
metadata store), else an upload of the compressed bytes we keep (made now,
once, for a layer that has none: runtimed.images.reblob). Then the manifest
goes up exactly as stored, so its digest is the one we know the image by.
Progress is reported per layer with docker's words.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from runtimed.errors import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RuntimedError,
)
from runtimed.images import manifest as mt
from runtimed.images import reblob
from runtimed.images.auth import Credential
from runtimed.images.reference import DEFAULT_DOMAIN, Reference, parse_reference
from runtimed.images.registry import RegistryClient, is_transient
from runtimed.images.service import (
    PROGRESS_INTERVAL,
    ImageService,
    ProgressFn,
    PullEvent,
    short_id,
)
from runtimed.images.upload import BlobUploader
from runtimed.store.metadata import ImageRecord

log = structlog.get_logger(__name__)

MAX_CONCURRENT_UPLOADS = 5  # dockerd's default (--max-concurrent-uploads)
MAX_MOUNT_ATTEMPTS = 3
_DENIED = "denied: requested access to the resource is denied"


@dataclass(frozen=True)
class PushedTag:
    tag: str
    digest: str
    size: int


@dataclass(frozen=True)
class PushResult:
    repository: str  # the full name pushed to (HOST/PATH)
    tags: list[PushedTag]


def _explicit_tag(text: str) -> bool:
    name = text.partition("@")[0]
    return ":" in name.rsplit("/", 1)[-1]


class ImagePusher:
    def __init__(
        self,
        images: ImageService,
        registry: RegistryClient,
        *,
        max_concurrent_uploads: int = MAX_CONCURRENT_UPLOADS,
    ) -> None:
        self.images = images
        self.registry = registry
        self._uploads = asyncio.Semaphore(max_concurrent_uploads)

    async def push(
        self,
        text: str,
        *,
        all_tags: bool = False,
        credential: Credential | None = None,
        progress: ProgressFn,
    ) -> PushResult:
        ref = parse_reference(text.strip())
        if ref.digest:
            raise InvalidArgument(f"cannot push a digest reference: {text}")
        if all_tags and _explicit_tag(text):
            raise InvalidArgument("tag can't be used with --all-tags/-a")
        if ref.domain == DEFAULT_DOMAIN and not text.strip().startswith(
            ("docker.io/", "index.docker.io/")
        ):
            # A bare name means Docker Hub to docker; here that is a mistake far more often.
            raise InvalidArgument(
                f"refusing to push {ref.familiar()} to Docker Hub (docker.io): the name has no "
                f"registry host. Tag it for your registry first "
                f"(runtimectl tag {ref.familiar()} HOST:PORT/{ref.familiar()}), or write "
                f"docker.io/{ref.path} to mean Docker Hub"
            )
        progress(PullEvent(status=f"The push refers to repository [{ref.name}]"))
        tagged = self._tagged_images(ref, all_tags)
        ep = self.registry.push_endpoint(ref)
        if credential is None:
            credential = await self.registry.lookup_credential(ep.registry)
        uploader = BlobUploader(self.registry, ep, credential)
        pushed = []
        for tag, record in tagged:
            try:
                pushed.append(await self._push_tag(uploader, ref, tag, record, progress))
            except (PermissionDenied, NotFound) as exc:
                raise self._denied(exc, ref) from exc
        return PushResult(ref.name, pushed)

    def _tagged_images(self, ref: Reference, all_tags: bool) -> list[tuple[str, ImageRecord]]:
        metadata = self.images.metadata
        if all_tags:
            prefix = f"{ref.name}:"
            found = sorted(
                (name.removeprefix(prefix), record)
                for record in metadata.list_images()
                for name in record.tags
                if name.startswith(prefix)
            )
        else:
            assert ref.tag is not None
            image_id = metadata.image_for_name(f"{ref.name}:{ref.tag}")
            record = metadata.get_image(image_id) if image_id else None
            found = [(ref.tag, record)] if record else []
        if not found:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name()}")
        return [(tag, record) for tag, record in found if record is not None]

    @staticmethod
    def _denied(exc: RuntimedError, ref: Reference) -> RuntimedError:
        # Registries say "denied" (403) or "name unknown" (404) for a repository the
        # user may not push to; docker shows this one line for both.
        if isinstance(exc, PermissionDenied) or "NAME_UNKNOWN" in exc.message:
            return PermissionDenied(f"{_DENIED} (pushing to {ref.name}: {exc.message})")
        return exc

    # -- one tag -----------------------------------------------------------------

    async def _push_tag(
        self,
        uploader: BlobUploader,
        ref: Reference,
        tag: str,
        record: ImageRecord,
        progress: ProgressFn,
    ) -> PushedTag:
        data, media_type, doc = self._manifest(record, ref, tag)

        async def elsewhere(digest: str) -> bool:
            if self.images.metadata.blob_sources(digest, uploader.endpoint.registry):
                return True  # mountable from another repository there
            return await uploader.exists(digest)

        data, doc = await reblob.complete(self.images, record, data, doc, elsewhere)
        diff_ids = self.images.config(record).get("rootfs", {}).get("diff_ids") or []
        layers: dict[str, tuple[str, mt.Descriptor]] = {}
        # dockerd lists layers top first, each by its (uncompressed) diff id.
        for position in reversed(range(len(doc.layers))):
            desc = doc.layers[position]
            if desc.digest in layers:
                continue
            diff_id = diff_ids[position] if position < len(diff_ids) else desc.digest
            layers[desc.digest] = (short_id(diff_id), desc)
        for layer_id, _desc in layers.values():
            progress(PullEvent(status="Preparing", layer_id=layer_id))
        tasks = [
            asyncio.create_task(self._push_blob(uploader, desc, layer_id, progress))
            for layer_id, desc in layers.values()
        ]
        tasks.append(asyncio.create_task(self._push_blob(uploader, doc.config, "", progress)))
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        stored = await uploader.put_manifest(tag, data, media_type)
        digest = mt.sha256_digest(data)
        if stored and stored != digest:
            raise DataLoss(
                f"registry {uploader.endpoint.host} computed {stored} for manifest {digest}"
            )
        self.images.metadata.set_name(f"{ref.name}@{digest}", "digest", record.id)
        progress(PullEvent(status=f"{tag}: digest: {digest} size: {len(data)}"))
        log.info("image_pushed", ref=f"{ref.name}:{tag}", digest=digest)
        self.images.announce("push", f"{ref.name}:{tag}", f"{ref.name}:{tag}", image_id=record.id)
        return PushedTag(tag, digest, len(data))

    def _manifest(
        self, record: ImageRecord, ref: Reference, tag: str
    ) -> tuple[bytes, str, mt.ImageManifest]:
        what = f"{ref.familiar_name()}:{tag}"
        if not record.manifest_digest or not self.images.content.has(record.manifest_digest):
            raise FailedPrecondition(
                f"{what} has no stored manifest to push; make the image again (import or pull)"
            )
        data = self.images.content.read_bytes(record.manifest_digest)
        doc = mt.parse_manifest(data, record.manifest_media_type, what=what)
        if not isinstance(doc, mt.ImageManifest):
            raise FailedPrecondition(f"{what}: the stored manifest is not an image manifest")
        return data, doc.media_type, doc

    # -- one blob ----------------------------------------------------------------

    async def _push_blob(
        self, uploader: BlobUploader, desc: mt.Descriptor, layer_id: str, progress: ProgressFn
    ) -> None:
        def say(status: str, current: int = 0) -> None:
            if layer_id:
                progress(PullEvent(status=status, layer_id=layer_id, current=current))

        if self._uploads.locked():
            say("Waiting")
        async with self._uploads:
            delays = [*self.registry.retry_delays, None]
            for attempt, delay in enumerate(delays, start=1):
                try:
                    say(await self._send_blob(uploader, desc, layer_id, progress))
                    break
                except RuntimedError as exc:
                    if delay is None or not is_transient(exc):
                        raise
                    log.warning(
                        "blob_push_retry", digest=desc.digest, attempt=attempt, error=exc.message
                    )
                    await asyncio.sleep(delay)
        metadata = self.images.metadata
        metadata.add_blob_sources(uploader.endpoint.registry, uploader.repository, [desc.digest])

    async def _send_blob(
        self, uploader: BlobUploader, desc: mt.Descriptor, layer_id: str, progress: ProgressFn
    ) -> str:
        """Get `desc` into the repository; returns docker's word for how it got there."""
        if await uploader.exists(desc.digest):
            return "Layer already exists"
        ep = uploader.endpoint
        location = None
        sources = [
            repo
            for repo in self.images.metadata.blob_sources(desc.digest, ep.registry)
            if repo != uploader.repository
        ]
        for source in sources[:MAX_MOUNT_ATTEMPTS]:
            if location is not None:
                await uploader.cancel(location)
            location = await uploader.start(desc.digest, mount_from=source)
            if location is None:
                return f"Mounted from {source}"
            # The registry no longer has it there (or will not let us read it).
            self.images.metadata.forget_blob_source(desc.digest, ep.registry, source)
        path = self._local_blob(desc, uploader)
        if location is None:
            location = await uploader.start(desc.digest)
            if location is None:  # a registry may mount on its own; nothing left to send
                return "Layer already exists"
        last = 0.0

        def report(done: int) -> None:
            nonlocal last
            now = time.monotonic()
            if layer_id and (now - last >= PROGRESS_INTERVAL or done == desc.size):
                last = now
                progress(
                    PullEvent(status="Pushing", layer_id=layer_id, current=done, total=desc.size)
                )

        try:
            await uploader.upload(location, desc, path, report)
        except BaseException:
            await uploader.cancel(location)
            raise
        return "Pushed"

    def _local_blob(self, desc: mt.Descriptor, uploader: BlobUploader) -> Path:
        content = self.images.content
        if not content.has(desc.digest):
            raise FailedPrecondition(
                f"blob {desc.digest} is not stored here and {uploader.endpoint.host}/"
                f"{uploader.repository} does not have it: the image was pulled before runtimed "
                "kept layer blobs, or with a layer another image already had; remove the image "
                "and pull it again to push it"
            )
        return content.path(desc.digest)

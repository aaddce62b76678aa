"""The image model: pull, name, look up, inspect, remove, prune and import images.

Both front doors (the CRI ImageService and the Engine API) call this class;
it never sees gRPC. Names are stored canonical ("docker.io/library/busybox:1.36"
and "docker.io/library/busybox@sha256:..."); the Engine shows them in docker's
familiar form, the CRI as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from runtimed.core.events import IMAGE, EventBus
from runtimed.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from runtimed.images import manifest as mt
from runtimed.images.auth import Credential
from runtimed.images.changes import apply_changes
from runtimed.images.compose import layer_from_tar, store_image
from runtimed.images.layers import LayerStore, chain_ids
from runtimed.images.reference import Reference, parse_reference
from runtimed.images.registry import RegistryClient, ResolvedImage
from runtimed.store.content import ContentStore, sha256_digest
from runtimed.store.metadata import ImageRecord, LayerRecord, MetadataStore

log = structlog.get_logger(__name__)

_HEX = frozenset("0123456789abcdef")
PROGRESS_INTERVAL = 0.1


@dataclass(frozen=True)
class PullEvent:
    """One progress line: a general status, or the state of one layer."""

    status: str = ""
    layer_id: str = ""
    current: int = 0
    total: int = 0


@dataclass(frozen=True)
class PullResult:
    image_id: str
    reference: str
    repo_digest: str
    up_to_date: bool


@dataclass
class RemoveResult:
    untagged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    space_reclaimed: int = 0


ProgressFn = Callable[[PullEvent], None]


def _no_progress(_event: PullEvent) -> None:
    return None


def short_id(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_created(value: str | None) -> float:
    """Seconds since the epoch of an RFC 3339 'created' field (0 when absent or odd)."""
    if not value:
        return 0.0
    text = value.strip().replace("Z", "+00:00")
    # Python's parser takes at most 6 fractional digits; Go writes 9.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


class ImageService:
    def __init__(
        self,
        content: ContentStore,
        metadata: MetadataStore,
        layers: LayerStore,
        registry: RegistryClient,
        *,
        containers_using: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.content = content
        self.metadata = metadata
        self.layers = layers
        self.registry = registry
        # Later issues plug the container store in here: image id -> container ids.
        self.containers_using = containers_using or (lambda _image_id: [])
        self._layer_locks: dict[str, asyncio.Lock] = {}
        self.events = EventBus()  # the daemon's shared bus replaces this one

    # -- lookup ----------------------------------------------------------------

    def resolve(self, text: str) -> ImageRecord:
        """Find an image by name, name@digest, full id or unique id prefix (docker's order)."""
        record, _ = self._lookup(text)
        return record

    def _lookup(self, text: str) -> tuple[ImageRecord, str | None]:
        """The image and the stored name that matched (None when matched by id)."""
        text = text.strip()
        if not text:
            raise InvalidArgument("image reference is empty")
        bare = text.removeprefix("sha256:")
        if len(bare) == 64 and set(bare) <= _HEX:
            # A full id is an id, never a repository name (docker refuses 64-hex names).
            record = self.metadata.get_image("sha256:" + bare)
            if record is None:
                raise NotFound(f"No such image: {text}")
            return record, None
        ref_error: InvalidArgument | None = None
        try:
            ref = parse_reference(text)
        except InvalidArgument as exc:
            ref, ref_error = None, exc
        if ref is not None:
            for name in self._names_for(ref):
                image_id = self.metadata.image_for_name(name)
                if image_id and (record := self.metadata.get_image(image_id)):
                    return record, name
        if 1 <= len(bare) < 64 and set(bare) <= _HEX:
            matches = self.metadata.images_with_prefix(bare)
            if len(matches) > 1:
                raise InvalidArgument(f"image id prefix {bare!r} is ambiguous")
            if matches and (record := self.metadata.get_image(matches[0])):
                return record, None
        if ref_error is not None:
            raise ref_error
        raise NotFound(f"No such image: {text}")

    @staticmethod
    def _names_for(ref: Reference) -> list[str]:
        if ref.digest:
            return [f"{ref.name}@{ref.digest}"]
        return [f"{ref.name}:{ref.tag}"]

    def config(self, record: ImageRecord) -> dict[str, Any]:
        return json.loads(self.content.read_bytes(record.id))

    def list(self) -> list[ImageRecord]:
        return self.metadata.list_images()

    def announce(self, action: str, actor_id: str, name: str = "", *, image_id: str = "") -> None:
        """Publish an image event as Docker words it: the actor is an id or a reference
        (pull, push), `name` a reference or the id; the image's labels come along while
        it exists (`image_id`, else the actor when that is an id)."""
        attributes: dict[str, str] = {}
        record = self.metadata.get_image(image_id or actor_id)
        if record is not None:
            with contextlib.suppress(OSError, ValueError):
                attributes.update((self.config(record).get("config") or {}).get("Labels") or {})
        if name:
            attributes["name"] = name
        self.events.publish(IMAGE, action, actor_id, attributes)

    # -- pull ------------------------------------------------------------------

    async def pull(
        self,
        text: str,
        *,
        platform: str = "",
        credential: Credential | None = None,
        progress: ProgressFn = _no_progress,
    ) -> PullResult:
        ref = parse_reference(text)
        wanted = mt.Platform.parse(platform) if platform else mt.Platform.host()
        progress(PullEvent(status=f"{ref.tag or ref.digest}: Pulling from {ref.path}"))
        resolved = await self.registry.resolve(ref, platform=wanted, credential=credential)
        config_bytes = await self._fetch_small(resolved, resolved.config)
        config = _parse_config(config_bytes, resolved.config.digest)
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(resolved.layers):
            raise InvalidArgument(
                f"{ref}: manifest lists {len(resolved.layers)} layers but the config "
                f"has {len(diff_ids)} diff ids"
            )
        chains = chain_ids(diff_ids)
        sizes = await self._ensure_layers(resolved, diff_ids, chains, progress)
        self.content.write_bytes(resolved.manifest_bytes, resolved.manifest_digest)
        names = [(f"{ref.name}@{resolved.repo_digest}", "digest")]
        if ref.tag and not ref.digest:
            names.insert(0, (f"{ref.name}:{ref.tag}", "tag"))
        previous = {n: self.metadata.image_for_name(n) for n, _ in names}
        self.metadata.put_image(
            image_id=resolved.config.digest,
            manifest_digest=resolved.manifest_digest,
            manifest_media_type=resolved.manifest_media_type,
            created=config.get("created"),
            size=sum(sizes),
            chain_ids=chains,
            names=names,
        )
        # A later push to this registry can mount these instead of uploading them.
        self.metadata.add_blob_sources(
            resolved.endpoint.registry,
            resolved.repository,
            [resolved.config.digest, *(layer.digest for layer in resolved.layers)],
        )
        up_to_date = all(v == resolved.config.digest for v in previous.values())
        self.announce("pull", ref.familiar(), ref.familiar_name(), image_id=resolved.config.digest)
        log.info("image_pulled", ref=str(ref), image_id=resolved.config.digest)
        progress(PullEvent(status=f"Digest: {resolved.repo_digest}"))
        word = "Image is up to date for" if up_to_date else "Downloaded newer image for"
        progress(PullEvent(status=f"Status: {word} {ref.familiar()}"))
        return PullResult(
            image_id=resolved.config.digest,
            reference=str(ref),
            repo_digest=f"{ref.name}@{resolved.repo_digest}",
            up_to_date=up_to_date,
        )

    async def _fetch_small(self, image: ResolvedImage, desc: mt.Descriptor) -> bytes:
        if self.content.has(desc.digest):
            return self.content.read_bytes(desc.digest)
        tmp = self.content.new_ingest()
        try:
            await self.registry.fetch_blob(image, desc, tmp)
            self.content.commit(desc.digest, tmp, verified=True)
        finally:
            self.content.discard(tmp)
        return self.content.read_bytes(desc.digest)

    async def _ensure_layers(
        self,
        image: ResolvedImage,
        diff_ids: list[str],
        chains: list[str],
        progress: ProgressFn,
    ) -> list[int]:
        """Download and unpack missing layers concurrently; register them bottom-up."""
        tasks = [
            asyncio.create_task(self._ensure_layer(image, desc, diff_id, chain, progress))
            for desc, diff_id, chain in zip(image.layers, diff_ids, chains, strict=True)
        ]
        staged: list[tuple[Path | None, LayerRecord]] = []
        try:
            staged = list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, tuple) and result[0] is not None:
                    self.layers.discard(result[0])
                    self._drop_unused_blob(result[1].blob_digest)
            raise
        parent = None
        for path, record in staged:
            record = LayerRecord(
                chain_id=record.chain_id,
                diff_id=record.diff_id,
                parent=parent,
                blob_digest=record.blob_digest,
                blob_size=record.blob_size,
                size=record.size,
            )
            if path is not None:
                self.layers.register(path, record)
            parent = record.chain_id
        return [record.size for _, record in staged]

    async def _ensure_layer(
        self,
        image: ResolvedImage,
        desc: mt.Descriptor,
        diff_id: str,
        chain: str,
        progress: ProgressFn,
    ) -> tuple[Path | None, LayerRecord]:
        lid = short_id(desc.digest)
        lock = self._layer_locks.setdefault(chain, asyncio.Lock())
        async with lock:
            existing = self.metadata.get_layer(chain)
            if existing is not None:
                progress(PullEvent(status="Already exists", layer_id=lid))
                return None, existing
            progress(PullEvent(status="Pulling fs layer", layer_id=lid, total=desc.size))
            tmp = self.content.new_ingest()
            last = 0.0
            try:

                def report(done: int) -> None:
                    # A few updates a second are enough for a progress bar.
                    nonlocal last
                    now = time.monotonic()
                    if now - last >= PROGRESS_INTERVAL or done == desc.size:
                        last = now
                        progress(
                            PullEvent(
                                status="Downloading", layer_id=lid, current=done, total=desc.size
                            )
                        )

                await self.registry.fetch_blob(image, desc, tmp, report)
                progress(PullEvent(status="Download complete", layer_id=lid, total=desc.size))
                progress(PullEvent(status="Extracting", layer_id=lid, total=desc.size))
                staging, result = await self.layers.unpack(tmp, diff_id)
                # The compressed blob stays: a push sends these exact bytes, so the
                # manifest (and its digest) is the one pulled.
                try:
                    await asyncio.to_thread(self.content.commit, desc.digest, tmp, verified=True)
                except BaseException:
                    self.layers.discard(staging)
                    raise
            finally:
                self.content.discard(tmp)
            progress(PullEvent(status="Pull complete", layer_id=lid))
            record = LayerRecord(chain, diff_id, None, desc.digest, desc.size, result.size)
            return staging, record

    # -- names -----------------------------------------------------------------

    def tag(self, source: str, target: str) -> None:
        record = self.resolve(source)
        ref = parse_reference(target)
        if ref.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {target}")
        self.metadata.set_name(f"{ref.name}:{ref.tag}", "tag", record.id)
        self.announce("tag", record.id, ref.familiar())

    async def remove(self, text: str, *, force: bool = False, prune: bool = True) -> RemoveResult:
        """docker rmi: untag the name given; delete the image once nothing names it.

        An image others were committed from (its children) keeps its layers for
        them: removing its last tag only untags it, and it goes with its last
        child, as docker prunes untagged parents (unless `prune` is off).
        """
        record, matched = self._lookup(text)
        result = RemoveResult()
        if matched is not None and matched in record.tags and len(record.tags) > 1:
            self.metadata.remove_name(matched)
            result.untagged.append(matched)
            self.announce("untag", record.id, record.id)
            return result
        if matched is None and not force:
            repos = {_repository(n) for n in record.tags}
            if len(repos) > 1:
                raise FailedPrecondition(
                    f"conflict: unable to delete {short_id(record.id)} (must be forced) - "
                    "image is referenced in multiple repositories"
                )
        children = self.metadata.children_of(record.id)
        if children and matched is not None and matched in record.tags:
            self.metadata.remove_name(matched)
            result.untagged.append(matched)
            return result
        if children:
            raise FailedPrecondition(
                f"conflict: unable to delete {short_id(record.id)} (cannot be forced) - "
                "image has dependent child images"
            )
        users = self.containers_using(record.id)
        if users and not force:
            raise FailedPrecondition(
                f"conflict: unable to delete {short_id(record.id)} (cannot be forced) - "
                f"image is being used by container {short_id(users[0])}"
            )
        if matched is not None and matched in record.digests and record.tags:
            self.metadata.remove_name(matched)
            result.untagged.append(matched)
            self.announce("untag", record.id, record.id)
            return result
        result.untagged.extend([*record.tags, *record.digests])
        await self._delete(record, result, prune=prune)
        return result

    async def remove_everywhere(self, text: str) -> RemoveResult:
        """CRI RemoveImage: the image goes with all its names; absent is fine."""
        try:
            record = self.resolve(text)
        except NotFound:
            return RemoveResult()
        users = self.containers_using(record.id)
        if users:
            raise FailedPrecondition(
                f"image {record.id} is in use by container {short_id(users[0])}"
            )
        result = RemoveResult(untagged=[*record.tags, *record.digests])
        await self._delete(record, result)
        return result

    async def _delete(
        self, record: ImageRecord, result: RemoveResult, *, prune: bool = True
    ) -> None:
        parent = self.metadata.parent_of(record.id)
        await self._delete_one(record, result)
        # docker prunes the untagged parents nothing else needs, quietly.
        while prune and parent and (above := self.metadata.get_image(parent)) is not None:
            if (
                above.tags
                or above.digests
                or self.metadata.children_of(above.id)
                or self.containers_using(above.id)
            ):
                break
            parent = self.metadata.parent_of(above.id)
            await self._delete_one(above, result)

    async def _delete_one(self, record: ImageRecord, result: RemoveResult) -> None:
        for _name in [*record.tags, *record.digests]:
            self.announce("untag", record.id, record.id)
        self.metadata.delete_image(record.id)
        self.announce("delete", record.id, record.id)
        result.deleted.append(record.id)
        for digest in (record.id, record.manifest_digest):
            if digest and not self.metadata.blob_in_use(digest):
                self.content.delete(digest)
        while unused := self.metadata.unused_layers():
            for layer in unused:
                await asyncio.to_thread(self.layers.delete, layer.chain_id)
                self._drop_unused_blob(layer.blob_digest)
                result.deleted.append(layer.chain_id)
                result.space_reclaimed += layer.size
        log.info("image_removed", image_id=record.id)

    def _drop_unused_blob(self, digest: str | None) -> None:
        if digest and not self.metadata.blob_in_use(digest):
            self.content.delete(digest)

    async def prune(self, *, all_images: bool = False, filters: dict[str, str]) -> RemoveResult:
        until = _until_filter(filters.get("until"))
        labels = [v for k, v in filters.items() if k == "label"]
        unknown = set(filters) - {"until", "label", "dangling"}
        if unknown:
            raise InvalidArgument(f"invalid filter {sorted(unknown)[0]!r} for image prune")
        result = RemoveResult()
        for listed in self.metadata.list_images():
            record = self.metadata.get_image(listed.id)  # an earlier delete may have pruned it
            if record is None or (record.tags and not all_images):
                continue
            if self.metadata.children_of(record.id) or self.containers_using(record.id):
                continue
            if until is not None and parse_created(record.created) >= until:
                continue
            if labels and not _labels_match(self.config(record), labels):
                continue
            result.untagged.extend([*record.tags, *record.digests])
            await self._delete(record, result)
        return result

    # -- import ----------------------------------------------------------------

    async def import_tarball(
        self,
        chunks: AsyncIterator[bytes],
        *,
        reference: str = "",
        changes: list[str] | None = None,
        message: str = "",
        platform: str = "",
        source: str = "-",
    ) -> str:
        """docker import: a root filesystem tarball becomes a one-layer image."""
        ref = parse_reference(reference) if reference else None
        if ref is not None and ref.digest:
            raise InvalidArgument(f"cannot import to a digest reference: {reference}")
        plat = mt.Platform.parse(platform) if platform else mt.Platform.host()
        image_config = apply_changes({}, list(changes or []))
        tmp = self.content.new_ingest()
        try:
            size = 0
            with tmp.open("wb") as out:
                async for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
            if size == 0:
                raise InvalidArgument("import: the tarball is empty")
            try:
                layer = await layer_from_tar(self, tmp)
            except InvalidArgument as exc:
                # The staging file's name means nothing to the user; their tarball does.
                text = exc.message.replace(f"layer {tmp.name}", "the tarball")
                raise InvalidArgument(f"import: {text}") from exc
            created = now_rfc3339()
            history: dict[str, Any] = {"created": created, "created_by": f"Imported from {source}"}
            if message:
                history["comment"] = message
            config_doc = {
                "architecture": plat.architecture,
                "os": plat.os,
                **({"variant": plat.variant} if plat.variant else {}),
                "created": created,
                "config": image_config,
                "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
                "history": [history],
            }
            names = [(f"{ref.name}:{ref.tag}", "tag")] if ref is not None else []
            image_id, _ = store_image(
                self, config_doc=config_doc, base=None, layer=layer, names=names
            )
        finally:
            self.content.discard(tmp)
        if ref is not None:
            self.announce("tag", image_id, ref.familiar())
        self.announce("import", image_id, image_id)
        log.info("image_imported", image_id=image_id, ref=str(ref) if ref else None)
        return image_id

    # -- usage -----------------------------------------------------------------

    def fs_usage(self) -> tuple[int, int]:
        layer_bytes, layer_inodes = self.layers.usage()
        blob_bytes, blob_inodes = self.content.usage()
        return layer_bytes + blob_bytes, layer_inodes + blob_inodes

    def collect_garbage(self) -> None:
        """At start: drop what a crash left half-made (staging dirs, orphan blobs)."""
        self.layers.collect_garbage()
        for digest in self.content.digests():
            if not self.metadata.blob_in_use(digest):
                self.content.delete(digest)


def _parse_config(data: bytes, digest: str) -> dict[str, Any]:
    try:
        config = json.loads(data)
        diff_ids = config["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(f"image config {digest} is not a valid image config: {exc}") from exc
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidArgument(f"image config {digest}: rootfs.diff_ids must be a list of digests")
    return config


def _repository(name: str) -> str:
    return name.rsplit("@", 1)[0] if "@" in name else name.rsplit(":", 1)[0]


def _labels_match(config: dict[str, Any], wanted: list[str]) -> bool:
    labels = (config.get("config") or {}).get("Labels") or {}
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _until_filter(value: str | None) -> float | None:
    """`until` as a timestamp or a Go-style duration ago (10m, 24h)."""
    if not value:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    if value[-1] in units and value[:-1].replace(".", "", 1).isdigit():
        return dt.datetime.now(dt.UTC).timestamp() - float(value[:-1]) * units[value[-1]]
    with contextlib.suppress(ValueError):
        return float(value)
    stamp = parse_created(value)
    if stamp == 0.0:
        raise InvalidArgument(f"invalid until filter {value!r}: want a timestamp or a duration")
    return stamp


__all__ = ["ImageService", "PullEvent", "PullResult", "RemoveResult", "sha256_digest"]

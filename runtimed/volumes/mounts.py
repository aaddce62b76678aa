"""A container's mounts through its life: resolved at create, mounted at each start,
released when it stops, and its anonymous volumes removed with it when asked."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from runtimed.core.events import VOLUME
from runtimed.core.model import Container
from runtimed.errors import FailedPrecondition, InvalidArgument, NotFound, RuntimedError
from runtimed.oci.spec import BindMount, SpecRequest
from runtimed.volumes.copyup import copy_up
from runtimed.volumes.names import (
    anonymous_name,
    check_name,
    check_sub_path,
    clean_target,
    join_no_symlinks,
)
from runtimed.volumes.plan import (
    MountEntry,
    check_propagation,
    check_tmpfs_options,
    oci_mount,
    plan_of,
)
from runtimed.volumes.propagation import ensure_shared
from runtimed.volumes.service import VolumeService
from runtimed.volumes.store import ActiveMount

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService

log = structlog.get_logger(__name__)

COPY_ID_SUFFIX = "-copyup"
SHARING = ("shared", "rshared", "slave", "rslave")


def image_snapshot_key(container_id: str, index: int) -> str:
    return f"imgvol-{container_id}-{index}"


class ContainerMounts:
    def __init__(self, volumes: VolumeService, containers: ContainerService) -> None:
        self.volumes = volumes
        self.containers = containers
        # A stop and a removal may release the same container at once: one Unmount each.
        self._release_locks: dict[str, asyncio.Lock] = {}
        # An image an image volume shows is in use, as a container's own image is.
        images = containers.images
        base = images.containers_using
        images.containers_using = lambda image_id: self._image_users(image_id, base(image_id))

    def _image_users(self, image_id: str, users: list[str]) -> list[str]:
        return users + [
            c.id
            for c in self.containers.list()
            if c.id not in users
            and any(e.type == "image" and e.image_id == image_id for e in plan_of(c.config.extras))
        ]

    # -- create ----------------------------------------------------------------

    def resolve(
        self, raw: dict[str, Any], binds: list[BindMount], image_config: dict[str, Any]
    ) -> list[MountEntry]:
        """The request's mounts checked and completed: nothing is made yet."""
        targets = {clean_target(b.destination) for b in binds}
        resolved: list[MountEntry] = []

        def claim(target: str) -> None:
            if target in targets:
                raise InvalidArgument(f"Duplicate mount point: {target}")
            targets.add(target)

        for data in raw.get("mounts", []):
            entry = MountEntry.from_dict(data)
            entry.target = clean_target(entry.target)
            claim(entry.target)
            self._check_entry(entry)
            resolved.append(entry)
        for spec in raw.get("volumes_from", []):
            for entry in self._volumes_from(spec):
                if entry.target not in targets:
                    targets.add(entry.target)
                    resolved.append(entry)
        for path in sorted(image_config.get("Volumes") or {}):
            try:
                target = clean_target(path, "image VOLUME")
            except InvalidArgument as exc:
                # The image's mistake, not the user's: docker runs it without that volume.
                log.warning("image_volume_ignored", path=path, reason=exc.message)
                continue
            if target not in targets:
                targets.add(target)
                resolved.append(
                    MountEntry(
                        type="volume",
                        target=target,
                        source=anonymous_name(),
                        anonymous=True,
                        driver="local",
                    )
                )
        return resolved

    def _check_entry(self, entry: MountEntry) -> None:
        if entry.type == "volume":
            if entry.source:
                check_name(entry.source)
            else:
                entry.source, entry.anonymous = anonymous_name(), True
            existing = self.volumes.records.get(entry.source)
            if existing is not None:
                if entry.driver and entry.driver != existing.driver:
                    raise FailedPrecondition(
                        f"volume {entry.source} already exists with driver {existing.driver!r}, "
                        f"not {entry.driver!r}"
                    )
                entry.driver = existing.driver
            else:
                entry.driver = entry.driver or "local"
                self.volumes.driver(entry.driver)  # an unknown driver fails the create now
        elif entry.type == "bind":
            if not entry.source.startswith("/"):
                raise InvalidArgument(
                    f'invalid mount config for type "bind": source {entry.source!r} must be '
                    "an absolute host path"
                )
            entry.source = os.path.normpath(entry.source)
            if not os.path.exists(entry.source):
                raise InvalidArgument(
                    'invalid mount config for type "bind": bind source path does not exist: '
                    f"{entry.source}"
                )
            check_propagation(entry.propagation)
        elif entry.type == "tmpfs":
            if entry.source:
                raise InvalidArgument(
                    f'invalid mount config for type "tmpfs": a tmpfs has no source '
                    f"({entry.source!r})"
                )
            entry.options = check_tmpfs_options(entry.options)
            if entry.tmpfs_size < 0:
                raise InvalidArgument("invalid tmpfs size: it cannot be negative")
        elif entry.type == "image":
            record = self.containers.images.resolve(entry.source)
            entry.image_id = record.id
            entry.readonly = True
            entry.sub_path = check_sub_path(entry.sub_path)
        else:
            raise InvalidArgument(f"invalid mount type {entry.type!r}: use bind, volume or tmpfs")

    def _volumes_from(self, spec: str) -> list[MountEntry]:
        ref, _, mode = spec.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidArgument(f"invalid mode for --volumes-from {spec!r}: use ro or rw")
        source = self.containers.get(ref)
        force_ro = mode == "ro"
        out = []
        for m in source.config.spec.get("mounts", []):
            if m.get("type", "bind") != "bind":
                continue
            out.append(
                MountEntry(
                    type="bind",
                    target=m["destination"],
                    source=m["source"],
                    readonly=bool(m.get("readonly")) or force_ro,
                    propagation=m.get("propagation") or "",
                    options=list(m.get("options") or []),
                    from_container=source.id,
                )
            )
        for entry in plan_of(source.config.extras):
            if entry.type not in ("volume", "bind"):
                continue
            entry.readonly = entry.readonly or force_ro
            entry.nocopy = True  # docker copies an image's files only into a new mount
            entry.from_container = entry.from_container or source.id
            out.append(entry)
        return out

    async def prepare(self, container: Container) -> None:
        """At create: make the volumes, copy image content into empty ones, and check
        image volumes."""
        plan = plan_of(container.config.extras)
        rootfs: Path | None = None
        for index, entry in enumerate(plan):
            if entry.type == "volume":
                record = await self.volumes.create(
                    entry.source,
                    entry.driver,
                    entry.driver_opts,
                    entry.labels,
                    anonymous=entry.anonymous,
                )
                if record.needs_copy and not entry.nocopy and not entry.from_container:
                    rootfs = rootfs or await self._rootfs(container)
                    await self._copy_up(container, entry, rootfs)
            elif entry.type == "image":
                await self._image_path(container, entry, index)

    async def _rootfs(self, container: Container) -> Path:
        return await asyncio.to_thread(
            self.containers.snapshotter.mount, container.id, self._lowers(container.config.image_id)
        )

    def _lowers(self, image_id: str) -> list[Path]:
        record = self.containers.images.metadata.get_image(image_id)
        if record is None:
            raise NotFound(f"image {image_id} is gone")
        layers = self.containers.images.layers
        return [layers.path(c) for c in reversed(record.chain_ids)]

    async def _copy_up(self, container: Container, entry: MountEntry, rootfs: Path) -> None:
        record = self.volumes.record(entry.source)
        driver = self.volumes.driver(record.driver)
        holder = container.id + COPY_ID_SUFFIX
        records = self.volumes.records
        records.add_mount(ActiveMount(holder, record.name, record.driver, holder, ""))
        try:
            path = await driver.mount(record.name, holder)
        except BaseException:
            records.delete_mount(holder, record.name)
            raise
        try:
            if await asyncio.to_thread(copy_up, rootfs, entry.target, Path(path)):
                records.copied(record.name)
        finally:
            await self.release(holder, final=True)

    async def _image_path(self, container: Container, entry: MountEntry, index: int) -> str:
        lowers = self._lowers(entry.image_id)
        key = image_snapshot_key(container.id, index)
        root = await asyncio.to_thread(self.containers.snapshotter.mount, key, lowers)
        if not entry.sub_path:
            return str(root)
        path = await asyncio.to_thread(join_no_symlinks, root, entry.sub_path)
        if not path.is_dir():
            raise InvalidArgument(f"image sub-path {entry.sub_path!r} is not a directory")
        return str(path)

    # -- start / stop ----------------------------------------------------------

    async def mount_all(self, container: Container, spec: SpecRequest) -> None:
        """Mount every volume and add all our mounts to the spec; on failure, nothing stays
        mounted and the error says which volume and why."""
        await self.release(container)  # whatever a failed earlier start left
        plan = plan_of(container.config.extras)
        try:
            paths = await self._mount_volumes(container, plan)
            for index, entry in enumerate(plan):
                if entry.type == "volume":
                    spec.mounts.append(oci_mount(entry, paths[entry.source]))
                elif entry.type == "bind":
                    if not os.path.exists(entry.source):
                        raise InvalidArgument(
                            f"bind source path {entry.source} does not exist any more"
                        )
                    spec.mounts.append(oci_mount(entry, entry.source))
                elif entry.type == "tmpfs":
                    spec.mounts.append(oci_mount(entry, "tmpfs"))
                elif entry.type == "image":
                    path = await self._image_path(container, entry, index)
                    spec.mounts.append(oci_mount(entry, path))
            for mount in spec.mounts:
                if mount.type == "bind" and mount.propagation in SHARING:
                    await asyncio.to_thread(ensure_shared, mount.source)
        except BaseException:
            await self.release(container)
            raise

    async def _mount_volumes(self, container: Container, plan: list[MountEntry]) -> dict[str, str]:
        paths: dict[str, str] = {}
        for entry in plan:
            if entry.type != "volume" or entry.source in paths:
                continue
            record = self.volumes.record(entry.source)
            driver = self.volumes.driver(record.driver)
            # Recorded before the call, so a crash right after it still leads to an Unmount.
            active = ActiveMount(container.id, record.name, record.driver, container.id, "")
            self.volumes.records.add_mount(active)
            try:
                path = await driver.mount(record.name, container.id)
            except BaseException as exc:
                self.volumes.records.delete_mount(container.id, record.name)
                if isinstance(exc, RuntimedError):
                    raise type(exc)(
                        f"error while mounting volume {record.name!r}: {exc.message}"
                    ) from None
                raise
            self.volumes.records.add_mount(
                ActiveMount(container.id, record.name, record.driver, container.id, path)
            )
            if path != record.mountpoint:
                self.volumes.records.set_mountpoint(record.name, path)
            paths[record.name] = path
            self.volumes.events.publish(
                VOLUME,
                "mount",
                record.name,
                {
                    "driver": record.driver,
                    "container": container.id,
                    "destination": entry.target,
                    "read/write": "false" if entry.readonly else "true",
                    "propagation": entry.propagation,
                },
            )
        return paths

    async def release(self, container: Container | str, *, final: bool = False) -> None:
        """Unmount what the container holds; a failed unmount is kept for a later try
        unless `final` (the container is going away)."""
        container_id = container if isinstance(container, str) else container.id
        lock = self._release_locks.setdefault(container_id, asyncio.Lock())
        async with lock:
            await self._release(container_id, final=final)
        if final:
            self._release_locks.pop(container_id, None)

    async def _release(self, container_id: str, *, final: bool) -> None:
        for active in self.volumes.records.mounts(container_id):
            try:
                driver = self.volumes.driver(active.driver)
                await driver.unmount(active.volume, active.mount_id)
            except (RuntimedError, OSError) as exc:
                log.warning(
                    "volume_unmount_failed",
                    container_id=container_id,
                    volume=active.volume,
                    error=getattr(exc, "message", str(exc)),
                )
                if not final:
                    continue
            self.volumes.records.delete_mount(container_id, active.volume)
            if container_id.endswith(COPY_ID_SUFFIX):
                continue  # the copy-up's own mount, not a container's: no event
            self.volumes.events.publish(
                VOLUME,
                "unmount",
                active.volume,
                {"driver": active.driver, "container": container_id},
            )

    async def forget(self, container: Container, *, remove_volumes: bool) -> None:
        """The container is being removed: release, drop image snapshots, and remove its
        anonymous volumes if asked (always for CRI containers: kubelet cannot see them)."""
        await self.release(container, final=True)
        plan = plan_of(container.config.extras)
        for index, entry in enumerate(plan):
            if entry.type == "image":
                key = image_snapshot_key(container.id, index)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.containers.snapshotter.remove, key)
        if not (remove_volumes or container.config.cri is not None):
            return
        for entry in plan:
            if entry.type != "volume" or not entry.anonymous or entry.from_container:
                continue
            if self.volumes.used_by(entry.source, excluding=container.id):
                log.info("volume_kept_in_use", volume=entry.source)
                continue
            try:
                await self.volumes.remove(entry.source, force=True, excluding=container.id)
            except RuntimedError as exc:
                log.warning("volume_remove_failed", volume=entry.source, error=exc.message)

    async def reconcile(self) -> None:
        """At daemon start: release mounts of containers that are not running (a failed
        start, or a container removed while we were down)."""
        containers = self.containers.list()
        running = {c.id for c in containers if c.running}
        known = {c.id for c in containers}
        for holder in {m.container_id for m in self.volumes.records.mounts()} - running:
            await self.release(holder, final=holder not in known)


def extras_plan(entries: list[MountEntry]) -> dict[str, Any]:
    return {"mounts": [e.to_dict() for e in entries], "resolved": True}

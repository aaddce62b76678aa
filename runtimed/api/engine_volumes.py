"""The volume half of runtimed.v1.Engine: volumes, plugins, and the mounts of a new container."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from runtimed.errors import InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.volumes.plan import MountEntry
from runtimed.volumes.service import VolumeView, rfc3339

if TYPE_CHECKING:
    from runtimed.services import Runtime

_TYPES = ("volume", "bind", "tmpfs")


def _mount_entry(spec: pb.MountSpec) -> MountEntry:
    kind = spec.type or "volume"
    if kind not in _TYPES:
        raise InvalidArgument(f"invalid mount type {kind!r}: use bind, volume or tmpfs")
    volume_only = spec.volume_driver or spec.volume_opts or spec.volume_labels or spec.no_copy
    if volume_only and kind != "volume":
        raise InvalidArgument(f"cannot mix 'volume-*' options with mount type '{kind}'")
    if spec.bind_propagation and kind != "bind":
        raise InvalidArgument(f"cannot mix 'bind-*' options with mount type '{kind}'")
    tmpfs_only = spec.tmpfs_size or spec.tmpfs_mode or spec.tmpfs_options
    if tmpfs_only and kind != "tmpfs":
        raise InvalidArgument(f"cannot mix 'tmpfs-*' options with mount type '{kind}'")
    return MountEntry(
        type=kind,
        target=spec.target,
        source=spec.source,
        readonly=spec.readonly,
        propagation=spec.bind_propagation,
        driver=spec.volume_driver,
        driver_opts=dict(spec.volume_opts),
        labels=dict(spec.volume_labels),
        nocopy=spec.no_copy,
        tmpfs_size=spec.tmpfs_size,
        tmpfs_mode=spec.tmpfs_mode,
        options=list(spec.tmpfs_options),
    )


def volume_extras(req: pb.CreateContainerRequest) -> dict[str, Any]:
    """extras["volumes"] of a new container: --mount, -v NAME:/path, -v /path, --tmpfs,
    --volumes-from. Binds with a host path stay CreateRequest.binds."""
    entries = [_mount_entry(m) for m in req.mounts]
    for bind in req.binds:
        if bind.source.startswith("/"):
            continue
        # docker's Binds carry named volumes too: NAME:/path[:ro]
        entries.append(
            MountEntry(
                type="volume", target=bind.target, source=bind.source, readonly=bind.readonly
            )
        )
    return {
        "mounts": [e.to_dict() for e in entries],
        "volumes_from": list(req.volumes_from),
    }


def volume_message(view: VolumeView) -> pb.Volume:
    record = view.record
    return pb.Volume(
        name=record.name,
        driver=record.driver,
        mountpoint=record.mountpoint,
        labels=record.labels,
        options=record.options,
        created_at=rfc3339(record.created_at) if record.created_at else "",
        scope=view.scope,
        used_by=view.used_by,
        status={k: v if isinstance(v, str) else json.dumps(v) for k, v in view.status.items()},
    )


class VolumeRpcs:
    rt: Runtime

    async def CreateVolume(self, request: pb.CreateVolumeRequest, context: Any) -> pb.Volume:
        record = await self.rt.volumes.create(
            request.name, request.driver, dict(request.driver_opts), dict(request.labels)
        )
        return volume_message(await self.rt.volumes.inspect(record.name))

    async def ListVolumes(
        self, request: pb.ListVolumesRequest, context: Any
    ) -> pb.ListVolumesResponse:
        views, warnings = await self.rt.volumes.list([(f.key, f.value) for f in request.filters])
        return pb.ListVolumesResponse(volumes=[volume_message(v) for v in views], warnings=warnings)

    async def InspectVolume(self, request: pb.VolumeRef, context: Any) -> pb.Volume:
        return volume_message(await self.rt.volumes.inspect(request.name))

    async def RemoveVolume(self, request: pb.RemoveVolumeRequest, context: Any) -> pb.Empty:
        await self.rt.volumes.remove(request.name, force=request.force)
        return pb.Empty()

    async def PruneVolumes(
        self, request: pb.PruneVolumesRequest, context: Any
    ) -> pb.PruneVolumesResponse:
        deleted, reclaimed = await self.rt.volumes.prune(
            [(f.key, f.value) for f in request.filters], all_volumes=request.all
        )
        return pb.PruneVolumesResponse(deleted=deleted, space_reclaimed=reclaimed)

    async def ListPlugins(
        self, request: pb.ListPluginsRequest, context: Any
    ) -> pb.ListPluginsResponse:
        plugins = await self.rt.volumes.plugins()
        return pb.ListPluginsResponse(
            plugins=[
                pb.Plugin(
                    name=p.name,
                    kind=p.kind,
                    address=p.address,
                    enabled=True,
                    state=p.state,
                    error=p.error,
                )
                for p in plugins
            ]
        )

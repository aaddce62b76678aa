"""GET /system/df: core/diskusage's records in Docker's shape (`docker system df`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from runtimed.api import imageview
from runtimed.core.diskusage import KINDS, BuildCacheUsage, VolumeUsage, disk_usage
from runtimed.dockerapi import containerdocs
from runtimed.dockerapi.context import Context
from runtimed.dockerapi.http import Request, Response, json_response
from runtimed.dockerapi.images import image_doc
from runtimed.dockerapi.router import Router
from runtimed.dockerapi.volumes import volume_doc
from runtimed.errors import InvalidArgument


def register(router: Router, ctx: Context) -> None:
    h = DiskUsageHandlers(ctx)
    router.add("GET", "/system/df", h.df)


def _rfc3339(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _volume(used: VolumeUsage) -> dict[str, Any]:
    return volume_doc(used.view) | {
        "UsageData": {"Size": used.size, "RefCount": len(used.view.used_by)}
    }


def _build_cache(used: BuildCacheUsage) -> dict[str, Any]:
    return {
        "ID": used.id,
        "Parent": "",
        "Parents": None,
        "Type": "regular",
        "Description": "",
        "InUse": used.in_use,
        "Shared": used.shared,
        "Size": used.size,
        "CreatedAt": _rfc3339(used.created),
        "LastUsedAt": _rfc3339(used.created),
        "UsageCount": 1,
    }


class DiskUsageHandlers:
    def __init__(self, ctx: Context) -> None:
        self.services = ctx.services

    async def df(self, request: Request) -> Response:
        # `type` (API 1.42): what to measure; none asks for everything.
        asked = frozenset(request.query.get("type") or KINDS)
        unknown = sorted(asked - set(KINDS))
        if unknown:
            raise InvalidArgument(f"unknown object type: {unknown[0]}")
        usage = await disk_usage(self.services, asked)
        images, containers = self.services.images, self.services.containers
        doc: dict[str, Any] = {}
        if "image" in asked:
            doc["LayersSize"] = usage.layers_size
            doc["Images"] = [
                image_doc(request, imageview.summary(images, i.record), i.shared_size)
                for i in usage.images
            ]
        if "container" in asked:
            doc["Containers"] = [
                containerdocs.summary(containers, c.container) | {"SizeRw": c.size_rw}
                for c in usage.containers
            ]
        if "volume" in asked:
            doc["Volumes"] = [_volume(v) for v in usage.volumes]
        if "build-cache" in asked:
            doc["BuildCache"] = [_build_cache(b) for b in usage.build_cache]
        return json_response(doc)

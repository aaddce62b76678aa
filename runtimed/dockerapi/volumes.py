"""/volumes: list, inspect, create, remove, prune."""

from __future__ import annotations

from typing import Any

from runtimed.dockerapi.context import Context
from runtimed.dockerapi.http import Request, Response, json_response, no_content
from runtimed.dockerapi.router import Router, at_least
from runtimed.errors import InvalidArgument
from runtimed.volumes.service import VolumeView, rfc3339


def register(router: Router, ctx: Context) -> None:
    h = VolumeHandlers(ctx)
    router.add("GET", "/volumes", h.list)
    router.add("POST", "/volumes/create", h.create)
    router.add("POST", "/volumes/prune", h.prune)
    router.add("GET", "/volumes/{name}", h.inspect)
    router.add("DELETE", "/volumes/{name}", h.remove)


def volume_doc(view: VolumeView) -> dict[str, Any]:
    record = view.record
    return {
        "Name": record.name,
        "Driver": record.driver,
        "Mountpoint": record.mountpoint,
        "CreatedAt": rfc3339(record.created_at) if record.created_at else "",
        "Status": view.status or None,
        "Labels": record.labels or None,
        "Scope": view.scope,
        "Options": record.options or None,
        "UsageData": None,
    }


def _pairs(request: Request) -> list[tuple[str, str]]:
    return [(k, v) for k, values in request.filters().items() for v in values]


class VolumeHandlers:
    def __init__(self, ctx: Context) -> None:
        self.volumes = ctx.services.volumes

    async def list(self, request: Request) -> Response:
        views, warnings = await self.volumes.list(_pairs(request))
        return json_response(
            {"Volumes": [volume_doc(v) for v in views], "Warnings": warnings or None}
        )

    async def inspect(self, request: Request) -> Response:
        return json_response(volume_doc(await self.volumes.inspect(request.params["name"])))

    async def create(self, request: Request) -> Response:
        body = await request.json(default={})
        if not isinstance(body, dict):
            raise InvalidArgument("the body must be a JSON object")
        record = await self.volumes.create(
            str(body.get("Name") or ""),
            str(body.get("Driver") or ""),
            {str(k): str(v) for k, v in (body.get("DriverOpts") or {}).items()},
            {str(k): str(v) for k, v in (body.get("Labels") or {}).items()},
        )
        return json_response(volume_doc(await self.volumes.inspect(record.name)), 201)

    async def remove(self, request: Request) -> Response:
        await self.volumes.remove(request.params["name"], force=request.flag("force"))
        return no_content()

    async def prune(self, request: Request) -> Response:
        pairs = _pairs(request)
        # API 1.42 made prune take anonymous volumes only, unless all=true.
        all_volumes = any(k == "all" and v in ("true", "1") for k, v in pairs)
        all_volumes = all_volumes or not at_least(request, "1.42")
        deleted, reclaimed = await self.volumes.prune(
            [(k, v) for k, v in pairs if k != "all"], all_volumes=all_volumes
        )
        return json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed})

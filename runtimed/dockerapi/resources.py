"""Resources of a running container through cgroups: update, pause, unpause."""

from __future__ import annotations

from runtimed.api.engine_resources import resources_from_pb
from runtimed.cgroups.service import ResourceService
from runtimed.dockerapi.context import Context
from runtimed.dockerapi.createconfig import resources
from runtimed.dockerapi.http import Request, Response, json_response, no_content
from runtimed.dockerapi.router import Router
from runtimed.errors import FailedPrecondition, InvalidArgument


def register(router: Router, ctx: Context) -> None:
    h = ResourceHandlers(ctx)
    router.add("POST", "/containers/{id}/update", h.update)
    router.add("POST", "/containers/{id}/pause", h.pause)
    router.add("POST", "/containers/{id}/unpause", h.unpause)


class ResourceHandlers:
    def __init__(self, ctx: Context) -> None:
        self.services = ctx.services

    @property
    def _resources(self) -> ResourceService:
        if self.services.resources is None:
            raise FailedPrecondition("this daemon has no cgroups to change resources with")
        return self.services.resources

    async def update(self, request: Request) -> Response:
        body = await request.json(default={})
        if not isinstance(body, dict):
            raise InvalidArgument("update: the body must be a JSON object")
        if (body.get("RestartPolicy") or {}).get("Name"):
            raise InvalidArgument("updating the restart policy is not supported by runtimed")
        change, warnings = resources_from_pb(resources(body))
        _, more = await self._resources.update(
            request.params["id"], change, pids_set=body.get("PidsLimit") is not None
        )
        return json_response({"Warnings": warnings + more})

    async def pause(self, request: Request) -> Response:
        await self._resources.pause(request.params["id"])
        return no_content()

    async def unpause(self, request: Request) -> Response:
        await self._resources.unpause(request.params["id"])
        return no_content()

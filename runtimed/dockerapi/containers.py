"""/containers: create, list, inspect, start, stop, restart, kill, wait, rename, remove, prune,
top; attach and logs live in attach.py, docker cp in archive.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

from runtimed.api.containerfilter import select
from runtimed.api.engine_containers import prune_filter
from runtimed.api.engine_resources import create_resources
from runtimed.core.top import top
from runtimed.dockerapi import attach, containerdocs
from runtimed.dockerapi.context import Context
from runtimed.dockerapi.createconfig import build_plan
from runtimed.dockerapi.http import (
    Request,
    Response,
    StreamResponse,
    json_response,
    no_content,
)
from runtimed.dockerapi.router import Router
from runtimed.errors import FailedPrecondition, InvalidArgument, NotFound, RuntimedError
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

WAIT_CONDITIONS = ("", "not-running", "next-exit", "removed")


def register(router: Router, ctx: Context) -> None:
    h = ContainerHandlers(ctx)
    router.add("GET", "/containers/json", h.list)
    router.add("POST", "/containers/create", h.create)
    router.add("POST", "/containers/prune", h.prune)
    router.add("GET", "/containers/{id}/json", h.inspect)
    router.add("POST", "/containers/{id}/start", h.start)
    router.add("POST", "/containers/{id}/stop", h.stop)
    router.add("POST", "/containers/{id}/restart", h.restart)
    router.add("POST", "/containers/{id}/kill", h.kill)
    router.add("POST", "/containers/{id}/wait", h.wait)
    router.add("POST", "/containers/{id}/rename", h.rename)
    router.add("GET", "/containers/{id}/top", h.top)
    router.add("DELETE", "/containers/{id}", h.remove)
    attach.register(router, ctx)


class ContainerHandlers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.containers = ctx.services.containers

    async def list(self, request: Request) -> Response:
        filters = [
            pb.Filter(key=key, value=value)
            for key, values in request.filters().items()
            for value in values
        ]
        limit = request.int_arg("limit", -1)
        chosen = select(
            self.containers,
            self.containers.list(),
            pb.ListContainersRequest(
                all=request.flag("all"), filters=filters, last=limit if limit > 0 else 0
            ),
        )
        return json_response([containerdocs.summary(self.containers, c) for c in chosen])

    async def create(self, request: Request) -> Response:
        body = await request.json(default={})
        plan = build_plan(body, name=request.arg("name"), platform=request.arg("platform"))
        image = plan.request.image
        try:
            self.ctx.services.images.resolve(image)
        except NotFound:
            raise NotFound(f"No such image: {_with_tag(image)}") from None
        plan.request.extras["resources"], warnings = create_resources(
            self.ctx.services.cgroups, plan.resources
        )
        container = await self.containers.create(plan.request)
        network = self.ctx.services.network
        try:
            for name, endpoint in plan.more_networks.items():
                ipam = endpoint.get("IPAMConfig") or {}
                await network.connect(
                    name,
                    container.id,
                    aliases=list(endpoint.get("Aliases") or []),
                    ip=str(ipam.get("IPv4Address") or ""),
                )
        except BaseException:
            with contextlib.suppress(Exception):
                await self.containers.remove(container.id, force=True, remove_volumes=True)
            raise
        return json_response({"Id": container.id, "Warnings": warnings}, 201)

    async def inspect(self, request: Request) -> Response:
        container = self.containers.get(request.params["id"])
        exec_ids = [e.id for e in self.ctx.execs.of_container(container.id)]
        return json_response(containerdocs.inspect(self.containers, container, exec_ids))

    async def start(self, request: Request) -> Response:
        if request.arg("checkpoint"):
            raise InvalidArgument("checkpoints are not supported by runtimed")
        container = self.containers.get(request.params["id"])
        if container.running:
            return no_content(304)
        try:
            await self.containers.start(container.id)
        except RuntimedError as exc:
            raise start_error(exc, container.config.args) from None
        return no_content()

    def _timeout(self, request: Request) -> int | None:
        return request.int_arg("t", -1) if request.has("t") else None

    async def stop(self, request: Request) -> Response:
        container = self.containers.get(request.params["id"])
        if not container.running:
            return no_content(304)
        await self.containers.stop(
            container.id, timeout=self._timeout(request), signal=request.arg("signal")
        )
        return no_content()

    async def restart(self, request: Request) -> Response:
        await self.containers.restart(request.params["id"], timeout=self._timeout(request))
        return no_content()

    async def kill(self, request: Request) -> Response:
        ref = request.params["id"]
        container = self.containers.get(ref)
        if not container.running:
            raise FailedPrecondition(
                f"Cannot kill container: {ref}: Container {container.id} is not running"
            )
        await self.containers.kill(container.id, request.arg("signal"))
        return no_content()

    async def wait(self, request: Request) -> StreamResponse:
        condition = request.arg("condition")
        if condition not in WAIT_CONDITIONS:
            raise InvalidArgument(
                f"invalid condition {condition!r}: use not-running, next-exit or removed"
            )
        container = self.containers.get(request.params["id"])
        waiting = asyncio.create_task(self.containers.wait(container.id, condition))
        # Let it look at the container now: an exit after this answer is not missed.
        await asyncio.sleep(0)

        async def body() -> AsyncIterator[bytes]:
            # The headers go out first (the docker CLI waits for them, then starts the
            # container); the status follows when the condition holds.
            yield b""
            try:
                code = await waiting
                doc = {"StatusCode": code, "Error": None}
            except RuntimedError as exc:
                doc = {"StatusCode": -1, "Error": {"Message": exc.message}}
            finally:
                waiting.cancel()
            yield json.dumps(doc).encode() + b"\n"

        return StreamResponse(body())

    async def rename(self, request: Request) -> Response:
        name = request.arg("name")
        if not name:
            raise InvalidArgument("Neither old nor new names may be empty")
        await self.containers.rename(request.params["id"], name)
        return no_content()

    async def remove(self, request: Request) -> Response:
        if request.flag("link"):
            raise InvalidArgument("removing legacy links is not supported by runtimed")
        ref = request.params["id"]
        container = self.containers.get(ref)
        if container.running and not request.flag("force"):
            raise FailedPrecondition(
                f'cannot remove container "/{container.name}": container is running: '
                "stop the container before removing or force remove"
            )
        with contextlib.suppress(NotFound):  # an --rm container may go by itself meanwhile
            await self.containers.remove(
                container.id, force=request.flag("force"), remove_volumes=request.flag("v")
            )
        return no_content()

    async def prune(self, request: Request) -> Response:
        filters = {k: v[-1] for k, v in request.filters().items() if v}
        keep = prune_filter(filters, time.time_ns())
        removed = await self.containers.prune(keep)
        return json_response(
            {"ContainersDeleted": [c.id for c in removed] or None, "SpaceReclaimed": 0}
        )

    async def top(self, request: Request) -> Response:
        container = self.containers.get(request.params["id"])
        if not container.running:
            raise FailedPrecondition(f"container {container.id} is not running")
        titles, rows = await top(container, request.arg("ps_args") or "-ef")
        return json_response({"Titles": titles, "Processes": rows})


def start_error(err: RuntimedError, args: list[str]) -> RuntimedError:
    """A command that cannot be run, said as runc says it through dockerd: clients read the
    words (the docker CLI exits 127 on "executable file not found", 126 on "permission
    denied"); crun words it otherwise."""
    lowered = err.message.lower()
    if "executable" not in lowered:
        return err
    cmd = args[0] if args else ""
    if "not found" in lowered or "no such file" in lowered:
        if "/" in cmd:
            detail = f'exec: "{cmd}": stat {cmd}: no such file or directory'
        else:
            detail = f'exec: "{cmd}": executable file not found in $PATH'
    elif any(w in lowered for w in ("permission denied", "not permitted", "is a directory")):
        detail = f'exec: "{cmd}": permission denied'
    else:
        return err
    return InvalidArgument(f"failed to create task for container: {detail} ({err.message})")


def _with_tag(image: str) -> str:
    """busybox -> busybox:latest, as dockerd names a missing image."""
    last = image.rsplit("/", 1)[-1]
    return image if "@" in image or ":" in last else image + ":latest"

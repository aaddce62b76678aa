"""GET /events: the daemon's one event bus as Docker's JSON message stream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from runtimed.api.engine_events import parse_bound
from runtimed.core.eventfilter import event_filter
from runtimed.core.events import docker_message
from runtimed.dockerapi.context import Context
from runtimed.dockerapi.http import Request, StreamResponse, json_line
from runtimed.dockerapi.router import Router
from runtimed.errors import InvalidArgument


def register(router: Router, ctx: Context) -> None:
    h = EventHandlers(ctx)
    router.add("GET", "/events", h.events)


class EventHandlers:
    def __init__(self, ctx: Context) -> None:
        self.bus = ctx.services.events

    async def events(self, request: Request) -> StreamResponse:
        now = time.time_ns()
        since = parse_bound(request.arg("since"), now)
        until = parse_bound(request.arg("until"), now)
        if since is not None and until is not None and since > until:
            raise InvalidArgument(
                f"since time ({request.arg('since')}) cannot be after until time "
                f"({request.arg('until')})"
            )
        match = event_filter((k, v) for k, values in request.filters().items() for v in values)

        async def body() -> AsyncIterator[bytes]:
            yield b""  # the headers now: `docker events` waits for them
            async for event in self.bus.stream(since_ns=since, until_ns=until, match=match):
                yield json_line(docker_message(event))

        return StreamResponse(body())

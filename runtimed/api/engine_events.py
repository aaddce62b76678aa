"""Engine.Events: Docker's event stream over gRPC, read from the daemon's one bus."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from runtimed.core.eventfilter import event_filter
from runtimed.core.events import Event
from runtimed.core.logs import parse_since
from runtimed.errors import InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

if TYPE_CHECKING:
    from runtimed.services import Runtime


def parse_bound(text: str, now_ns: int) -> int | None:
    """--since/--until as Docker takes them; None when not given (0 is the epoch)."""
    text = text.strip()
    if not text:
        return None
    return max(0, parse_since(text, now_ns))


def event_pb(event: Event) -> pb.Event:
    return pb.Event(
        type=event.type,
        action=event.action,
        actor=pb.EventActor(id=event.actor_id, attributes=dict(event.attributes)),
        scope=event.scope,
        time_nano=event.time_ns,
    )


class EventRpcs:
    rt: Runtime

    async def Events(self, request: pb.EventsRequest, context: Any) -> AsyncIterator[pb.Event]:
        now = time.time_ns()
        since = parse_bound(request.since, now)
        until = parse_bound(request.until, now)
        if since is not None and until is not None and since > until:
            raise InvalidArgument(
                f"since time ({request.since}) cannot be after until time ({request.until})"
            )
        match = event_filter((f.key, f.value) for f in request.filters)
        async for event in self.rt.events.stream(since_ns=since, until_ns=until, match=match):
            yield event_pb(event)

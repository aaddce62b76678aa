"""docker ps --filter / -a / -n: which containers a listing shows.

A key given several times matches any of its values; different keys must all
match (docker's rule).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

from runtimed.api.containerview import docker_status
from runtimed.core import health
from runtimed.core.model import Container, Status
from runtimed.errors import InvalidArgument, NotFound
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService

HEALTH_STATUSES = (health.STARTING, health.HEALTHY, health.UNHEALTHY, health.NONE)
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def _label(container: Container, want: str) -> bool:
    key, sep, value = want.partition("=")
    labels = container.config.labels
    return key in labels and (not sep or labels[key] == value)


def _ancestor(service: ContainerService, want: str) -> Callable[[Container], bool]:
    try:
        image_id = service.images.resolve(want).id
    except (NotFound, InvalidArgument):
        return lambda c: c.config.image == want
    return lambda c: c.config.image_id == image_id


def select(
    service: ContainerService, containers: list[Container], request: pb.ListContainersRequest
) -> list[Container]:
    groups: dict[str, list[str]] = defaultdict(list)
    for f in request.filters:
        groups[f.key].append(f.value)
    checks: list[Callable[[Container], bool]] = []
    for key, values in groups.items():
        if key == "id":
            checks.append(lambda c, v=values: any(c.id.startswith(x) for x in v))
        elif key == "name":
            checks.append(lambda c, v=values: any(re.search(x, c.name) for x in v))
        elif key == "label":
            checks.append(lambda c, v=values: all(_label(c, x) for x in v))
        elif key == "status":
            bad = [x for x in values if x not in STATUSES]
            if bad:
                raise InvalidArgument(
                    f"invalid filter 'status={bad[0]}': want one of {', '.join(STATUSES)}"
                )
            checks.append(lambda c, v=values: docker_status(c) in v)
        elif key == "exited":
            try:
                codes = {int(x) for x in values}
            except ValueError:
                raise InvalidArgument("invalid filter 'exited': want an exit code") from None
            checks.append(
                lambda c, v=codes: c.state.status == Status.EXITED and c.state.exit_code in v
            )
        elif key == "health":
            bad = [x for x in values if x not in HEALTH_STATUSES]
            if bad:
                raise InvalidArgument(
                    f"Unrecognised filter value for health: {bad[0]} "
                    f"(want one of {', '.join(HEALTH_STATUSES)})"
                )
            checks.append(lambda c, v=values: health.status_of(c) in v)
        elif key == "ancestor":
            matchers = [_ancestor(service, x) for x in values]
            checks.append(lambda c, m=matchers: any(f(c) for f in m))
        elif key in ("before", "since"):
            pivot = service.get(values[0]).created_at
            if key == "before":
                checks.append(lambda c, p=pivot: c.created_at < p)
            else:
                checks.append(lambda c, p=pivot: c.created_at > p)
        else:
            raise InvalidArgument(f"invalid filter {key!r}")
    show_all = request.all or request.last > 0 or "status" in groups or "exited" in groups
    chosen = [
        c
        for c in containers
        if (show_all or c.state.status == Status.RUNNING) and all(check(c) for check in checks)
    ]
    chosen.sort(key=lambda c: c.created_at, reverse=True)
    if request.last > 0:
        chosen = chosen[: request.last]
    return chosen

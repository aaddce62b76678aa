"""Endpoints of features runtimed does not have yet: a clear 501 each, not a 404.

Each becomes a small handler module of its own once its feature lands
(events, system df, stats/update/pause through cgroups, commit/history/diff/
export/save/load, push, build).
"""

from __future__ import annotations

from runtimed.dockerapi.context import Context
from runtimed.dockerapi.errors import not_implemented
from runtimed.dockerapi.http import Request, Response
from runtimed.dockerapi.router import Handler, Router

PENDING = (
    ("GET", "/events", "events"),
    ("GET", "/system/df", "system df"),
    ("GET", "/containers/{id}/stats", "container stats"),
    ("POST", "/containers/{id}/update", "container update"),
    ("POST", "/containers/{id}/pause", "container pause"),
    ("POST", "/containers/{id}/unpause", "container unpause"),
    ("GET", "/containers/{id}/changes", "container diff"),
    ("GET", "/containers/{id}/export", "container export"),
    ("POST", "/commit", "commit"),
    ("GET", "/images/get", "image save"),
    ("POST", "/images/load", "image load"),
    ("GET", "/images/{name*}/history", "image history"),
    ("GET", "/images/{name*}/get", "image save"),
    ("POST", "/images/{name*}/push", "image push"),
    ("POST", "/build", "build"),
    ("POST", "/build/prune", "build cache prune"),
)


def _refuse(what: str) -> Handler:
    async def handler(request: Request) -> Response:
        raise not_implemented(what)

    return handler


def register(router: Router, ctx: Context) -> None:
    for method, path, what in PENDING:
        router.add(method, path, _refuse(what))

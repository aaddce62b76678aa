"""Endpoints of features runtimed does not have yet: a clear 501 each, not a 404.

Each becomes a small handler module of its own once its feature lands
(system df and Docker's stats document: their figures are computed in the Engine
servicers today, api/engine_df.py and api/engine_stats.py).
"""

from __future__ import annotations

from runtimed.dockerapi.context import Context
from runtimed.dockerapi.errors import not_implemented
from runtimed.dockerapi.http import Request, Response
from runtimed.dockerapi.router import Handler, Router

PENDING = (
    ("GET", "/system/df", "system df"),
    ("GET", "/containers/{id}/stats", "container stats"),
)


def _refuse(what: str) -> Handler:
    async def handler(request: Request) -> Response:
        raise not_implemented(what)

    return handler


def register(router: Router, ctx: Context) -> None:
    for method, path, what in PENDING:
        router.add(method, path, _refuse(what))

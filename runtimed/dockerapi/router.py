"""Routes of the Docker API: `METHOD /path/{param}` onto handlers, with or without a version.

A path may start with `/vMAJOR.MINOR`: versions from MIN_API_VERSION to
API_VERSION are served (docker-compose 1.29 asks for old ones; the docker CLI
negotiates down to ours through /_ping); others are refused in dockerd's words.
`{name}` matches one path segment, `{name*}` the rest of the path (image
names hold slashes).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from runtimed.dockerapi.errors import HttpError
from runtimed.dockerapi.http import Reply, Request

# What docker CLI 28 speaks (it takes the lower of ours and its own), and dockerd's minimum.
API_VERSION = "1.50"
MIN_API_VERSION = "1.24"

_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
_PARAM = re.compile(r"\{(\w+)(\*?)\}")

Handler = Callable[[Request], Awaitable[Reply]]


def version_tuple(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def at_least(request: Request, version: str) -> bool:
    """Whether the client speaks `version` or later (unversioned paths: the newest)."""
    return version_tuple(request.version or API_VERSION) >= version_tuple(version)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


def _compile(path: str) -> re.Pattern[str]:
    out, last = [], 0
    for m in _PARAM.finditer(path):
        out.append(re.escape(path[last : m.start()]))
        out.append(f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)")
        last = m.end()
    out.append(re.escape(path[last:]))
    return re.compile("^" + "".join(out) + "/?$")


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, path: str, handler: Handler) -> None:
        self.routes.append(Route(method, _compile(path), handler))

    def resolve(self, request: Request) -> Handler:
        """The handler for the request; fills request.version and request.params."""
        path = request.path
        m = _VERSIONED.match(path)
        if m:
            wanted = (int(m.group(1)), int(m.group(2)))
            if wanted > version_tuple(API_VERSION):
                raise HttpError(
                    400,
                    f"client version {m.group(1)}.{m.group(2)} is too new. "
                    f"Maximum supported API version is {API_VERSION}",
                )
            if wanted < version_tuple(MIN_API_VERSION):
                raise HttpError(
                    400,
                    f"client version {m.group(1)}.{m.group(2)} is too old. Minimum supported "
                    f"API version is {MIN_API_VERSION}, please upgrade your client to a "
                    "newer version",
                )
            request.version = f"{wanted[0]}.{wanted[1]}"
            path = m.group(3)
        # HEAD is served by a HEAD route, else by the GET one (without its body).
        methods = [request.method] + (["GET"] if request.method == "HEAD" else [])
        allowed = False
        for method in methods:
            for route in self.routes:
                found = route.pattern.match(path)
                if found is None:
                    continue
                if route.method != method:
                    allowed = True
                    continue
                request.params = found.groupdict()
                return route.handler
        if allowed:
            raise HttpError(405, f"{request.method} is not allowed on {path}")
        raise HttpError(404, "page not found")

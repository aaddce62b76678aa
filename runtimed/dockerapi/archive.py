"""/containers/{id}/archive: `docker cp` both ways, and the stat of a path (HEAD).

The stat travels base64-encoded in the X-Docker-Container-Path-Stat header,
its mode in Go's os.FileMode bits (the docker CLI asks `IsDir()` of it), its
mtime as an RFC 3339 time.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import stat
from typing import Any

from runtimed.core.copy import copy_from_container, copy_to_container
from runtimed.dockerapi.context import Context
from runtimed.dockerapi.http import Request, Response, StreamResponse, no_content
from runtimed.dockerapi.router import Router
from runtimed.errors import InvalidArgument

STAT_HEADER = "X-Docker-Container-Path-Stat"

# Go's os.FileMode type bits.
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE, _GO_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
_GO_SETUID, _GO_SETGID, _GO_CHARDEV, _GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


def go_file_mode(mode: int) -> int:
    out = mode & 0o777
    kind = stat.S_IFMT(mode)
    out |= {
        stat.S_IFDIR: _GO_DIR,
        stat.S_IFLNK: _GO_SYMLINK,
        stat.S_IFIFO: _GO_PIPE,
        stat.S_IFSOCK: _GO_SOCKET,
        stat.S_IFBLK: _GO_DEVICE,
        stat.S_IFCHR: _GO_DEVICE | _GO_CHARDEV,
    }.get(kind, 0)
    if mode & stat.S_ISUID:
        out |= _GO_SETUID
    if mode & stat.S_ISGID:
        out |= _GO_SETGID
    if mode & stat.S_ISVTX:
        out |= _GO_STICKY
    return out


def stat_header(info: dict[str, Any]) -> str:
    mtime = dt.datetime.fromtimestamp(int(info.get("mtime") or 0), dt.UTC)
    doc = {
        "name": info["name"],
        "size": info["size"],
        "mode": go_file_mode(int(info["mode"])),
        "mtime": mtime.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "linkTarget": info.get("linkTarget") or "",
    }
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def register(router: Router, ctx: Context) -> None:
    h = ArchiveHandlers(ctx)
    router.add("HEAD", "/containers/{id}/archive", h.stat)
    router.add("GET", "/containers/{id}/archive", h.get)
    router.add("PUT", "/containers/{id}/archive", h.put)


class ArchiveHandlers:
    def __init__(self, ctx: Context) -> None:
        self.containers = ctx.services.containers

    def _path(self, request: Request) -> str:
        path = request.arg("path")
        if not path:
            raise InvalidArgument(
                "path is required: the path of a file or directory in the container"
            )
        return path

    async def stat(self, request: Request) -> Response:
        container = self.containers.get(request.params["id"])
        info, chunks = await copy_from_container(self.containers, container, self._path(request))
        await chunks.aclose()
        return Response(
            content_type="application/x-tar", headers=[(STAT_HEADER, stat_header(info))]
        )

    async def get(self, request: Request) -> StreamResponse:
        container = self.containers.get(request.params["id"])
        info, chunks = await copy_from_container(self.containers, container, self._path(request))
        return StreamResponse(
            chunks, content_type="application/x-tar", headers=[(STAT_HEADER, stat_header(info))]
        )

    async def put(self, request: Request) -> Response:
        container = self.containers.get(request.params["id"])
        if request.flag("copyUIDGID"):
            raise InvalidArgument("copyUIDGID (docker cp -a) is not supported by runtimed")
        await copy_to_container(
            self.containers, container, self._path(request), request.body_chunks()
        )
        return no_content(200)

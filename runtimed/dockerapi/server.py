"""The Docker Engine API app and its listeners.

`make_app(services)` builds the API (routes of every area onto the core
services); `DockerApiServer(app)` serves it on a unix socket (`listen_unix`)
or on any listening socket, TLS or not (`serve_socket`), all on the daemon's
event loop. One app can serve several listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from pathlib import Path
from typing import Any

import structlog

from runtimed import __version__
from runtimed.dockerapi import (
    archive,
    build,
    containers,
    diskusage,
    distribution,
    events,
    execs,
    imagemaking,
    images,
    networks,
    resources,
    stats,
    system,
    volumes,
)
from runtimed.dockerapi.context import Context
from runtimed.dockerapi.errors import error_response, message_response
from runtimed.dockerapi.http import Connection, Reply, Request
from runtimed.dockerapi.router import API_VERSION, Router
from runtimed.dockerapi.tlsstream import TlsStream
from runtimed.errors import RuntimedError
from runtimed.services import Runtime as Services

log = structlog.get_logger(__name__)

_LIMIT = 256 * 1024
AREAS = (
    system,
    diskusage,
    events,
    containers,
    stats,
    execs,
    archive,
    resources,
    imagemaking,
    images,
    distribution,
    build,
    networks,
    volumes,
)


class DockerApi:
    """Requests in, replies out: routing and the error edge (never a traceback to a client)."""

    def __init__(self, services: Services) -> None:
        self.context = Context(services)
        self.router = Router()
        for area in AREAS:
            area.register(self.router, self.context)
        self._headers = [
            ("Api-Version", API_VERSION),
            ("Docker-Experimental", "false"),
            ("Ostype", "linux"),
            ("Server", f"runtimed/{__version__} (linux)"),
        ]

    def headers(self) -> list[tuple[str, str]]:
        return self._headers

    async def handle(self, request: Request) -> Reply:
        try:
            handler = self.router.resolve(request)
            return await handler(request)
        except RuntimedError as exc:
            log.debug(
                "docker_api_failed", method=request.method, path=request.path, error=exc.message
            )
            return error_response(exc)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.error("docker_api_crashed", method=request.method, path=request.path, exc_info=exc)
            return message_response(500, f"internal error in {request.path}: {exc}")

    async def aclose(self) -> None:
        await self.context.aclose()


_apps: dict[int, DockerApi] = {}


def make_app(services: Services) -> DockerApi:
    """The Docker API of these services: one per services record, so that every listener
    (the unix socket, tcp:// ones) shares its exec instances."""
    app = _apps.get(id(services))
    if app is None or app.context.services is not services:
        app = _apps[id(services)] = DockerApi(services)
    return app


async def serve_socket(
    services: Services, sock: socket.socket, *, ssl_context: ssl.SSLContext | None = None
) -> DockerApiServer:
    """Serve the Docker API on a bound, listening socket (daemon/remote.py's tcp:// hook);
    the result's `aclose()` stops it."""
    server = DockerApiServer(make_app(services))
    await server.serve_socket(sock, ssl_context=ssl_context)
    return server


class DockerApiServer:
    """Listeners serving one DockerApi; connections are tasks on the running loop."""

    def __init__(self, app: DockerApi) -> None:
        self.app = app
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._unix_paths: list[Path] = []

    async def listen_unix(self, path: Path) -> None:
        """Listen on `path` (mode 0600; a stale socket there is replaced)."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old_umask = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self._accept, path=str(path), limit=_LIMIT)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        self._servers.append(server)
        self._unix_paths.append(path)
        log.info("docker_api_listening", socket=str(path), api_version=API_VERSION)

    async def serve_socket(
        self, sock: socket.socket, *, ssl_context: ssl.SSLContext | None = None
    ) -> asyncio.Server:
        """Serve on a socket that is bound and listening already (TCP with TLS, ...). TLS
        runs in TlsStream, not in asyncio's transport: see tlsstream.py for why."""

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._accept(reader, writer, ssl_context)

        if sock.family == socket.AF_UNIX:
            server = await asyncio.start_unix_server(accept, sock=sock, limit=_LIMIT)
        else:
            server = await asyncio.start_server(accept, sock=sock, limit=_LIMIT)
        self._servers.append(server)
        return server

    async def _accept(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        stream: Any = None
        try:
            if tls is not None:
                stream = TlsStream(reader, writer, tls)
                await stream.handshake()
            await Connection(
                stream or reader, stream or writer, self.app.handle, self.app.headers
            ).serve()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError) as exc:
            if tls is not None and stream is not None:
                log.debug("docker_api_tls_refused", error=str(exc))
        except asyncio.CancelledError:
            pass  # the server is closing
        except Exception:
            log.exception("docker_api_connection_failed")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def aclose(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        for path in self._unix_paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        await self.app.aclose()

"""runtimed.client: a Python client for runtimed's Engine API, blocking and asyncio.

Its names follow docker-py's where the idea is the same, so this reads as it would there::

    from runtimed.client import Client

    with Client.from_env() as client:  # RUNTIMED_HOST, RUNTIMED_TLS_VERIFY, RUNTIMED_CERT_PATH
        print(client.containers.run("busybox", "echo hello", remove=True))  # b"hello\\n"
        web = client.containers.run("busybox", "httpd -f", detach=True, ports={"80/tcp": 8080})
        print(web.exec_run("hostname"))            # ExecResult(exit_code=0, output=b"...")
        web.stop(); web.remove()

`AsyncClient` has the same calls with `await`. Errors are runtimed.client.errors
(APIError and its NotFound, ImageNotFound, Conflict, ... each with the gRPC `code`), and
ContainerError for a run() whose container fails. The generated gRPC stub stays
reachable as `client.api` for what this client does not cover.
"""

from runtimed.client._models import ExecResult, PullProgress
from runtimed.client.aio import (
    AsyncClient,
    AsyncContainer,
    AsyncImage,
    AsyncNetwork,
    AsyncVolume,
)
from runtimed.client.errors import (
    AlreadyExists,
    APIError,
    Conflict,
    ContainerError,
    ImageNotFound,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RuntimedException,
    Timeout,
    TLSParameterError,
    Unavailable,
)
from runtimed.client.sync import Client, Container, Image, Network, Volume
from runtimed.client.tls import TLSConfig

__all__ = [
    "APIError",
    "AlreadyExists",
    "AsyncClient",
    "AsyncContainer",
    "AsyncImage",
    "AsyncNetwork",
    "AsyncVolume",
    "Client",
    "Conflict",
    "Container",
    "ContainerError",
    "ExecResult",
    "Image",
    "ImageNotFound",
    "InvalidArgument",
    "Network",
    "NotFound",
    "PermissionDenied",
    "PullProgress",
    "RuntimedException",
    "TLSConfig",
    "TLSParameterError",
    "Timeout",
    "Unavailable",
    "Volume",
]

"""Exceptions of runtimed.client, named as docker-py names them where the idea is the same
(`docker.errors.APIError`, `NotFound`, `ImageNotFound`, `ContainerError`, ...), each
carrying the gRPC status code the daemon answered with."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import grpc

# What a docker-py user reads from `status_code`: the HTTP status Docker's API would give.
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class RuntimedException(Exception):
    """Base of everything this client raises (docker-py's DockerException)."""


class TLSParameterError(RuntimedException):
    """TLS settings that cannot work (a missing file, tcp:// without TLS)."""


class APIError(RuntimedException):
    """The daemon answered a call with an error. `code` is the gRPC status code,
    `explanation` the daemon's message, `status_code` the HTTP status Docker would use."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> None:
        super().__init__(message)
        self.code = code
        self.explanation = message

    @property
    def status_code(self) -> int:
        return _HTTP_STATUS.get(self.code, 500)

    def is_client_error(self) -> bool:
        return 400 <= self.status_code < 500

    def is_server_error(self) -> bool:
        return self.status_code >= 500

    def __str__(self) -> str:
        return f"{self.code.name}: {self.explanation}"


class NotFound(APIError):
    """No such container, image, network or volume (NOT_FOUND)."""


class ImageNotFound(NotFound):
    """No such image (NOT_FOUND from an image call, or a container made from a missing one)."""


class Conflict(APIError):
    """The object's state forbids it (ALREADY_EXISTS, FAILED_PRECONDITION): a name in use,
    a running container to remove without force, an image in use."""


class AlreadyExists(Conflict):
    """ALREADY_EXISTS: the name is taken."""


class InvalidArgument(APIError):
    """INVALID_ARGUMENT: the daemon refused the request as given."""


class PermissionDenied(APIError):
    """PERMISSION_DENIED: not possible for a rootless daemon, or not allowed."""


class Unavailable(APIError):
    """UNAVAILABLE: the daemon cannot be reached (not running, TLS refused, gone)."""


class Timeout(APIError):
    """DEADLINE_EXCEEDED: the call's `timeout` passed."""


class ContainerError(RuntimedException):
    """`containers.run()` without detach: the container exited with a non-zero status."""

    def __init__(
        self, container: Any, exit_status: int, command: Any, image: str, stderr: bytes | None
    ) -> None:
        self.container = container
        self.exit_status = exit_status
        self.command = command
        self.image = image
        self.stderr = stderr
        err = f": {stderr.decode(errors='replace')}" if stderr else ""
        super().__init__(
            f"Command '{command}' in image '{image}' returned non-zero exit status "
            f"{exit_status}{err}"
        )


_BY_CODE: dict[grpc.StatusCode, type[APIError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Timeout,
}


def from_rpc_error(exc: grpc.RpcError, *, image: bool = False) -> APIError:
    """The exception for a failed call (`image`: NOT_FOUND means the image is missing)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    cls = _BY_CODE.get(code, APIError)
    if cls is NotFound and (image or details.lower().startswith("no such image")):
        cls = ImageNotFound
    return cls(details, code)


@contextlib.contextmanager
def translated(*, image: bool = False) -> Iterator[None]:
    """grpc's RpcError in the block becomes our APIError (works around `await` too)."""
    try:
        yield
    except grpc.RpcError as exc:
        raise from_rpc_error(exc, image=image) from None

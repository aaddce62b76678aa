"""runtimed errors as Docker's API answers them: a status code and `{"message": ...}`.

The status codes are dockerd's for the same kind of failure (errdefs): the
docker CLI and docker-py decide on them (404 makes `docker run` pull, 409 is
a conflict, 304 "not modified" a start of a running container, ...).
"""

from __future__ import annotations

from runtimed.api.errors import readable
from runtimed.dockerapi.http import Response, json_response
from runtimed.errors import RuntimedError

STATUS = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "DEADLINE_EXCEEDED": 504,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
}


class HttpError(RuntimedError):
    """An answer with a status of its own, where no runtimed error class says it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def not_implemented(what: str) -> HttpError:
    """For endpoints of features runtimed has not got yet (Docker words it this way for
    endpoints a platform lacks)."""
    return HttpError(501, f"{what} is not implemented by runtimed yet")


def status_of(err: RuntimedError) -> int:
    if isinstance(err, HttpError):
        return err.status
    return STATUS.get(err.code, 500)


def error_response(err: RuntimedError) -> Response:
    return message_response(status_of(err), err.message)


def message_response(status: int, message: str) -> Response:
    return json_response({"message": readable(message)}, status)

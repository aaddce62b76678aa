"""One error taxonomy for the whole daemon.

Core code raises these; only the API edge turns them into gRPC status codes
(see runtimed.api.errors). Each subclass names the gRPC code it maps to by
name, so this module does not import grpc.
"""

from __future__ import annotations

import errno

NO_SPACE = "no space left on device"

# How much of one piece of user input (a name, a reference, a path) an error repeats.
ECHO_LIMIT = 128


def shown(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` as an error message repeats it: a 120k-character name is not worth reading."""
    return text if len(text) <= limit else text[:limit] + "..."


class RuntimedError(Exception):
    """Base of every error the daemon reports to a client."""

    code: str = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(RuntimedError):
    """The request itself is wrong: malformed reference, bad flag, hostile input."""

    code = "INVALID_ARGUMENT"


class NotFound(RuntimedError):
    """The named object (image, container, blob, ...) does not exist."""

    code = "NOT_FOUND"


class AlreadyExists(RuntimedError):
    """An object with that name or id exists already."""

    code = "ALREADY_EXISTS"


class FailedPrecondition(RuntimedError):
    """The request is valid but the system is not in a state to honour it."""

    code = "FAILED_PRECONDITION"


class PermissionDenied(RuntimedError):
    """Refused: by a registry's credentials or by what rootless cannot do."""

    code = "PERMISSION_DENIED"


class Unauthenticated(RuntimedError):
    """A registry wants credentials we do not have or rejected the ones given."""

    code = "UNAUTHENTICATED"


class Unavailable(RuntimedError):
    """A peer (registry, shim, plugin) could not be reached."""

    code = "UNAVAILABLE"


class DataLoss(RuntimedError):
    """Content did not match its digest; nothing was stored."""

    code = "DATA_LOSS"


class DeadlineExceeded(RuntimedError):
    """The operation ran out of the time it was given (an exec's timeout)."""

    code = "DEADLINE_EXCEEDED"


class ResourceExhausted(RuntimedError):
    """Out of something the host has only so much of: disk space under the data dir."""

    code = "RESOURCE_EXHAUSTED"


class Unimplemented(RuntimedError):
    """The operation exists in the API but this daemon does not provide it yet."""

    code = "UNIMPLEMENTED"


class Internal(RuntimedError):
    """A bug or an unexpected failure of the host."""

    code = "INTERNAL"


def out_of_space(exc: BaseException) -> ResourceExhausted | None:
    """The ResourceExhausted a full disk means, if `exc` is one (ENOSPC or EDQUOT, or
    SQLite's "database or disk is full"); None for anything else.

    The one place these are told apart: the store raises what it returns, so core code
    can react to a full disk, and the API edge maps whatever else reaches it.
    """
    if isinstance(exc, ResourceExhausted):
        return exc
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = NO_SPACE if exc.errno == errno.ENOSPC else "disk quota exceeded"
        where = f": cannot write {exc.filename}" if exc.filename else ""
        return ResourceExhausted(f"{what}{where}")
    import sqlite3  # here: runtimectl loads this module and has no database

    if isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    ):
        return ResourceExhausted(f"{NO_SPACE}: the metadata database cannot grow")
    return None

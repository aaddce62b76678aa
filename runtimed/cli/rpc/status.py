"""gRPC status codes and the error a failed call raises, shaped like grpcio's so the
command code reads the same: `exc.code()`, `exc.details()`."""

from __future__ import annotations

import enum
from urllib.parse import unquote


class StatusCode(enum.Enum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @classmethod
    def from_wire(cls, value: str | None) -> StatusCode:
        try:
            return cls(int(value or ""))
        except ValueError:
            return cls.UNKNOWN


# What an HTTP status other than 200 means to a gRPC client (gRPC's HTTP-to-status table).
_HTTP_TO_STATUS = {
    400: StatusCode.INTERNAL,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.UNIMPLEMENTED,
    429: StatusCode.UNAVAILABLE,
    502: StatusCode.UNAVAILABLE,
    503: StatusCode.UNAVAILABLE,
    504: StatusCode.UNAVAILABLE,
}

# HTTP/2 RST_STREAM error codes that say more than "internal error".
_RESET_TO_STATUS = {
    0x7: StatusCode.UNAVAILABLE,  # REFUSED_STREAM: the server did not start it, safe to retry
    0x8: StatusCode.CANCELLED,  # CANCEL
    0xB: StatusCode.RESOURCE_EXHAUSTED,  # ENHANCE_YOUR_CALM
}


class RpcError(Exception):
    """A call that ended with a status other than OK."""

    def __init__(self, code: StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details

    def code(self) -> StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class ConnectError(RpcError):
    """The daemon could not be reached, or TLS with it failed (UNAVAILABLE, as grpcio says
    it). `target` is where (`unix:/path`, `tcp://host:port`); `reason` the OSError, or a
    sentence when there is none (a refused certificate)."""

    def __init__(self, target: str, reason: OSError | str) -> None:
        super().__init__(
            StatusCode.UNAVAILABLE,
            f"failed to connect to all addresses; last error: {target}: {reason}",
        )
        self.target = target
        self.reason = reason


def status_from_trailers(headers: dict[str, str]) -> RpcError | None:
    """None for OK; the error the trailers (or a trailers-only response) describe."""
    code = StatusCode.from_wire(headers.get("grpc-status"))
    if code is StatusCode.OK:
        return None
    return RpcError(code, unquote(headers.get("grpc-message", "")))


def status_from_http(status: str) -> RpcError:
    code = _HTTP_TO_STATUS.get(int(status) if status.isdigit() else 0, StatusCode.UNKNOWN)
    return RpcError(code, f"daemon answered HTTP status {status}, not a gRPC response")


def status_from_reset(error_code: int) -> RpcError:
    code = _RESET_TO_STATUS.get(error_code, StatusCode.INTERNAL)
    return RpcError(code, f"stream reset by the daemon (HTTP/2 error {error_code:#x})")

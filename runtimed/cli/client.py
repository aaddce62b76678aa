"""Reaching the daemon: which socket, the stubs, and errors turned into one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from runtimed.cli.rpc import ConnectError, Connection, RpcError, Stub
from runtimed.errors import InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2
from runtimed.paths import default_socket, parse_host


class CliError(Exception):
    """Printed as one line on stderr; the command exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def socket_path(host: str | None) -> Path:
    value = host or os.environ.get("RUNTIMED_HOST")
    return parse_host(value) if value else default_socket()


# grpcio's default is 4 MiB; image inspect and ps of many containers can exceed it.
MAX_MESSAGE = 16 * 1024 * 1024


class Client:
    def __init__(self, socket: Path, channel: Connection, engine: Stub) -> None:
        self.socket = socket
        self.channel = channel
        self.engine = engine  # runtimed.v1.Engine, methods as on a grpcio stub

    @classmethod
    def connect(cls, host: str | None) -> Client:
        try:
            path = socket_path(host)
        except InvalidArgument as exc:
            raise CliError(f"runtimectl: {exc.message}") from None
        try:
            os.stat(path)
        except PermissionError:
            raise permission_denied(path) from None
        except OSError:
            raise not_running(path) from None
        channel = Connection(str(path), max_message=MAX_MESSAGE)
        service = engine_pb2.DESCRIPTOR.services_by_name["Engine"]
        return cls(socket=path, channel=channel, engine=Stub(channel, service))

    def close(self) -> None:
        self.channel.close()


def not_running(socket: Path) -> CliError:
    return CliError(
        f"Cannot connect to runtimed at unix://{socket}: is runtimed running? "
        "start it with: runtimed"
    )


def permission_denied(socket: Path) -> CliError:
    # docker's wording; the usual cause is a socket of another user's daemon.
    return CliError(
        f"permission denied while trying to connect to runtimed at unix://{socket}: "
        "is it another user's daemon? run runtimectl as the user that runs runtimed"
    )


def daemon_error(client: Client, err: RpcError) -> str:
    """The line a command prints for a failed call."""
    return describe_rpc_error(err, client.socket).message


def describe_rpc_error(err: RpcError, socket: Path) -> CliError:
    if isinstance(err, ConnectError):  # the socket did not answer; the daemon's errors are ours
        if isinstance(err.reason, PermissionError):
            return permission_denied(socket)
        return not_running(socket)
    return CliError(f"Error response from daemon: {err.details()}")


def os_error_line(exc: OSError, action: str = "") -> str:
    """`open /x: permission denied`, the way docker (Go) words a failed system call."""
    reason = (exc.strerror or str(exc)).lower()
    where = f"{action} {exc.filename}" if exc.filename is not None else action
    return f"{where.strip()}: {reason}" if where.strip() else reason


def fail(message: str) -> None:
    print(message, file=sys.stderr)

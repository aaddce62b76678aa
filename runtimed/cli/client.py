"""Reaching the daemon: which socket, the stubs, and errors turned into one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NamedTuple

from runtimed.cli.rpc import ConnectError, Connection, RpcError, Stub
from runtimed.errors import InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2
from runtimed.hosts import Host, TlsFiles, client_settings


class CliError(Exception):
    """Printed as one line on stderr; the command exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


# grpcio's default is 4 MiB; image inspect and ps of many containers can exceed it.
MAX_MESSAGE = 16 * 1024 * 1024


class Client:
    def __init__(self, socket: Host | Path, channel: Connection, engine: Stub) -> None:
        self.socket = socket  # where the daemon is: a unix socket's Path, or a tcp:// Host
        self.channel = channel
        self.engine = engine  # runtimed.v1.Engine, methods as on a grpcio stub

    @classmethod
    def connect(cls, host: str | None, tls: TlsFlags | None = None) -> Client:
        """-H (else RUNTIMED_HOST, else the default socket); tcp:// with mutual TLS only."""
        flags = tls or TlsFlags()
        try:
            settings = client_settings(
                host,
                tlsverify=flags.tlsverify,
                cacert=flags.tlscacert,
                cert=flags.tlscert,
                key=flags.tlskey,
            )
        except InvalidArgument as exc:
            raise CliError(f"runtimectl: {exc.message}") from None
        service = engine_pb2.DESCRIPTOR.services_by_name["Engine"]
        if settings.tls is not None:
            channel = _tls_connection(settings.host, settings.tls)
            return cls(socket=settings.host, channel=channel, engine=Stub(channel, service))
        path = Path(settings.host.path)
        try:
            os.stat(path)
        except PermissionError:
            raise permission_denied(path) from None
        except OSError:
            raise not_running(path) from None
        channel = Connection(str(path), max_message=MAX_MESSAGE)
        return cls(socket=path, channel=channel, engine=Stub(channel, service))

    def close(self) -> None:
        self.channel.close()


class TlsFlags(NamedTuple):
    """runtimectl's global --tlsverify, --tlscacert, --tlscert, --tlskey."""

    tlsverify: bool = False
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None


def _tls_connection(host: Host, files: TlsFiles) -> Connection:
    from runtimed.cli.rpc import tls  # ssl only for tcp://

    try:
        ctx = tls.client_context(files)
    except tls.TlsConfigError as exc:
        raise CliError(f"runtimectl: {exc}") from None
    return Connection(
        str(host),
        max_message=MAX_MESSAGE,
        dial=lambda: tls.dial(host, ctx),
        authority=host.authority,
    )


def _where(socket: Host | Path | None) -> str:
    return str(socket) if isinstance(socket, Host) else f"unix://{socket}"


def not_running(socket: Host | Path | None) -> CliError:
    return CliError(
        f"Cannot connect to runtimed at {_where(socket)}: is runtimed running? "
        "start it with: runtimed"
    )


def permission_denied(socket: Host | Path | None) -> CliError:
    # docker's wording; the usual cause is a socket of another user's daemon.
    return CliError(
        f"permission denied while trying to connect to runtimed at {_where(socket)}: "
        "is it another user's daemon? run runtimectl as the user that runs runtimed"
    )


def daemon_error(client: Client, err: RpcError) -> str:
    """The line a command prints for a failed call."""
    return describe_rpc_error(err, client.socket).message


def describe_rpc_error(err: RpcError, socket: Host | Path | None) -> CliError:
    if isinstance(err, ConnectError):  # the socket did not answer; the daemon's errors are ours
        if isinstance(err.reason, PermissionError):
            return permission_denied(socket)
        if isinstance(err.reason, str):  # TLS: what went wrong, in words
            return CliError(f"Cannot talk to runtimed at {_where(socket)}: {err.reason}")
        return not_running(socket)
    return CliError(f"Error response from daemon: {err.details()}")


def os_error_line(exc: OSError, action: str = "") -> str:
    """`open /x: permission denied`, the way docker (Go) words a failed system call."""
    reason = (exc.strerror or str(exc)).lower()
    where = f"{action} {exc.filename}" if exc.filename is not None else action
    return f"{where.strip()}: {reason}" if where.strip() else reason


def fail(message: str) -> None:
    print(message, file=sys.stderr)


def confirmed(prompt: str) -> bool:
    """docker's prune prompt: `prompt` on stdout, and a line of y or yes on stdin."""
    sys.stdout.write(prompt)
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")

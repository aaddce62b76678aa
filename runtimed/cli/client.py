"""Reaching the daemon: which socket, the stubs, and errors turned into one line."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc

from runtimed.config import default_socket, parse_host
from runtimed.gen.runtimed.v1 import engine_pb2_grpc


class CliError(Exception):
    """Printed as one line on stderr; the command exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def socket_path(host: str | None) -> Path:
    value = host or os.environ.get("RUNTIMED_HOST")
    return parse_host(value) if value else default_socket()


@dataclass
class Client:
    socket: Path
    channel: grpc.Channel
    engine: engine_pb2_grpc.EngineStub

    @classmethod
    def connect(cls, host: str | None) -> Client:
        path = socket_path(host)
        if not path.exists():
            raise CliError(
                f"Cannot connect to runtimed at unix://{path}: is runtimed running? "
                "start it with: runtimed"
            )
        channel = grpc.insecure_channel(
            f"unix:{path}",
            options=[
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                ("grpc.max_send_message_length", 16 * 1024 * 1024),
            ],
        )
        return cls(
            socket=path,
            channel=channel,
            engine=engine_pb2_grpc.EngineStub(channel),
        )

    def close(self) -> None:
        self.channel.close()


def describe_rpc_error(err: grpc.RpcError, socket: Path) -> CliError:
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    # grpc's own wording when the socket does not answer; a daemon error has ours.
    if code == grpc.StatusCode.UNAVAILABLE and (details or "").startswith("failed to connect"):
        return CliError(
            f"Cannot connect to runtimed at unix://{socket}: is runtimed running? "
            "start it with: runtimed"
        )
    return CliError(f"Error response from daemon: {details}")


def fail(message: str) -> None:
    print(message, file=sys.stderr)

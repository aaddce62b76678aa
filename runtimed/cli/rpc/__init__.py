"""A small gRPC client for runtimectl: HTTP/2 over the daemon's unix socket.

grpcio costs runtimectl about 100 ms of import time on every command, more than
the daemon needs to run a container; this client imports in a few milliseconds.
It speaks plain gRPC, so the daemon serves it like any other client.
"""

from runtimed.cli.rpc.calls import Stub
from runtimed.cli.rpc.http2 import Connection
from runtimed.cli.rpc.status import ConnectError, RpcError, StatusCode

__all__ = ["ConnectError", "Connection", "RpcError", "StatusCode", "Stub"]

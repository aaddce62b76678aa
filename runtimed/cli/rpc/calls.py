"""Stubs built from a service descriptor: each method a callable shaped like grpcio's
(`stub.Method(request, timeout=, metadata=)`; streaming responses are iterators
with `cancel()`), so the commands need not know which client carries them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from runtimed.cli.rpc.http2 import Connection, Stream
from runtimed.cli.rpc.status import RpcError, StatusCode

Metadata = Iterable[tuple[str, str]] | None


class StreamingCall:
    """The responses of a server-streaming call, in order; raises the call's error
    at the end if it did not end with OK."""

    def __init__(self, stream: Stream, response: type[Message], deadline: float | None) -> None:
        self._stream = stream
        self._response = response
        self._deadline = deadline

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        payload = self._stream.next_message(self._deadline)
        if payload is None:
            raise StopIteration
        return self._response.FromString(payload)

    def cancel(self) -> None:
        self._stream.cancel()


class Method:
    """One RPC of a stub."""

    def __init__(self, conn: Connection, service: str, method: MethodDescriptor) -> None:
        self._conn = conn
        self._path = f"/{service}/{method.name}"
        self._response: type[Message] = message_factory.GetMessageClass(method.output_type)
        self._client_streaming = method.client_streaming
        self._server_streaming = method.server_streaming

    def __call__(
        self, request: Any, timeout: float | None = None, metadata: Metadata = None
    ) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        stream = self._conn.open_stream(self._path, metadata, timeout)
        if not self._client_streaming:
            stream.send_message(request.SerializeToString(), end=True)
        elif self._server_streaming:
            # Requests may block (stdin), so they go from their own thread.
            threading.Thread(
                target=_send_all, args=(stream, request), name="rpc-requests", daemon=True
            ).start()
        else:
            try:
                _send_requests(stream, request)
            except BaseException:
                stream.cancel()
                raise
        call = StreamingCall(stream, self._response, deadline)
        if self._server_streaming:
            return call
        reply = next(call, None)
        if reply is None:
            raise RpcError(StatusCode.INTERNAL, "the daemon sent no response message")
        for _ in call:  # wait for the status; a unary call has nothing more
            raise RpcError(StatusCode.INTERNAL, "the daemon sent more than one response")
        return reply


def _send_requests(stream: Stream, requests: Iterable[Message]) -> None:
    for request in requests:
        if stream.done:
            return
        stream.send_message(request.SerializeToString())
    stream.end_requests()


def _send_all(stream: Stream, requests: Iterable[Message]) -> None:
    try:
        _send_requests(stream, requests)
    except Exception:  # noqa: BLE001 - grpcio ends the call the same way
        stream.abort(RpcError(StatusCode.UNKNOWN, "Exception iterating requests!"))


class Stub:
    """`Stub(conn, pb2.DESCRIPTOR.services_by_name["Engine"]).ListImages(req)`; methods
    are made on first use (most commands use one or two)."""

    def __init__(self, conn: Connection, service: ServiceDescriptor) -> None:
        self._conn = conn
        self._service = service

    def __getattr__(self, name: str) -> Method:
        method = self._service.methods_by_name.get(name)
        if method is None:
            raise AttributeError(f"{self._service.full_name} has no method {name}")
        bound = Method(self._conn, self._service.full_name, method)
        setattr(self, name, bound)
        return bound

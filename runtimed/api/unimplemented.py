"""Answer UNIMPLEMENTED, naming the method, for every RPC a servicer does not define yet.

The generated base classes answer with a bare "Method not implemented!" from a
synchronous function; ours are async (an async generator for server-streaming
methods) and say which method and which version.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from runtimed import __version__
from runtimed.errors import Unimplemented


def _unimplemented(method: MethodDescriptor) -> Any:
    message = f"{method.name} is not implemented by runtimed {__version__} yet"
    if method.server_streaming:

        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            raise Unimplemented(message)
            yield  # an async generator, as grpc.aio expects for a stream

        stream.__name__ = method.name
        return stream

    async def unary(self: Any, request: Any, context: Any) -> Any:
        raise Unimplemented(message)

    unary.__name__ = method.name
    return unary


def _defined_by_us(cls: type, name: str) -> bool:
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return not klass.__module__.endswith("_pb2_grpc")
    return False


def fill_unimplemented(cls: type, service: ServiceDescriptor) -> None:
    for method in service.methods:
        if not _defined_by_us(cls, method.name):
            setattr(cls, method.name, _unimplemented(method))

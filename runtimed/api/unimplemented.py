"""Answer UNIMPLEMENTED, naming the method, for every RPC a servicer does not define yet.

The generated base classes answer with a bare "Method not implemented!" from a
synchronous function; ours are async and say which method and which version.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import ServiceDescriptor

from runtimed import __version__
from runtimed.errors import Unimplemented


def _unimplemented(name: str) -> Any:
    async def handler(self: Any, request: Any, context: Any) -> Any:
        raise Unimplemented(f"{name} is not implemented by runtimed {__version__} yet")

    handler.__name__ = name
    return handler


def fill_unimplemented(cls: type, service: ServiceDescriptor) -> None:
    for method in service.methods:
        if method.name not in cls.__dict__:
            setattr(cls, method.name, _unimplemented(method.name))

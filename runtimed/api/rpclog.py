"""`runtimed -D`: one structured line per RPC served (method, peer, duration, status).

Installed outside ErrorInterceptor, so it sees the status that interceptor set
(an abort) and times the whole call, a stream until its last message.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from runtimed.api.errors import rewrap

log = structlog.get_logger(__name__)


def _code(context: grpc.aio.ServicerContext, exc: BaseException | None) -> str:
    if isinstance(exc, asyncio.CancelledError):
        # The call is gone: its context must not be asked anything any more.
        return grpc.StatusCode.CANCELLED.name
    code = context.code()
    if code is None:
        return grpc.StatusCode.UNKNOWN.name if exc is not None else grpc.StatusCode.OK.name
    # context.code() is a StatusCode, or the int of one set with set_code().
    return code.name if isinstance(code, grpc.StatusCode) else grpc.StatusCode(code).name


class _Timer:
    """Taken when the call starts (its peer is asked then, while the call surely lives)."""

    def __init__(self, method: str, context: grpc.aio.ServicerContext) -> None:
        self.method = method
        self.peer = context.peer()
        self.start = time.perf_counter()

    def done(self, context: grpc.aio.ServicerContext, exc: BaseException | None) -> None:
        log.debug(
            "rpc_served",
            method=self.method,
            peer=self.peer,
            duration_ms=round((time.perf_counter() - self.start) * 1000, 3),
            code=_code(context, exc),
        )


def _unary(method: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        timer, failure = _Timer(method, context), None
        try:
            return await fn(request, context)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            timer.done(context, failure)

    return handler


def _stream(method: str, fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        timer, failure = _Timer(method, context), None
        try:
            async for item in fn(request, context):
                yield item
        except BaseException as exc:
            failure = exc
            raise
        finally:
            timer.done(context, failure)

    return handler


class RpcLogInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        return rewrap(
            handler, functools.partial(_unary, method), functools.partial(_stream, method)
        )

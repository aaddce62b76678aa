"""The one place where runtimed errors become gRPC status codes.

An interceptor wraps every handler: a RuntimedError aborts the call with its
code and message; a full disk (ENOSPC anywhere) is RESOURCE_EXHAUSTED; any
other exception is logged with its traceback and reported as INTERNAL, so a
client never sees a bare "Exception calling application". A request that is
not a valid message is INVALID_ARGUMENT. Every message is cut to a readable
size: it travels in a response header, and one that echoes a 120k-character
name would overflow what clients accept.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from runtimed.errors import InvalidArgument, RuntimedError, out_of_space, shown

log = structlog.get_logger(__name__)


# Per word (user input comes as one: a name, a reference) and for the whole message, in
# UTF-8 bytes: grpc-message is percent-encoded into a header, and clients take 8 KiB or so.
WORD_LIMIT = 256
MESSAGE_BYTES = 2048
_LONG_WORD = re.compile(rf"\S{{{WORD_LIMIT + 1},}}")


def status_code(err: RuntimedError) -> grpc.StatusCode:
    return grpc.StatusCode[err.code]


def readable(message: str) -> str:
    """`message` with over-long words cut, and no longer than a header can carry."""
    message = _LONG_WORD.sub(lambda m: shown(m.group(), WORD_LIMIT), message)
    data = message.encode()
    if len(data) <= MESSAGE_BYTES:
        return message
    return data[:MESSAGE_BYTES].decode(errors="ignore") + "..."


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: BaseException) -> None:
    exc = out_of_space(exc) or exc  # a full disk is the user's to fix, not a crash
    if isinstance(exc, RuntimedError):
        message = readable(exc.message)
        log.debug("rpc_failed", method=method, code=exc.code, error=message)
        await context.abort(status_code(exc), message)
    log.error("rpc_crashed", method=method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, readable(f"internal error in {method}: {exc}"))


class _Malformed:
    """What a request that did not parse becomes; the handler refuses it (see _tolerant)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """grpc.aio parses a request before any handler runs and answers a failure with
    UNKNOWN; a marker instead lets the handler say INVALID_ARGUMENT."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:
            return _Malformed(exc)

    return parse


def _checked(request: Any) -> Any:
    if isinstance(request, _Malformed):
        raise InvalidArgument(f"malformed request: {request.error}")
    return request


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _checked(request)


def _check_request(request: Any) -> Any:
    """A unary request is checked whole; a stream's messages as the handler reads them."""
    if hasattr(request, "__aiter__"):
        return _checked_stream(request)
    return _checked(request)


def _wrap_unary(method: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(_check_request(request), context)
        except (RuntimedError, Exception) as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await _abort(context, method, exc)

    return handler


def _wrap_stream(method: str, fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in fn(_check_request(request), context):
                yield item
        except (RuntimedError, Exception) as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await _abort(context, method, exc)

    return handler


def rewrap(
    handler: grpc.RpcMethodHandler,
    unary: Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]],
    stream: Callable[[Callable[..., AsyncIterator[Any]]], Callable[..., Any]],
    request: Callable[[Any], Any] = lambda deserialize: deserialize,
) -> grpc.RpcMethodHandler:
    """The same handler with its behaviour wrapped: `unary` for calls answered once,
    `stream` for server-streaming ones (what an interceptor needs to wrap every kind);
    `request` wraps how requests are parsed."""
    common = {
        "request_deserializer": request(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **common)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **common)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **common)
    return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), **common)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        return rewrap(
            handler,
            functools.partial(_wrap_unary, method),
            functools.partial(_wrap_stream, method),
            request=_tolerant,
        )

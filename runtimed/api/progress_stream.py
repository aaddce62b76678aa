"""Run an operation that reports progress and stream its events as RPC messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.images.service import ProgressFn, PullEvent

R = TypeVar("R")
M = TypeVar("M")


def event_fields(event: PullEvent) -> dict[str, Any]:
    """The `event` oneof of a pull or push progress message: a status line or a layer's."""
    if not event.layer_id:
        return {"status": event.status}
    layer = pb.LayerProgress(
        id=event.layer_id, status=event.status, current=event.current, total=event.total
    )
    return {"layer": layer}


class _Done(Generic[R]):
    def __init__(self, result: R) -> None:
        self.result = result


async def stream_progress(
    work: Callable[[ProgressFn], Awaitable[R]],
    event_message: Callable[[PullEvent], M],
    result_message: Callable[[R], M],
    *,
    stop_on_hangup: bool,
) -> AsyncIterator[M]:
    """Yield a message per progress event of `work`, then one for its result.

    A failure of `work` is raised from the stream. When the client goes away
    first, `work` is cancelled if `stop_on_hangup`, else left to finish (a pull
    others may be waiting for).
    """
    queue: asyncio.Queue[PullEvent | _Done[R] | BaseException] = asyncio.Queue()

    async def run() -> None:
        try:
            queue.put_nowait(_Done(await work(queue.put_nowait)))
        except BaseException as exc:  # handed to the stream below
            queue.put_nowait(exc)

    task = asyncio.create_task(run())
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, _Done):
                yield result_message(item.result)
                return
            yield event_message(item)
    finally:
        if not task.done():
            if stop_on_hangup:
                task.cancel()
            else:
                task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

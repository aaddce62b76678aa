"""GET /containers/{id}/stats: core/samples' readings as Docker's stats document, the
one the docker CLI turns into `docker stats` columns and docker-py hands out.

CPU % comes from the pair cpu_stats / precpu_stats one interval apart (stream=false
measures that interval before it answers; one-shot=true answers at once, without
precpu). Memory usage is the working set, so inactive_file is 0.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

from runtimed.api.containerview import rfc3339
from runtimed.core.model import Container
from runtimed.core.samples import Reading, Sample, readings, sample
from runtimed.dockerapi.context import Context
from runtimed.dockerapi.http import Request, Response, StreamResponse, json_line, json_response
from runtimed.dockerapi.router import Router
from runtimed.errors import NotFound
from runtimed.network import view as netview

DEFAULT_INTERFACE = "eth0"  # docker names the counters of the container's namespace so


def register(router: Router, ctx: Context) -> None:
    h = StatsHandlers(ctx)
    router.add("GET", "/containers/{id}/stats", h.stats)


def _cpu(s: Sample | None) -> dict[str, Any]:
    if s is None or not s.running:
        return {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}
    return {
        # Our sources count CPU time as one figure: no per-CPU or user/kernel split.
        "cpu_usage": {"total_usage": s.cpu_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "system_cpu_usage": s.system_cpu_ns,
        "online_cpus": s.online_cpus,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }


def _blkio(s: Sample) -> list[dict[str, Any]]:
    return [
        {"major": 0, "minor": 0, "op": "read", "value": s.block_read},
        {"major": 0, "minor": 0, "op": "write", "value": s.block_write},
    ]


def stats_doc(reading: Reading, own_network: bool) -> dict[str, Any]:
    c, now, pre = reading.container, reading.now, reading.before
    running = now.running
    doc: dict[str, Any] = {
        "name": "/" + c.name.lstrip("/"),
        "id": c.id,
        "read": rfc3339(now.timestamp),
        "preread": rfc3339(pre.timestamp if pre else 0),
        "pids_stats": {"current": now.pids} if running else {},
        "blkio_stats": {
            "io_service_bytes_recursive": _blkio(now) if running else None,
            "io_serviced_recursive": None,
            "io_queue_recursive": None,
            "io_service_time_recursive": None,
            "io_wait_time_recursive": None,
            "io_merged_recursive": None,
            "io_time_recursive": None,
            "sectors_recursive": None,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu(now),
        "precpu_stats": _cpu(pre),
        "memory_stats": (
            {
                "usage": now.memory_usage,
                "stats": {"inactive_file": 0},
                "limit": now.memory_limit,
            }
            if running
            else {}
        ),
    }
    if running and own_network:
        doc["networks"] = {
            DEFAULT_INTERFACE: {
                "rx_bytes": now.net_rx,
                "rx_packets": 0,
                "rx_errors": 0,
                "rx_dropped": 0,
                "tx_bytes": now.net_tx,
                "tx_packets": 0,
                "tx_errors": 0,
                "tx_dropped": 0,
            }
        }
    return doc


class StatsHandlers:
    def __init__(self, ctx: Context) -> None:
        self.services = ctx.services
        self.containers = ctx.services.containers

    def _own_network(self, container: Container) -> bool:
        return netview.has_own_network(self.containers, container)

    def _still_there(self, container_id: str) -> list[Container]:
        try:
            return [self.containers.get(container_id)]
        except NotFound:
            return []  # removed meanwhile: the stream ends, as dockerd's does

    def _readings(self, container: Container, *, stream: bool) -> AsyncIterator[list[Reading]]:
        return readings(
            self.services.stats.source,
            functools.partial(self._still_there, container.id),
            self._own_network,
            stream=stream,
        )

    def _doc(self, reading: Reading) -> dict[str, Any]:
        return stats_doc(reading, self._own_network(reading.container))

    async def stats(self, request: Request) -> Response | StreamResponse:
        container = self.containers.get(request.params["id"])
        if not request.flag("stream", default=True):
            if request.flag("one-shot"):
                now = await asyncio.to_thread(
                    sample,
                    self.services.stats.source,
                    container,
                    own_network=self._own_network(container),
                )
                return json_response(self._doc(Reading(container, now, None)))
            async for batch in self._readings(container, stream=False):
                if batch:
                    return json_response(self._doc(batch[0]))
            raise NotFound(f"No such container: {request.params['id']}")

        async def body() -> AsyncIterator[bytes]:
            yield b""  # the headers now: a streaming client waits for them
            async for batch in self._readings(container, stream=True):
                if not batch:
                    return
                yield json_line(self._doc(batch[0]))

        return StreamResponse(body())

"""docker stats over runtimed.v1.Engine: core/samples' readings as the API's batches.

Each batch carries the previous sample's CPU counters next to the new ones, so the
client computes CPU % from two samples one interval apart, as docker's CLI does
(stream = false measures over one interval too, and sends one batch).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from runtimed.core.model import Container, Status
from runtimed.core.samples import Reading, readings
from runtimed.errors import NotFound
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.network import view as netview

if TYPE_CHECKING:
    from runtimed.services import Runtime


def entry(reading: Reading) -> pb.ContainerStatsEntry:
    container, now, pre = reading.container, reading.now, reading.before
    return pb.ContainerStatsEntry(
        id=container.id,
        name=container.name.lstrip("/"),
        running=now.running,
        read=now.timestamp,
        preread=pre.timestamp if pre else 0,
        cpu_total_ns=now.cpu_ns,
        pre_cpu_total_ns=pre.cpu_ns if pre else 0,
        system_cpu_ns=now.system_cpu_ns,
        pre_system_cpu_ns=pre.system_cpu_ns if pre else 0,
        online_cpus=now.online_cpus,
        memory_usage=now.memory_usage,
        memory_limit=now.memory_limit,
        net_rx_bytes=now.net_rx,
        net_tx_bytes=now.net_tx,
        block_read_bytes=now.block_read,
        block_write_bytes=now.block_write,
        pids=now.pids,
        source=now.source,
    )


class StatsRpcs:
    rt: Runtime

    def _stats_targets(
        self, request: pb.ContainerStatsRequest, named: list[str]
    ) -> list[Container]:
        if not named:
            everything = sorted(self.rt.containers.list(), key=lambda c: c.created_at)
            return [c for c in everything if request.all or c.state.status == Status.RUNNING]
        found = []
        for ident in named:
            try:
                found.append(self.rt.containers.get(ident))
            except NotFound:
                continue  # removed while we watch: it leaves the table, as in docker
        return found

    async def ContainerStats(
        self, request: pb.ContainerStatsRequest, context: Any
    ) -> AsyncIterator[pb.ContainerStatsBatch]:
        # Names resolve once, up front: an unknown one is an error before anything streams.
        named = [self.rt.containers.get(ref).id for ref in request.containers]
        async for batch in readings(
            self.rt.stats.source,
            functools.partial(self._stats_targets, request, named),
            functools.partial(netview.has_own_network, self.rt.containers),
            stream=request.stream,
        ):
            yield pb.ContainerStatsBatch(entries=[entry(r) for r in batch])

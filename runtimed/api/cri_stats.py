"""The stats calls of runtime.v1.RuntimeService: core/stats.py records as CRI messages,
narrowed by the CRI's filters (id prefix, pod, labels).

Every container the CRI made is listed, whatever its state: one that does not run
has no cpu and memory but keeps its writable layer, as containerd reports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from runtimed.api.cri_attrs import container_metadata, cri_containers, labels_match, pod_metadata
from runtimed.core import stats as core
from runtimed.core.model import Container, Sandbox
from runtimed.gen.runtime.v1 import api_pb2 as cri

if TYPE_CHECKING:
    from runtimed.services import Runtime


def _u64(value: int) -> cri.UInt64Value:
    return cri.UInt64Value(value=value)


def _cpu(ts: int, cpu: core.CpuStats | None) -> cri.CpuUsage | None:
    if cpu is None:
        return None
    usage = cri.CpuUsage(timestamp=ts, usage_core_nano_seconds=_u64(cpu.usage_core_ns))
    if cpu.usage_nano_cores is not None:
        usage.usage_nano_cores.value = cpu.usage_nano_cores
    return usage


def _memory(ts: int, memory: core.MemoryStats | None) -> cri.MemoryUsage | None:
    if memory is None:
        return None
    usage = cri.MemoryUsage(
        timestamp=ts,
        working_set_bytes=_u64(memory.working_set_bytes),
        usage_bytes=_u64(memory.usage_bytes),
        rss_bytes=_u64(memory.rss_bytes),
        page_faults=_u64(memory.page_faults),
        major_page_faults=_u64(memory.major_page_faults),
    )
    if memory.available_bytes is not None:
        usage.available_bytes.value = memory.available_bytes
    return usage


def _layer(ts: int, layer: core.FilesystemStats | None) -> cri.FilesystemUsage | None:
    if layer is None:
        return None
    return cri.FilesystemUsage(
        timestamp=ts,
        fs_id=cri.FilesystemIdentifier(mountpoint=layer.mountpoint),
        used_bytes=_u64(layer.used_bytes),
        inodes_used=_u64(layer.inodes_used),
    )


def _interface(usage: core.InterfaceUsage) -> cri.NetworkInterfaceUsage:
    return cri.NetworkInterfaceUsage(
        name=usage.name,
        rx_bytes=_u64(usage.rx_bytes),
        rx_errors=_u64(usage.rx_errors),
        tx_bytes=_u64(usage.tx_bytes),
        tx_errors=_u64(usage.tx_errors),
    )


def _network(ts: int, network: core.NetworkStats | None) -> cri.NetworkUsage | None:
    if network is None:
        return None
    usage = cri.NetworkUsage(
        timestamp=ts, interfaces=[_interface(i) for i in network.other_interfaces]
    )
    if (default := network.default_interface) is not None:
        usage.default_interface.CopyFrom(_interface(default))
    return usage


def container_message(container: Container, stats: core.ContainerStats) -> cri.ContainerStats:
    ts = stats.timestamp
    return cri.ContainerStats(
        attributes=cri.ContainerAttributes(
            id=container.id,
            metadata=container_metadata(container),
            labels=container.config.labels,
            annotations=container.config.annotations,
        ),
        cpu=_cpu(ts, stats.cpu),
        memory=_memory(ts, stats.memory),
        writable_layer=_layer(ts, stats.writable_layer),
    )


def pod_message(
    sandbox: Sandbox, containers: Sequence[Container], stats: core.PodStats
) -> cri.PodSandboxStats:
    ts = stats.timestamp
    return cri.PodSandboxStats(
        attributes=cri.PodSandboxAttributes(
            id=sandbox.id,
            metadata=pod_metadata(sandbox),
            labels=sandbox.config.labels,
            annotations=sandbox.config.annotations,
        ),
        linux=cri.LinuxPodSandboxStats(
            cpu=_cpu(ts, stats.cpu),
            memory=_memory(ts, stats.memory),
            network=_network(ts, stats.network),
            process=cri.ProcessUsage(timestamp=ts, process_count=_u64(stats.processes)),
            containers=[
                container_message(c, s) for c, s in zip(containers, stats.containers, strict=True)
            ],
        ),
    )


async def container_stats(rt: Runtime, container: Container) -> cri.ContainerStatsResponse:
    stats = await rt.stats.container(container)
    return cri.ContainerStatsResponse(stats=container_message(container, stats))


async def list_container_stats(
    rt: Runtime, flt: cri.ContainerStatsFilter
) -> cri.ListContainerStatsResponse:
    items = []
    picked = cri_containers(rt.containers.list(), flt.id, flt.pod_sandbox_id, flt.label_selector)
    for container in picked:
        items.append(container_message(container, await rt.stats.container(container)))
    return cri.ListContainerStatsResponse(stats=items)


async def pod_stats(rt: Runtime, sandbox: Sandbox) -> tuple[list[Container], core.PodStats]:
    """The pod's CRI containers and its stats (theirs in the same order)."""
    containers = [c for c in rt.sandboxes.containers_of(sandbox.id) if c.config.cri is not None]
    return containers, await rt.stats.pod(sandbox, containers)


async def _pod(rt: Runtime, sandbox: Sandbox) -> cri.PodSandboxStats:
    return pod_message(sandbox, *await pod_stats(rt, sandbox))


async def pod_sandbox_stats(rt: Runtime, sandbox: Sandbox) -> cri.PodSandboxStatsResponse:
    return cri.PodSandboxStatsResponse(stats=await _pod(rt, sandbox))


async def list_pod_sandbox_stats(
    rt: Runtime, flt: cri.PodSandboxStatsFilter
) -> cri.ListPodSandboxStatsResponse:
    items = []
    for sandbox in rt.sandboxes.pods():
        if flt.id and not sandbox.id.startswith(flt.id):
            continue
        if not labels_match(sandbox.config.labels, flt.label_selector):
            continue
        items.append(await _pod(rt, sandbox))
    return cri.ListPodSandboxStatsResponse(stats=items)

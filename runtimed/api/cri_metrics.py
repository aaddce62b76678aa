"""ListMetricDescriptors and ListPodSandboxMetrics: the core's stats as the cAdvisor
metrics kubelet serves on /metrics/cadvisor when its stats come from the CRI only.

Names, help texts, types and label keys are cAdvisor's (its Prometheus exporter):
kubelet registers a descriptor per name and turns each Metric into a sample with
the label values in the descriptor's order. Values are whole numbers (the CRI's
UInt64Value): CPU time in whole seconds, as other runtimes send it. A pod's own
metrics are its network's, per interface, under the container name "POD".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtimed.api.cri_attrs import container_metadata, pod_metadata
from runtimed.api.cri_stats import pod_stats
from runtimed.core import stats as core
from runtimed.core.model import Container, Sandbox
from runtimed.core.procfs import InterfaceUsage
from runtimed.gen.runtime.v1 import api_pb2 as cri

if TYPE_CHECKING:
    from runtimed.services import Runtime

BASE_LABELS = ("container", "id", "image", "name", "namespace", "pod")
NETWORK_LABELS = (*BASE_LABELS, "interface")
POD_CONTAINER = "POD"  # cAdvisor's container label for what belongs to the pod itself


@dataclass(frozen=True)
class ContainerMetric:
    name: str
    help: str
    type: int  # cri.COUNTER | cri.GAUGE
    value: Callable[[core.ContainerStats], int | None]  # None: nothing to report


@dataclass(frozen=True)
class NetworkMetric:
    name: str
    help: str
    value: Callable[[InterfaceUsage], int]


def _counters(fn: Callable[[core.Counters], int]) -> Callable[[core.ContainerStats], int | None]:
    return lambda s: fn(s.counters) if s.counters is not None else None


def _memory_limit(c: core.Counters) -> int:
    return c.memory_limit or 0  # cAdvisor's 0: no limit


CONTAINER_METRICS = (
    ContainerMetric(
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        cri.COUNTER,
        _counters(lambda c: c.cpu_ns // 1_000_000_000),
    ),
    ContainerMetric(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        cri.GAUGE,
        _counters(lambda c: c.usage),
    ),
    ContainerMetric(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        cri.GAUGE,
        _counters(lambda c: c.working_set),
    ),
    ContainerMetric(
        "container_memory_rss", "Size of RSS in bytes.", cri.GAUGE, _counters(lambda c: c.rss)
    ),
    ContainerMetric(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        cri.GAUGE,
        _counters(_memory_limit),
    ),
    ContainerMetric(
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        cri.GAUGE,
        lambda s: s.writable_layer.used_bytes if s.writable_layer else None,
    ),
    ContainerMetric(
        "container_fs_inodes_total",
        "Number of Inodes",
        cri.GAUGE,
        lambda s: s.writable_layer.inodes_used if s.writable_layer else None,
    ),
    ContainerMetric(
        "container_fs_reads_bytes_total",
        "Cumulative count of bytes read",
        cri.COUNTER,
        _counters(lambda c: c.io_read_bytes),
    ),
    ContainerMetric(
        "container_fs_writes_bytes_total",
        "Cumulative count of bytes written",
        cri.COUNTER,
        _counters(lambda c: c.io_write_bytes),
    ),
    ContainerMetric(
        "container_processes",
        "Number of processes running inside the container.",
        cri.GAUGE,
        _counters(lambda c: c.processes),
    ),
    ContainerMetric(
        "container_threads",
        "Number of threads running inside the container",
        cri.GAUGE,
        _counters(lambda c: c.threads),
    ),
)

NETWORK_METRICS = (
    NetworkMetric(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        lambda i: i.rx_bytes,
    ),
    NetworkMetric(
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
        lambda i: i.rx_packets,
    ),
    NetworkMetric(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        lambda i: i.rx_errors,
    ),
    NetworkMetric(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        lambda i: i.rx_dropped,
    ),
    NetworkMetric(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        lambda i: i.tx_bytes,
    ),
    NetworkMetric(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        lambda i: i.tx_packets,
    ),
    NetworkMetric(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        lambda i: i.tx_errors,
    ),
    NetworkMetric(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        lambda i: i.tx_dropped,
    ),
)


def list_metric_descriptors() -> cri.ListMetricDescriptorsResponse:
    descriptors = [
        cri.MetricDescriptor(name=m.name, help=m.help, label_keys=BASE_LABELS)
        for m in CONTAINER_METRICS
    ] + [
        cri.MetricDescriptor(name=m.name, help=m.help, label_keys=NETWORK_LABELS)
        for m in NETWORK_METRICS
    ]
    return cri.ListMetricDescriptorsResponse(descriptors=descriptors)


def _metric(name: str, kind: int, ts: int, labels: Sequence[str], value: int) -> cri.Metric:
    return cri.Metric(
        name=name,
        timestamp=ts,
        metric_type=kind,
        label_values=list(labels),
        value=cri.UInt64Value(value=max(0, value)),
    )


def container_metrics(
    container: Container, stats: core.ContainerStats, pod: cri.PodSandboxMetadata
) -> cri.ContainerMetrics:
    labels = (
        container_metadata(container).name,
        container.id,
        container.config.image,
        container.name,
        pod.namespace,
        pod.name,
    )
    found = []
    for m in CONTAINER_METRICS:
        value = m.value(stats)
        if value is not None:
            found.append(_metric(m.name, m.type, stats.timestamp, labels, value))
    return cri.ContainerMetrics(container_id=container.id, metrics=found)


def pod_metrics(
    sandbox: Sandbox, containers: Sequence[Container], stats: core.PodStats
) -> cri.PodSandboxMetrics:
    pod = pod_metadata(sandbox)
    base = (POD_CONTAINER, sandbox.id, "", sandbox.name, pod.namespace, pod.name)
    network = stats.network.interfaces if stats.network else ()
    own = [
        _metric(m.name, cri.COUNTER, stats.timestamp, (*base, i.name), m.value(i))
        for i in network
        for m in NETWORK_METRICS
    ]
    return cri.PodSandboxMetrics(
        pod_sandbox_id=sandbox.id,
        metrics=own,
        container_metrics=[
            container_metrics(c, s, pod) for c, s in zip(containers, stats.containers, strict=True)
        ],
    )


async def list_pod_sandbox_metrics(rt: Runtime) -> cri.ListPodSandboxMetricsResponse:
    found = []
    for sandbox in rt.sandboxes.pods():
        found.append(pod_metrics(sandbox, *await pod_stats(rt, sandbox)))
    return cri.ListPodSandboxMetricsResponse(pod_metrics=found)

"""ListMetricDescriptors and ListPodSandboxMetrics through the generated client: cAdvisor's
names and label keys, and values that follow what the pod's containers do."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtimed.gen.runtime.v1 import api_pb2 as cri
from tests.integration.test_cri_stats import SLEEP, Pod, image, pods  # noqa: F401 - fixtures
from tests.support.daemon import Daemon
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

KUBELET_NAMES = {
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_memory_usage_bytes",
    "container_memory_rss",
    "container_spec_memory_limit_bytes",
    "container_fs_usage_bytes",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "container_processes",
    "container_threads",
}


def descriptors(daemon: Daemon) -> dict[str, cri.MetricDescriptor]:
    reply = daemon.cri_runtime().ListMetricDescriptors(cri.ListMetricDescriptorsRequest())
    return {d.name: d for d in reply.descriptors}


def metrics_of(daemon: Daemon, pod_id: str) -> cri.PodSandboxMetrics:
    reply = daemon.cri_runtime().ListPodSandboxMetrics(cri.ListPodSandboxMetricsRequest())
    found = [p for p in reply.pod_metrics if p.pod_sandbox_id == pod_id]
    assert len(found) == 1
    return found[0]


def labelled(desc: cri.MetricDescriptor, metric: cri.Metric) -> dict[str, str]:
    assert len(metric.label_values) == len(desc.label_keys)
    return dict(zip(desc.label_keys, metric.label_values, strict=True))


def test_descriptors_and_pod_metrics(
    daemon: Daemon,
    image: str,  # noqa: F811
    tmp_path: Path,
    pods: list[Pod],  # noqa: F811
) -> None:
    described = descriptors(daemon)
    assert set(described) >= KUBELET_NAMES
    for name, desc in described.items():
        assert desc.help and {"container", "pod", "namespace"} <= set(desc.label_keys), name
    assert "interface" in described["container_network_receive_bytes_total"].label_keys

    pod = Pod(daemon, tmp_path, "metrics", {"app": "metrics"})
    pods.append(pod)
    busy = pod.run(image, "busy", "while :; do :; done")
    hog = pod.run(image, "hog", f"x=$(head -c 30000000 /dev/zero | tr '\\0' a); {SLEEP} & wait")

    def values(cid: str) -> dict[str, float]:
        found = metrics_of(daemon, pod.id)
        [mine] = [c for c in found.container_metrics if c.container_id == cid]
        out = {}
        for m in mine.metrics:
            labels = labelled(described[m.name], m)
            assert labels["pod"] == "metrics" and labels["id"] == cid
            assert labels["namespace"] == pod.config.metadata.namespace
            out[m.name] = m.value.value
        return out

    wait_for(lambda: values(busy)["container_cpu_usage_seconds_total"] >= 1, timeout=60)
    wait_for(lambda: values(hog)["container_memory_working_set_bytes"] >= 30_000_000, timeout=60)
    hog_values = values(hog)
    assert hog_values["container_memory_usage_bytes"] >= 30_000_000
    assert hog_values["container_memory_rss"] >= 30_000_000
    assert hog_values["container_processes"] >= 2  # the shell and its sleep
    assert hog_values["container_threads"] >= hog_values["container_processes"]
    assert "container_fs_usage_bytes" in hog_values

    own = metrics_of(daemon, pod.id).metrics
    eth0 = {
        m.name: m.value.value for m in own if labelled(described[m.name], m)["interface"] == "eth0"
    }
    assert "container_network_receive_bytes_total" in eth0
    assert "container_network_transmit_bytes_total" in eth0
    for m in own:
        assert labelled(described[m.name], m)["container"] == "POD"

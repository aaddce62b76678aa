"""What several CRI RuntimeService messages repeat: a container's and a pod's metadata,
label selectors and container filters."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from runtimed.core.model import Container, Sandbox
from runtimed.gen.runtime.v1 import api_pb2 as cri


def labels_match(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def cri_containers(
    containers: Iterable[Container], id_prefix: str, pod_prefix: str, selector: Mapping[str, str]
) -> Iterator[Container]:
    """The CRI containers a List call's filter picks (id and pod by prefix, then labels)."""
    for container in containers:
        if container.config.cri is None:
            continue
        if id_prefix and not container.id.startswith(id_prefix):
            continue
        if pod_prefix and not container.sandbox_id.startswith(pod_prefix):
            continue
        if labels_match(container.config.labels, selector):
            yield container


def container_metadata(container: Container) -> cri.ContainerMetadata:
    meta = container.config.cri or {}
    return cri.ContainerMetadata(
        name=meta.get("name", container.name), attempt=meta.get("attempt", 0)
    )


def pod_metadata(sandbox: Sandbox) -> cri.PodSandboxMetadata:
    meta = sandbox.config.cri or {}
    return cri.PodSandboxMetadata(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        namespace=meta.get("namespace", ""),
        attempt=meta.get("attempt", 0),
    )

"""What several CRI RuntimeService messages repeat: a container's and a pod's metadata,
and label selectors."""

from __future__ import annotations

from collections.abc import Mapping

from runtimed.core.model import Container, Sandbox
from runtimed.gen.runtime.v1 import api_pb2 as cri


def labels_match(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


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

"""The network part of the CRI RuntimeService: pod addresses, hostPorts, NetworkReady."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from runtimed.core.model import Sandbox
from runtimed.core.sandboxes import NODE
from runtimed.errors import InvalidArgument, NotFound
from runtimed.gen.runtime.v1 import api_pb2 as cri
from runtimed.network.ports import PortSpec

if TYPE_CHECKING:
    from runtimed.services import Runtime

_PROTOCOLS = {cri.TCP: "tcp", cri.UDP: "udp"}


def network_condition(rt: Runtime) -> cri.RuntimeCondition:
    if rt.network.ready:
        return cri.RuntimeCondition(type="NetworkReady", status=True)
    return cri.RuntimeCondition(
        type="NetworkReady",
        status=False,
        reason="NetworkPluginNotReady",
        message=rt.network.error,
    )


def host_ports(config: cri.PodSandboxConfig) -> list[PortSpec]:
    """The pod's hostPort mappings (a mapping without a host port publishes nothing)."""
    specs = []
    for mapping in config.port_mappings:
        if mapping.protocol not in _PROTOCOLS:
            raise InvalidArgument(
                f"hostPort protocol {cri.Protocol.Name(mapping.protocol)} is "
                "not supported: use TCP or UDP"
            )
        if mapping.host_port <= 0:
            continue
        specs.append(
            PortSpec(
                container_port=mapping.container_port or mapping.host_port,
                protocol=_PROTOCOLS[mapping.protocol],
                host_ip=mapping.host_ip,
                host_port=mapping.host_port,
            )
        )
    return specs


async def attach_pod(rt: Runtime, sandbox: Sandbox, config: cri.PodSandboxConfig) -> None:
    """Put a new pod on the pod network (a host-network pod: in runtimed's network
    namespace); on failure the pod is removed again."""
    node = sandbox.config.namespace_options.get("network") == NODE
    try:
        if node:
            await rt.network.attach_node_pod(sandbox, host_ports(config))
        else:
            await rt.network.attach_pod(sandbox, host_ports(config))
    except BaseException:
        with contextlib.suppress(Exception):
            await rt.sandboxes.remove(sandbox.id)
        raise


async def detach_pod(rt: Runtime, ref: str) -> None:
    """Release the pod's address and hostPorts; absent pods are fine (kubelet retries)."""
    try:
        sandbox = rt.sandboxes.get(ref)
    except NotFound:
        return
    await rt.network.detach_pod(sandbox.id)


def pod_network_status(rt: Runtime, sandbox: Sandbox) -> cri.PodSandboxNetworkStatus:
    return cri.PodSandboxNetworkStatus(ip=rt.network.pod_ip(sandbox.id))

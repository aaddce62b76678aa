"""The network half of runtimed.v1.Engine: networks, connect/disconnect, published ports."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runtimed.api.containerview import rfc3339
from runtimed.core.logs import parse_since
from runtimed.errors import InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.network.networks import CreateNetwork
from runtimed.network.store import NetworkRecord

if TYPE_CHECKING:
    from runtimed.network.service import NetworkService
    from runtimed.services import Runtime


def network_extras(req: pb.CreateContainerRequest) -> dict[str, Any]:
    """extras["network"] of a new container (see runtimed.network.request.NetRequest)."""
    return {
        "network": req.network,
        "aliases": list(req.network_aliases),
        "ip": req.ip,
        "links": list(req.links),
        "dns": list(req.dns),
        "dns_search": list(req.dns_search),
        "dns_options": list(req.dns_options),
        "extra_hosts": list(req.extra_hosts),
        "mac_address": req.mac_address,
        "ports": [
            {
                "host_ip": p.host_ip,
                "host_port": p.host_port,
                "host_port_end": p.host_port_end,
                "container_port": p.container_port,
                "protocol": p.protocol or "tcp",
            }
            for p in req.ports
        ],
        "publish_all": req.publish_all,
    }


def network_message(service: NetworkService, net: NetworkRecord) -> pb.Network:
    endpoints = []
    for e in service.live_endpoints(net):
        endpoints.append(
            pb.NetworkEndpoint(
                container_id=e.owner_id,
                name=service.owner_name(e.owner_id),
                ipv4_address=f"{e.ip}/{net.prefixlen}",
                mac_address=e.mac_address,
                aliases=e.aliases,
            )
        )
    return pb.Network(
        id=net.id,
        name=net.name,
        driver=net.driver,
        ipam=[pb.IpamConfig(subnet=net.subnet, ip_range=net.ip_range, gateway=net.gateway)]
        if net.subnet
        else [],
        internal=net.internal,
        labels=net.labels,
        options=net.options,
        created_at=rfc3339(net.created),
        containers=endpoints,
        interface=net.bridge,
        dns_enabled=net.dns_enabled,
    )


def _has_label(net: NetworkRecord, want: str) -> bool:
    key, sep, value = want.partition("=")
    return key in net.labels and (not sep or net.labels[key] == value)


def network_filter(
    service: NetworkService, filters: list[pb.Filter], *, prune: bool = False
) -> Callable[[NetworkRecord], bool]:
    """docker's network filters; a key given several times is an OR of its values."""
    allowed = {"until", "label", "label!"} if prune else {
        "driver", "label", "name", "id", "dangling", "type",
    }  # fmt: skip
    wanted: dict[str, list[str]] = {}
    for f in filters:
        if f.key not in allowed:
            raise InvalidArgument(f"invalid filter {f.key!r}")
        wanted.setdefault(f.key, []).append(f.value)
    now = time.time_ns()

    def match(net: NetworkRecord) -> bool:
        for key, values in wanted.items():
            if key == "driver" and net.driver not in values:
                return False
            if key == "name" and not any(v in net.name for v in values):
                return False
            if key == "id" and not any(net.id.startswith(v) for v in values):
                return False
            if key == "label" and not all(_has_label(net, v) for v in values):
                return False
            if key == "label!" and any(_has_label(net, v) for v in values):
                return False
            if key == "until" and not all(net.created < parse_since(v, now) for v in values):
                return False
            if key == "type":
                kind = "builtin" if net.builtin else "custom"
                if kind not in values:
                    return False
            if key == "dangling":
                dangling = not net.builtin and not service.endpoints(net)
                if str(dangling).lower() not in [v.lower() for v in values] and not (
                    dangling and "1" in values
                ):
                    return False
        return True

    return match


class NetworkRpcs:
    rt: Runtime

    async def CreateNetwork(self, request: pb.CreateNetworkRequest, context: Any) -> pb.Network:
        if len(request.ipam) > 1:
            raise InvalidArgument("only one --subnet per network is supported")
        ipam = request.ipam[0] if request.ipam else pb.IpamConfig()
        net = await self.rt.network.create(
            CreateNetwork(
                name=request.name,
                driver=request.driver,
                subnet=ipam.subnet,
                ip_range=ipam.ip_range,
                gateway=ipam.gateway,
                internal=request.internal,
                labels=dict(request.labels),
                options=dict(request.options),
                ipv6=request.ipv6,
            )
        )
        return network_message(self.rt.network, net)

    async def ListNetworks(
        self, request: pb.ListNetworksRequest, context: Any
    ) -> pb.ListNetworksResponse:
        service = self.rt.network
        match = network_filter(service, list(request.filters))
        return pb.ListNetworksResponse(
            networks=[network_message(service, n) for n in service.listed() if match(n)]
        )

    async def InspectNetwork(self, request: pb.NetworkRef, context: Any) -> pb.Network:
        return network_message(self.rt.network, self.rt.network.get(request.name))

    async def RemoveNetwork(self, request: pb.NetworkRef, context: Any) -> pb.Empty:
        await self.rt.network.remove(request.name)
        return pb.Empty()

    async def PruneNetworks(
        self, request: pb.PruneNetworksRequest, context: Any
    ) -> pb.PruneNetworksResponse:
        match = network_filter(self.rt.network, list(request.filters), prune=True)
        removed = await self.rt.network.prune(keep=lambda n: not match(n))
        return pb.PruneNetworksResponse(deleted=[n.name for n in removed])

    async def ConnectNetwork(self, request: pb.ConnectNetworkRequest, context: Any) -> pb.Empty:
        await self.rt.network.connect(
            request.network, request.container, aliases=list(request.aliases), ip=request.ip
        )
        return pb.Empty()

    async def DisconnectNetwork(
        self, request: pb.DisconnectNetworkRequest, context: Any
    ) -> pb.Empty:
        await self.rt.network.disconnect(request.network, request.container, force=request.force)
        return pb.Empty()

    async def ContainerPorts(
        self, request: pb.ContainerRef, context: Any
    ) -> pb.ContainerPortsResponse:
        container = self.rt.containers.get(request.id)
        published = self.rt.network.published(container.id) if container.running else []
        return pb.ContainerPortsResponse(
            ports=[
                pb.PortBinding(
                    host_ip=p.host_ip,
                    host_port=p.host_port,
                    container_port=p.container_port,
                    protocol=p.protocol,
                )
                for p in published
            ]
        )

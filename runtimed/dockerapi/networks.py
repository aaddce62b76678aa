"""/networks: list, inspect, create, remove, prune, connect, disconnect."""

from __future__ import annotations

from typing import Any

from runtimed.api.containerview import rfc3339
from runtimed.api.engine_networks import network_filter
from runtimed.dockerapi.context import Context
from runtimed.dockerapi.http import Request, Response, json_response, no_content
from runtimed.dockerapi.router import Router
from runtimed.errors import InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.network.networks import CreateNetwork
from runtimed.network.service import NetworkService
from runtimed.network.store import NetworkRecord


def register(router: Router, ctx: Context) -> None:
    h = NetworkHandlers(ctx)
    router.add("GET", "/networks", h.list)
    router.add("POST", "/networks/create", h.create)
    router.add("POST", "/networks/prune", h.prune)
    router.add("GET", "/networks/{id}", h.inspect)
    router.add("DELETE", "/networks/{id}", h.remove)
    router.add("POST", "/networks/{id}/connect", h.connect)
    router.add("POST", "/networks/{id}/disconnect", h.disconnect)


def network_doc(service: NetworkService, net: NetworkRecord, *, containers: bool) -> dict[str, Any]:
    endpoints: dict[str, Any] = {}
    if containers:
        for e in service.live_endpoints(net):
            endpoints[e.owner_id] = {
                "Name": service.owner_name(e.owner_id),
                "EndpointID": e.owner_id[:12] + net.id[:12],
                "MacAddress": e.mac_address,
                "IPv4Address": f"{e.ip}/{net.prefixlen}" if net.subnet else "",
                "IPv6Address": "",
            }
    config = []
    if net.subnet:
        entry = {"Subnet": net.subnet, "Gateway": net.gateway}
        if net.ip_range:
            entry["IPRange"] = net.ip_range
        config.append(entry)
    return {
        "Name": net.name,
        "Id": net.id,
        "Created": rfc3339(net.created),
        "Scope": "local",
        "Driver": net.driver,
        "EnableIPv4": True,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": config},
        "Internal": net.internal,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": endpoints,
        "Options": net.options,
        "Labels": net.labels,
    }


def _filters(request: Request) -> list[pb.Filter]:
    return [
        pb.Filter(key=key, value=value)
        for key, values in request.filters().items()
        for value in values
    ]


def _body(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument("the body must be a JSON object")
    return value


class NetworkHandlers:
    def __init__(self, ctx: Context) -> None:
        self.network = ctx.services.network

    async def list(self, request: Request) -> Response:
        match = network_filter(self.network, _filters(request))
        return json_response(
            [
                network_doc(self.network, n, containers=False)
                for n in self.network.listed()
                if match(n)
            ]
        )

    async def inspect(self, request: Request) -> Response:
        net = self.network.get(request.params["id"])
        return json_response(network_doc(self.network, net, containers=True))

    async def create(self, request: Request) -> Response:
        body = _body(await request.json(default={}))
        name = str(body.get("Name") or "")
        if not name:
            raise InvalidArgument("network name is required")
        ipam = body.get("IPAM") or {}
        if str(ipam.get("Driver") or "default") != "default":
            raise InvalidArgument(
                f"IPAM driver {ipam.get('Driver')!r} is not supported by runtimed"
            )
        configs = ipam.get("Config") or []
        if len(configs) > 1:
            raise InvalidArgument("only one IPAM config (subnet) per network is supported")
        first = configs[0] if configs else {}
        if body.get("EnableIPv6"):
            raise InvalidArgument("IPv6 networks are not supported by runtimed")
        for flag in ("Ingress", "ConfigOnly"):  # Attachable: any container may join anyway
            if body.get(flag):
                raise InvalidArgument(f"{flag} networks are a swarm feature runtimed does not have")
        net = await self.network.create(
            CreateNetwork(
                name=name,
                driver=str(body.get("Driver") or "bridge"),
                subnet=str(first.get("Subnet") or ""),
                ip_range=str(first.get("IPRange") or ""),
                gateway=str(first.get("Gateway") or ""),
                internal=bool(body.get("Internal")),
                labels={str(k): str(v) for k, v in (body.get("Labels") or {}).items()},
                options={str(k): str(v) for k, v in (body.get("Options") or {}).items()},
            )
        )
        return json_response({"Id": net.id, "Warning": ""}, 201)

    async def remove(self, request: Request) -> Response:
        await self.network.remove(request.params["id"])
        return no_content()

    async def prune(self, request: Request) -> Response:
        match = network_filter(self.network, _filters(request), prune=True)
        removed = await self.network.prune(keep=lambda n: not match(n))
        return json_response({"NetworksDeleted": [n.name for n in removed] or None})

    async def connect(self, request: Request) -> Response:
        body = _body(await request.json(default={}))
        endpoint = body.get("EndpointConfig") or {}
        ipam = endpoint.get("IPAMConfig") or {}
        await self.network.connect(
            request.params["id"],
            str(body.get("Container") or ""),
            aliases=[str(a) for a in endpoint.get("Aliases") or []],
            ip=str(ipam.get("IPv4Address") or ""),
        )
        return no_content(200)

    async def disconnect(self, request: Request) -> Response:
        body = _body(await request.json(default={}))
        await self.network.disconnect(
            request.params["id"], str(body.get("Container") or ""), force=bool(body.get("Force"))
        )
        return no_content(200)

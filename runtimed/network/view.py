"""How a container's networking shows in `ps` (PORTS) and `inspect` (docker's fields)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtimed.network.hook import network_service
from runtimed.network.ports import format_ports
from runtimed.network.request import NetRequest

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService
    from runtimed.core.model import Container


def ports_text(containers: ContainerService, container: Container) -> str:
    service = network_service(containers)
    if service is None or not container.running:
        return ""
    return format_ports(service.published(container.id))


def network_mode(containers: ContainerService, container: Container) -> str:
    service = network_service(containers)
    doc = service.settings(container.id) if service else {}
    mode = doc.get("mode", "none")
    if mode == "container":
        return f"container:{doc.get('peer', '')}"
    if mode == "user":
        return NetRequest.from_extras(container.config.extras).network
    return {"bridge": "bridge", "pod": "bridge"}.get(mode, mode)


def has_own_network(containers: ContainerService, container: Container) -> bool:
    """Whether the container has a network namespace of its own (not the host's, not
    none): its counters are the container's NET I/O in `stats`."""
    return network_mode(containers, container) not in ("host", "none")


def host_config(containers: ContainerService, container: Container) -> dict[str, Any]:
    """HostConfig's network part: mode, port bindings, DNS, extra hosts, links."""
    net = NetRequest.from_extras(container.config.extras)
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in net.ports:
        key = f"{p.get('container_port')}/{p.get('protocol') or 'tcp'}"
        bindings.setdefault(key, []).append(
            {
                "HostIp": p.get("host_ip") or "",
                "HostPort": _host_port(p),
            }
        )
    return {
        "NetworkMode": network_mode(containers, container),
        "PortBindings": bindings,
        "PublishAllPorts": net.publish_all,
        "Dns": list(net.dns),
        "DnsSearch": list(net.dns_search),
        "DnsOptions": list(net.dns_options),
        "ExtraHosts": list(net.extra_hosts),
        "Links": list(net.links),
    }


def network_settings(containers: ContainerService, container: Container) -> dict[str, Any]:
    """NetworkSettings: each network's address, gateway, MAC and aliases; published ports."""
    service = network_service(containers)
    empty: dict[str, Any] = {"Networks": {}, "Ports": {}, "IPAddress": "", "Gateway": ""}
    if service is None:
        return empty
    doc = service.settings(container.id)
    networks: dict[str, Any] = {}
    for a in service.attachments(container.id):
        networks[a.network.name] = {
            "NetworkID": a.network.id,
            "EndpointID": container.id[:12] + a.network.id[:12] if container.running else "",
            "IPAddress": a.endpoint.ip,
            "IPPrefixLen": a.network.prefixlen,
            "Gateway": "" if a.network.internal else a.network.gateway,
            "MacAddress": a.endpoint.mac_address,
            "Aliases": list(a.endpoint.aliases),
            "DNSNames": (
                [container.name, container.id[:12], *a.endpoint.aliases]
                if a.network.dns_enabled
                else []
            ),
            "Links": [f"{link['name']}:{link['alias']}" for link in doc.get("links") or []] or None,
        }
    ports: dict[str, Any] = {}
    for p in doc.get("ports") or []:
        ports.setdefault(f"{p['container_port']}/{p['protocol']}", None)
    if container.running:
        for rec in service.published(container.id):
            key = f"{rec.container_port}/{rec.protocol}"
            ports[key] = (ports.get(key) or []) + [
                {"HostIp": rec.host_ip, "HostPort": str(rec.host_port)}
            ]
    bridge = networks.get("bridge") or {}
    first = next(iter(networks.values()), {})
    return {
        "Networks": networks,
        "Ports": ports,
        # docker's top-level fields describe the default bridge network only.
        "IPAddress": bridge.get("IPAddress", ""),
        "IPPrefixLen": bridge.get("IPPrefixLen", 0),
        "Gateway": bridge.get("Gateway", ""),
        "MacAddress": bridge.get("MacAddress", first.get("MacAddress", "")),
        "SandboxKey": str(service.netns_dir / container.id) if container.running else "",
    }


def _host_port(binding: dict[str, Any]) -> str:
    """As docker shows a -p binding: "" (random), "8080", or "8000-8010" (first free)."""
    start, end = binding.get("host_port") or 0, binding.get("host_port_end") or 0
    if not start:
        return ""
    return f"{start}-{end}" if end and end != start else str(start)

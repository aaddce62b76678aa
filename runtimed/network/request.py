"""What a container asks of the network, as stored in `container.config.extras["network"]`."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from runtimed.errors import InvalidArgument

KEY = "network"
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")


@dataclass
class NetRequest:
    network: str = ""  # "" | bridge | NAME | host | none | container:NAME
    aliases: list[str] = field(default_factory=list)
    ip: str = ""
    links: list[str] = field(default_factory=list)  # NAME[:ALIAS]
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)  # HOST:IP (IP may be host-gateway)
    mac_address: str = ""
    ports: list[dict[str, Any]] = field(default_factory=list)
    publish_all: bool = False

    @classmethod
    def from_extras(cls, extras: dict[str, Any] | None) -> NetRequest:
        data = dict((extras or {}).get(KEY) or {})
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def mode(self) -> str:
        """bridge | user | host | none | container"""
        net = self.network or "bridge"
        if net in ("bridge", "default"):
            return "bridge"
        if net in ("host", "none"):
            return net
        if net.startswith("container:"):
            return "container"
        return "user"

    @property
    def network_name(self) -> str:
        return "bridge" if self.mode == "bridge" else self.network

    @property
    def peer(self) -> str:
        return self.network.partition(":")[2] if self.mode == "container" else ""

    def check(self) -> None:
        """Syntax only; what needs the daemon's state is checked by the service."""
        if self.mode == "container" and not self.peer:
            raise InvalidArgument("--network container: needs a container name or id")
        if self.ip:
            _ipv4(self.ip, "--ip")
        for server in self.dns:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise InvalidArgument(f"{server} is not an ip address (--dns)") from None
        for entry in self.extra_hosts:
            parse_extra_host(entry)
        if self.mac_address:
            if not _MAC.fullmatch(self.mac_address):
                raise InvalidArgument(f"{self.mac_address} is not a valid mac address")
            if int(self.mac_address[:2], 16) & 1:
                raise InvalidArgument(f"{self.mac_address} is a multicast mac address")
        for link in self.links:
            name, _, alias = link.partition(":")
            if not name or (":" in alias):
                raise InvalidArgument(f"invalid link {link!r}: use NAME or NAME:ALIAS")
        for alias in self.aliases:
            if not _HOSTNAME.fullmatch(alias):
                raise InvalidArgument(f"invalid network alias {alias!r}")


def parse_extra_host(entry: str) -> tuple[str, str]:
    """--add-host HOST:IP (also HOST=IP); IP may be IPv6 or host-gateway."""
    sep = "=" if "=" in entry else ":"
    host, found, ip = entry.partition(sep)
    ip = ip.strip("[]")
    if not found or not host or not ip:
        raise InvalidArgument(f"invalid argument {entry!r} for --add-host: use HOST:IP")
    if ip != "host-gateway":
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"invalid IP address in add-host: {ip!r}") from None
    return host, ip


def _ipv4(text: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidArgument(f"invalid IPv4 address {text!r} for {what}") from None

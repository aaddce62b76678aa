"""The host's own address, where host.containers.internal leads when the host's
loopback is closed to containers (runtimed.toml host_loopback = false)."""

from __future__ import annotations

import ipaddress
import socket

from runtimed.network.networks import host_routes

# TEST-NET-2 (RFC 5737): only asked which source address a route to it would use.
_ANYWHERE = "198.51.100.1"


def primary_address(routes_file: str = "/proc/net/route") -> str:
    """The address the host's default route leaves from, else one of a directly
    connected network's; "" when the host has nothing but loopback.

    Must run in the host's network namespace (the daemon's main thread). Connecting
    a UDP socket sends nothing: the kernel only picks the route and source address.
    """
    targets = [_ANYWHERE]
    targets += [str(ipaddress.ip_network(r).network_address + 1) for r in host_routes(routes_file)]
    for target in targets:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((target, 9))
            except OSError:
                continue
            address = probe.getsockname()[0]
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return ""

"""The network flags of `run`/`create`: --network, -p, -P, --dns, --add-host, ..."""

from __future__ import annotations

import argparse

from runtimed.cli.client import CliError
from runtimed.gen.runtimed.v1 import engine_pb2 as pb


def add_network_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--network", "--net", help="bridge (default) | NAME | host | none | container:NAME"
    )
    p.add_argument("--network-alias", "--net-alias", action="append", help="network alias")
    p.add_argument("--ip", help="IPv4 address on a user-defined network")
    p.add_argument("--link", action="append", help="NAME[:ALIAS] of another container")
    p.add_argument("--dns", action="append", help="DNS server")
    p.add_argument("--dns-search", action="append", help="DNS search domain")
    p.add_argument("--dns-option", "--dns-opt", action="append", help="resolv.conf option")
    p.add_argument("--add-host", action="append", help="HOST:IP (IP may be host-gateway)")
    p.add_argument("--mac-address", help="MAC address of the first interface")
    p.add_argument(
        "-p", "--publish", action="append", help="[IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]"
    )
    p.add_argument("-P", "--publish-all", action="store_true", help="publish EXPOSEd ports")


def _usage(message: str) -> CliError:
    return CliError(message, 125)


def _range(text: str, what: str, spec: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        start = int(low)
        end = int(high) if sep else start
    except ValueError:
        raise _usage(f"invalid {what} {text!r} in publish spec {spec!r}") from None
    if not (0 < start <= end < 65536):
        raise _usage(f"invalid {what} range {text!r} in publish spec {spec!r}")
    return start, end


def parse_publish(spec: str) -> list[pb.PortBinding]:
    """docker's -p: [IP:][HOST:]CTR[/PROTO], ports or equal-length ranges."""
    body, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp"):
        raise _usage(f"invalid proto {proto!r} in publish spec {spec!r}: use tcp or udp")
    host_ip = ""
    if body.startswith("["):  # [v6]:host:ctr
        close = body.find("]")
        if close < 0:
            raise _usage(f"invalid publish spec {spec!r}")
        host_ip, body = body[1:close], body[close + 1 :].lstrip(":")
        parts = body.split(":")
        if len(parts) == 1:
            parts = ["", parts[0]]
    else:
        parts = body.split(":")
        if len(parts) == 3:
            host_ip, parts = parts[0], parts[1:]
        elif len(parts) > 3:
            raise _usage(f"invalid publish spec {spec!r}")
    if len(parts) == 1:
        host_text, ctr_text = "", parts[0]
    else:
        host_text, ctr_text = parts
    if not ctr_text:
        raise _usage(f"no container port in publish spec {spec!r}")
    c_start, c_end = _range(ctr_text, "container port", spec)
    count = c_end - c_start + 1
    # One container port and a host range: the daemon binds the first free port of it.
    first_free = False
    if host_text:
        h_start, h_end = _range(host_text, "host port", spec)
        first_free = count == 1 and h_end > h_start
        if not first_free and h_end - h_start + 1 != count:
            raise _usage(
                f"invalid publish spec {spec!r}: host and container port ranges must have "
                "the same length"
            )
    else:
        h_start = h_end = 0
    return [
        pb.PortBinding(
            host_ip=host_ip,
            host_port=h_start + i if h_start else 0,
            host_port_end=h_end if first_free else 0,
            container_port=c_start + i,
            protocol=proto,
        )
        for i in range(count)
    ]


def apply_network_flags(args: argparse.Namespace, req: pb.CreateContainerRequest) -> None:
    """Fill the network fields of a CreateContainerRequest from the parsed flags."""
    req.network = getattr(args, "network", None) or ""
    req.network_aliases.extend(getattr(args, "network_alias", None) or [])
    req.ip = getattr(args, "ip", None) or ""
    req.links.extend(getattr(args, "link", None) or [])
    req.dns.extend(getattr(args, "dns", None) or [])
    req.dns_search.extend(getattr(args, "dns_search", None) or [])
    req.dns_options.extend(getattr(args, "dns_option", None) or [])
    req.extra_hosts.extend(getattr(args, "add_host", None) or [])
    req.mac_address = getattr(args, "mac_address", None) or ""
    for spec in getattr(args, "publish", None) or []:
        req.ports.extend(parse_publish(spec))
    req.publish_all = bool(getattr(args, "publish_all", False))

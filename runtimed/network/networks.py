"""Network definitions: names, drivers, subnets; what `network create` accepts."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from runtimed.core.model import now_ns
from runtimed.errors import FailedPrecondition, InvalidArgument, shown
from runtimed.network.store import NetworkRecord

DEFAULT_NETWORK = "bridge"
POD_NETWORK = "cri"
DEFAULT_SUBNET = "10.88.0.0/16"
POD_SUBNET = "10.85.0.0/16"
DEFAULT_MTU = 65520
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
MAX_NAME = 255
_ROOTLESS_IMPOSSIBLE = ("macvlan", "ipvlan")
_MTU_OPTIONS = ("mtu", "com.docker.network.driver.mtu")
_BRIDGE_OPTIONS = ("com.docker.network.bridge.name",)


@dataclass
class CreateNetwork:
    name: str
    driver: str = "bridge"
    subnet: str = ""
    ip_range: str = ""
    gateway: str = ""
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    ipv6: bool = False


def builtin_networks() -> list[NetworkRecord]:
    """The default `bridge` network (docker's: names only through links) and the pods' one."""
    return [
        _builtin(DEFAULT_NETWORK, DEFAULT_SUBNET, "runtimed0"),
        _builtin(POD_NETWORK, POD_SUBNET, "runtimed-cri"),
    ]


# docker's `host` and `none` rows: modes, not networks, but listed and inspectable as such.
MODE_NETWORKS = {"host": "host", "none": "null"}  # name -> driver


def mode_network(name: str) -> NetworkRecord:
    """The record of the `host` or `none` network; its id is the same on every start."""
    return NetworkRecord(
        id=hashlib.sha256(f"runtimed-network-{name}".encode()).hexdigest(),
        name=name,
        driver=MODE_NETWORKS[name],
        dns_enabled=False,
        builtin=True,
    )


def _builtin(name: str, subnet: str, bridge: str) -> NetworkRecord:
    net = ipaddress.ip_network(subnet)
    return NetworkRecord(
        id=secrets.token_hex(32),
        name=name,
        subnet=subnet,
        gateway=str(net.network_address + 1),
        created=now_ns(),
        bridge=bridge,
        dns_enabled=False,
        builtin=True,
        mtu=DEFAULT_MTU,
    )


def check_driver(driver: str) -> str:
    driver = driver or "bridge"
    if driver in _ROOTLESS_IMPOSSIBLE:
        raise FailedPrecondition(
            f"the {driver} driver cannot work rootless: it attaches containers to a host "
            "interface, which needs CAP_NET_ADMIN in the host's network namespace; "
            "use the bridge driver (the default)"
        )
    if driver != "bridge":
        raise InvalidArgument(f"network driver {driver!r} is not supported: use bridge")
    return driver


def plan(
    req: CreateNetwork,
    existing: list[NetworkRecord],
    avoid: list[str],
    uplink: Sequence[str] = (),
) -> NetworkRecord:
    """The record `network create` would make; InvalidArgument/FailedPrecondition if not.

    A subnet may not overlap another network, the uplink's own network (slirp4netns's
    10.0.2.0/24, or the host's that pasta copies) or a route of the host (`avoid`):
    those addresses would stop being reachable from containers.
    """
    if not _NAME.fullmatch(req.name or "") or len(req.name) > MAX_NAME:
        raise InvalidArgument(
            f"invalid network name {shown(req.name)!r}: use up to {MAX_NAME} letters, digits, "
            "'_', '.' and '-', starting with a letter or digit"
        )
    if req.name in ("host", "none", "default") or req.name.startswith("container:"):
        raise InvalidArgument(f"{req.name!r} is a reserved network name")
    driver = check_driver(req.driver)
    if req.ipv6:
        raise InvalidArgument("IPv6 networks are not supported yet: create it without --ipv6")
    reserved = [(n.subnet, f"network {n.name} ({n.subnet})") for n in existing]
    reserved += [(r, f"the network of the uplink ({r})") for r in uplink]
    reserved += [(r, f"a route of the host ({r})") for r in avoid]
    if req.subnet:
        try:
            subnet = ipaddress.ip_network(req.subnet, strict=True)
        except ValueError as exc:
            raise InvalidArgument(f"invalid subnet {req.subnet!r}: {exc}") from None
        if subnet.version != 4:
            raise InvalidArgument("IPv6 subnets are not supported yet")
        if subnet.num_addresses < 4:
            raise InvalidArgument(f"subnet {subnet} is too small: use /30 or larger")
        for other, what in reserved:
            if subnet.overlaps(ipaddress.ip_network(other, strict=False)):
                # Docker's words first, then which one.
                raise FailedPrecondition(
                    "invalid pool request: Pool overlaps with other one on this address "
                    f"space: {subnet} overlaps {what}"
                )
    else:
        if req.ip_range or req.gateway:
            raise InvalidArgument("--ip-range and --gateway need --subnet")
        subnet = _pick_subnet([ipaddress.ip_network(r, strict=False) for r, _ in reserved])
    gateway = str(subnet.network_address + 1)
    if req.gateway:
        try:
            gw = ipaddress.IPv4Address(req.gateway)
        except ValueError:
            raise InvalidArgument(f"invalid gateway {req.gateway!r}") from None
        if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
            raise InvalidArgument(f"gateway {gw} is not a host address of subnet {subnet}")
        gateway = str(gw)
    ip_range = ""
    if req.ip_range:
        try:
            pool = ipaddress.ip_network(req.ip_range, strict=True)
        except ValueError as exc:
            raise InvalidArgument(f"invalid ip range {req.ip_range!r}: {exc}") from None
        if not pool.subnet_of(subnet):  # type: ignore[arg-type]
            raise InvalidArgument(f"ip range {pool} is not inside subnet {subnet}")
        ip_range = str(pool)
    mtu = DEFAULT_MTU
    for key in _MTU_OPTIONS:
        if key in req.options:
            try:
                mtu = int(req.options[key])
            except ValueError:
                raise InvalidArgument(f"invalid mtu {req.options[key]!r}") from None
            if not 68 <= mtu <= 65535:
                raise InvalidArgument(f"mtu {mtu} is out of range (68-65535)")
    ident = secrets.token_hex(32)
    bridge = next((req.options[k] for k in _BRIDGE_OPTIONS if k in req.options), "")
    if bridge and (len(bridge) > 15 or not _NAME.fullmatch(bridge)):
        raise InvalidArgument(f"invalid bridge name {bridge!r}: at most 15 characters")
    if bridge and any(n.bridge == bridge for n in existing):
        raise FailedPrecondition(f"bridge name {bridge} is in use by another network")
    return NetworkRecord(
        id=ident,
        name=req.name,
        driver=driver,
        subnet=str(subnet),
        ip_range=ip_range,
        gateway=gateway,
        internal=req.internal,
        labels=dict(req.labels),
        options=dict(req.options),
        created=now_ns(),
        bridge=bridge or f"rd-{ident[:12]}",
        dns_enabled=True,
        mtu=mtu,
    )


def _pick_subnet(
    taken: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> ipaddress.IPv4Network:
    """The next free /24 from 10.89.0.0 on (podman's pool), avoiding every taken range."""
    for second in range(89, 256):
        for third in range(256):
            candidate = ipaddress.IPv4Network(f"10.{second}.{third}.0/24")
            if not any(candidate.overlaps(t) for t in taken if t.version == 4):
                return candidate
    raise FailedPrecondition("no free subnet left in 10.89.0.0-10.255.255.0: give --subnet")


def host_routes(path: str = "/proc/net/route", iface: str = "") -> list[str]:
    """The IPv4 routes (destination/prefix, not the default) of the namespace `path`
    shows, of every interface or of `iface`: the host's, which our subnets must not
    shadow. (The daemon's process is in the host's network namespace.)"""
    out = []
    try:
        with open(path) as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) < 8 or (iface and fields[0] != iface):
                    continue
                dest = ipaddress.IPv4Address(bytes.fromhex(fields[1])[::-1])
                mask = ipaddress.IPv4Address(bytes.fromhex(fields[7])[::-1])
                if int(mask) == 0:
                    continue
                out.append(str(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)))
    except OSError:
        pass
    return out

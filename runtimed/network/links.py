"""Netlink work (pyroute2) on bridges and veth pairs; every function runs on the netns worker.

The worker rests in the rootless namespace, so a plain IPRoute() there talks
to it; for a container's namespace the worker steps inside for the block.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from runtimed.network.netns import NetnsWorker
from runtimed.network.store import mac_for

ENOENT, EEXIST, ENODEV = 2, 17, 19
# The kernel gives every namespace's loopback this index.
LOOPBACK_INDEX = 1
# pyroute2 logs every netlink message at DEBUG: far too much for `runtimed --debug`.
logging.getLogger("pyroute2").setLevel(logging.WARNING)


@dataclass(frozen=True)
class VethPlan:
    host_name: str  # the end on the bridge, in the rootless namespace
    bridge: str
    ifname: str  # the end in the container: eth0, eth1, ...
    ip: str
    prefixlen: int
    mac: str
    gateway: str  # "" for internal networks: no default route through them
    mtu: int
    default_route: bool


def veth_name(owner_id: str, network_id: str) -> str:
    return "veth" + hashlib.sha256(f"{owner_id}/{network_id}".encode()).hexdigest()[:11]


def _index(name: str) -> int | None:
    """`name`'s index in this thread's namespace: one ioctl, where pyroute2's lookup costs
    a netlink round trip and about a millisecond of Python."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def loopback_up() -> None:
    with IPRoute() as ipr:
        ipr.link("set", index=LOOPBACK_INDEX, state="up")


def ensure_bridge(name: str, gateway: str, prefixlen: int, mtu: int) -> None:
    # A fixed address: a bridge left to itself takes the lowest of its ports' (random)
    # addresses, so the gateway's MAC would change as containers come and go and their
    # ARP caches would point at a stale one for a while.
    mac = mac_for(gateway)
    with IPRoute() as ipr:
        index = _index(name)
        if index is None:
            with contextlib.suppress(NetlinkError):
                ipr.link("add", ifname=name, kind="bridge")
            index = _index(name)
        assert index is not None
        have = {
            (a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)
        }
        if (gateway, prefixlen) not in have:
            ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up", mtu=mtu, address=mac)


def delete_link(name: str) -> None:
    delete_links([name])


def delete_links(names: list[str]) -> None:
    """Delete the links that exist (a veth takes its peer along); one netlink socket, and
    none when nothing is left to delete."""
    indexes = [index for index in map(_index, names) if index is not None]
    if not indexes:
        return
    with IPRoute() as ipr:
        for index in indexes:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=index)


def link_names() -> set[str]:
    with IPRoute() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def default_gateway() -> str:
    """The IPv4 gateway of the namespace's default route ("" without one)."""
    with IPRoute() as ipr:
        for route in ipr.get_default_routes(family=2):
            gw = route.get_attr("RTA_GATEWAY")
            if gw:
                return str(gw)
    return ""


def attach(
    worker: NetnsWorker, pin: Path, plans: list[VethPlan], *, loopback: bool = False
) -> None:
    """Create each veth pair, its container end straight inside `pin`, and configure it;
    with `loopback`, also bring up `pin`'s lo (a namespace just made).

    pyroute2 costs about a millisecond per request here, so requests are few: the pair
    is made already on its bridge and up, and a fresh namespace's lo has a known index.
    """
    fd = os.open(pin, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with IPRoute() as ipr:
            bridges: dict[str, int] = {}
            for plan in plans:
                if plan.bridge not in bridges:
                    index = _index(plan.bridge)
                    if index is None:
                        raise RuntimeError(f"bridge {plan.bridge} is missing")
                    bridges[plan.bridge] = index
                _add_veth(ipr, plan, fd, bridges[plan.bridge])
    finally:
        os.close(fd)
    with worker.inside(pin), IPRoute() as ipr:
        if loopback:
            ipr.link("set", index=LOOPBACK_INDEX, state="up")
        for plan in plans:
            index = _index(plan.ifname)
            ipr.addr("add", index=index, address=plan.ip, prefixlen=plan.prefixlen)
            ipr.link("set", index=index, state="up")
            if plan.default_route and plan.gateway:
                with contextlib.suppress(NetlinkError):
                    ipr.route("add", dst="0.0.0.0/0", gateway=plan.gateway)


def _add_veth(ipr: IPRoute, plan: VethPlan, netns_fd: int, bridge: int) -> None:
    """One request: the pair, the container end in its namespace, the host end up on `bridge`."""
    request = {
        "ifname": plan.host_name,
        "kind": "veth",
        "mtu": plan.mtu,
        "master": bridge,
        "state": "up",
        "peer": {
            "ifname": plan.ifname,
            "net_ns_fd": netns_fd,
            "address": plan.mac,
            "mtu": plan.mtu,
        },
    }
    try:
        ipr.link("add", **request)
    except NetlinkError as exc:
        if exc.code != EEXIST:
            raise
        # The host end of an earlier run: its namespace may still be on its way out.
        index = _index(plan.host_name)
        if index is not None:
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=index)
        ipr.link("add", **request)


def container_links(worker: NetnsWorker, pin: Path) -> set[str]:
    with worker.inside(pin):
        return link_names()


def has_default_route(worker: NetnsWorker, pin: Path) -> bool:
    with worker.inside(pin):
        return bool(default_gateway())

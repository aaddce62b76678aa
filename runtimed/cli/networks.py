"""`runtimectl network ...` and `runtimectl port`: docker's network commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from runtimed.cli.client import Client, CliError, daemon_error
from runtimed.cli.format import format_rows, inspect_template, print_docs
from runtimed.cli.rpc import RpcError
from runtimed.gen.runtimed.v1 import engine_pb2 as pb


def _labels(values: list[str] | None) -> dict[str, str]:
    out = {}
    for item in values or []:
        key, _, value = item.partition("=")
        if not key:
            raise CliError(f"invalid label '{item}': empty name", 125)
        out[key] = value
    return out


def _filters(values: list[str] | None) -> list[pb.Filter]:
    out = []
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"bad format of filter (expected name=value): {item}")
        out.append(pb.Filter(key=key, value=value))
    return out


def inspect_doc(net: pb.Network) -> dict[str, Any]:
    """docker network inspect's document."""
    ipam = [
        {
            k: v
            for k, v in (("Subnet", c.subnet), ("IPRange", c.ip_range), ("Gateway", c.gateway))
            if v
        }
        for c in net.ipam
    ]
    return {
        "Name": net.name,
        "Id": net.id,
        "Created": net.created_at,
        "Scope": "local",
        "Driver": net.driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": ipam},
        "Internal": net.internal,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {
            e.container_id: {
                "Name": e.name,
                "EndpointID": e.container_id[:12] + net.id[:12],
                "MacAddress": e.mac_address,
                "IPv4Address": e.ipv4_address,
                "IPv6Address": "",
                "Aliases": list(e.aliases),
            }
            for e in net.containers
        },
        "Options": dict(net.options),
        "Labels": dict(net.labels),
        "DNSEnabled": net.dns_enabled,
        "NetworkInterface": net.interface,
    }


def _call(client: Client, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except RpcError as exc:
        raise CliError(daemon_error(client, exc)) from None


def cmd_create(client: Client, args: argparse.Namespace) -> int:
    options = _labels(args.opt)
    ipam = []
    if args.subnet or args.ip_range or args.gateway:
        ipam.append(
            pb.IpamConfig(
                subnet=args.subnet or "", ip_range=args.ip_range or "", gateway=args.gateway or ""
            )
        )
    req = pb.CreateNetworkRequest(
        name=args.name,
        driver=args.driver or "bridge",
        ipam=ipam,
        internal=args.internal,
        labels=_labels(args.label),
        options=options,
        ipv6=args.ipv6,
    )
    net = _call(client, lambda: client.engine.CreateNetwork(req))
    print(net.id)
    return 0


def cmd_ls(client: Client, args: argparse.Namespace) -> int:
    req = pb.ListNetworksRequest(filters=_filters(args.filter))
    nets = _call(client, lambda: client.engine.ListNetworks(req)).networks
    if args.quiet:
        for net in nets:
            print(net.id if args.no_trunc else net.id[:12])
        return 0
    rows = [
        {
            "ID": net.id if args.no_trunc else net.id[:12],
            "Name": net.name,
            "Driver": net.driver,
            "Scope": "local",
            "IPv6": "false",  # IPv6 networks are not supported yet
            "Internal": str(net.internal).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(net.labels.items())),
            "CreatedAt": net.created_at,
        }
        for net in nets
    ]
    fmt = args.format
    if not fmt or fmt == "table":
        fmt = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
    sys.stdout.write(
        format_rows(rows, fmt, type_name="network.networkContext", headers=NETWORK_HEADERS)
    )
    return 0


NETWORK_HEADERS = {
    "ID": "NETWORK ID",
    "Name": "NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "IPv6": "IPV6",
    "Internal": "INTERNAL",
    "Labels": "LABELS",
    "CreatedAt": "CREATED",
}


def network_doc(client: Client, name: str) -> dict[str, Any]:
    """What `docker network inspect` prints for one network (RpcError as the daemon says)."""
    return inspect_doc(client.engine.InspectNetwork(pb.NetworkRef(name=name)))


def cmd_inspect(client: Client, args: argparse.Namespace) -> int:
    template = inspect_template(args.format)
    docs, failed = [], False
    for name in args.names:
        try:
            docs.append(network_doc(client, name))
        except RpcError as exc:
            print(daemon_error(client, exc), file=sys.stderr)
            failed = True
    return 0 if print_docs(docs, template) and not failed else 1


def cmd_rm(client: Client, args: argparse.Namespace) -> int:
    failed = False
    for name in args.names:
        try:
            client.engine.RemoveNetwork(pb.NetworkRef(name=name))
            print(name)
        except RpcError as exc:
            print(daemon_error(client, exc), file=sys.stderr)
            failed = True
    return 1 if failed else 0


def cmd_prune(client: Client, args: argparse.Namespace) -> int:
    if not args.force:
        answer = input(
            "WARNING! This will remove all custom networks not used by at least one "
            "container.\nAre you sure you want to continue? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    req = pb.PruneNetworksRequest(filters=_filters(args.filter))
    deleted = _call(client, lambda: client.engine.PruneNetworks(req)).deleted
    if deleted:
        print("Deleted Networks:")
        for name in deleted:
            print(name)
    return 0


def cmd_connect(client: Client, args: argparse.Namespace) -> int:
    req = pb.ConnectNetworkRequest(
        network=args.network, container=args.container, aliases=args.alias or [], ip=args.ip or ""
    )
    _call(client, lambda: client.engine.ConnectNetwork(req))
    return 0


def cmd_disconnect(client: Client, args: argparse.Namespace) -> int:
    req = pb.DisconnectNetworkRequest(
        network=args.network, container=args.container, force=args.force
    )
    _call(client, lambda: client.engine.DisconnectNetwork(req))
    return 0


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def cmd_port(client: Client, args: argparse.Namespace) -> int:
    try:
        ports = client.engine.ContainerPorts(pb.ContainerRef(id=args.container)).ports
    except RpcError as exc:
        raise CliError(daemon_error(client, exc)) from None
    if args.spec:
        port, _, proto = args.spec.partition("/")
        proto = proto or "tcp"
        try:
            wanted = int(port)
        except ValueError:
            raise CliError(f"Error: invalid port {args.spec!r}") from None
        chosen = [p for p in ports if p.container_port == wanted and p.protocol == proto]
        if not chosen:
            raise CliError(
                f"Error: No public port '{wanted}/{proto}' published for {args.container}"
            )
        for p in chosen:
            print(f"{_host(p.host_ip)}:{p.host_port}")
        return 0
    for p in ports:
        print(f"{p.container_port}/{p.protocol} -> {_host(p.host_ip)}:{p.host_port}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    net = sub.add_parser("network", help="manage networks")
    group = net.add_subparsers(dest="network_command", metavar="COMMAND", required=True)

    p = group.add_parser("create", help="create a network")
    p.add_argument("-d", "--driver", default="bridge", help="bridge (macvlan/ipvlan: not rootless)")
    p.add_argument("--subnet", help="CIDR, e.g. 10.90.0.0/24")
    p.add_argument("--ip-range", help="allocate container addresses from this CIDR")
    p.add_argument("--gateway", help="gateway address inside the subnet")
    p.add_argument("--internal", action="store_true", help="no access to the outside")
    p.add_argument("--label", action="append", help="KEY=VALUE")
    p.add_argument("-o", "--opt", action="append", help="driver option KEY=VALUE (mtu=...)")
    p.add_argument("--ipv6", action="store_true", help="(not supported yet)")
    p.add_argument("name")
    p.set_defaults(func=cmd_create)

    p = group.add_parser("ls", aliases=["list"], help="list networks")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-f", "--filter", action="append", help="driver=, label=, name=, id=, ...")
    p.add_argument("--format", help="table | json | Go template")
    p.set_defaults(func=cmd_ls)

    p = group.add_parser("inspect", help="show networks")
    p.add_argument("names", nargs="+")
    p.add_argument("-f", "--format", help="Go template")
    p.set_defaults(func=cmd_inspect)

    p = group.add_parser("rm", aliases=["remove"], help="remove networks")
    p.add_argument("names", nargs="+")
    p.set_defaults(func=cmd_rm)

    p = group.add_parser("prune", help="remove unused networks")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt")
    p.add_argument("--filter", action="append", help="until=..., label=K[=V]")
    p.set_defaults(func=cmd_prune)

    p = group.add_parser("connect", help="connect a container to a network")
    p.add_argument("--alias", action="append", help="network-scoped alias")
    p.add_argument("--ip", help="IPv4 address")
    p.add_argument("network")
    p.add_argument("container")
    p.set_defaults(func=cmd_connect)

    p = group.add_parser("disconnect", help="disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("network")
    p.add_argument("container")
    p.set_defaults(func=cmd_disconnect)

    p = sub.add_parser("port", help="list a container's published ports")
    p.add_argument("container")
    p.add_argument("spec", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    p.set_defaults(func=cmd_port)

"""`runtimectl volume create|ls|inspect|rm|prune` and `runtimectl plugin ls`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runtimed.cli.client import Client, CliError, confirmed, daemon_error
from runtimed.cli.format import format_rows, human_size, inspect_template, print_docs
from runtimed.cli.rpc import RpcError
from runtimed.gen.runtimed.v1 import engine_pb2 as pb


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not key:
            raise CliError(f"invalid {what} '{item}': expected KEY=VALUE", 125)
        out[key] = value if sep else ""
    return out


def _filters(values: list[str] | None) -> list[pb.Filter]:
    out = []
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"bad format of filter (expected name=value): {item}", 125)
        if key.endswith("!"):  # label!=K: the '=' split leaves the '!' on the key
            out.append(pb.Filter(key=key, value=value))
        else:
            out.append(pb.Filter(key=key.strip().lower(), value=value))
    return out


def volume_doc(volume: pb.Volume) -> dict[str, Any]:
    """What `docker volume inspect` prints for one volume."""
    doc: dict[str, Any] = {
        "CreatedAt": volume.created_at,
        "Driver": volume.driver,
        "Labels": dict(volume.labels) or None,
        "Mountpoint": volume.mountpoint,
        "Name": volume.name,
        "Options": dict(volume.options) or None,
        "Scope": volume.scope or "local",
    }
    if volume.status:
        doc["Status"] = dict(volume.status)
    return doc


# --- volume ---------------------------------------------------------------------------


def cmd_create(client: Client, args: argparse.Namespace) -> int:
    if args.name and args.name_flag and args.name != args.name_flag:
        raise CliError(
            "conflicting options: either specify --name or provide positional arg, not both",
            125,
        )
    volume = client.engine.CreateVolume(
        pb.CreateVolumeRequest(
            name=args.name or args.name_flag or "",
            driver=args.driver or "",
            driver_opts=_pairs(args.opt, "option"),
            labels=_pairs(args.label, "label"),
        )
    )
    print(volume.name)
    return 0


def cmd_ls(client: Client, args: argparse.Namespace) -> int:
    reply = client.engine.ListVolumes(pb.ListVolumesRequest(filters=_filters(args.filter)))
    for warning in reply.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    volumes = sorted(reply.volumes, key=lambda v: v.name)
    if args.quiet:
        for volume in volumes:
            print(volume.name)
        return 0
    fmt = args.format
    if not fmt or fmt == "table":
        fmt = "table {{.Driver}}\t{{.Name}}"
    rows = [_row(volume) for volume in volumes]
    sys.stdout.write(
        format_rows(rows, fmt, type_name="*formatter.volumeContext", headers=VOLUME_HEADERS)
    )
    return 0


VOLUME_HEADERS = {
    "Name": "VOLUME NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "Mountpoint": "MOUNTPOINT",
    "Labels": "LABELS",
    "Links": "LINKS",
    "CreatedAt": "CREATED AT",
}


def _row(volume: pb.Volume) -> dict[str, Any]:
    return {
        "Name": volume.name,
        "Driver": volume.driver,
        "Mountpoint": volume.mountpoint,
        "Scope": volume.scope or "local",
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(volume.labels.items())),
        "CreatedAt": volume.created_at,
        "Links": str(len(volume.used_by)),
    }


def inspect_volume(client: Client, name: str) -> dict[str, Any]:
    """What `docker volume inspect` prints for one volume (RpcError as the daemon says)."""
    return volume_doc(client.engine.InspectVolume(pb.VolumeRef(name=name)))


def cmd_inspect(client: Client, args: argparse.Namespace) -> int:
    template = inspect_template(args.format)
    docs, failed = [], False
    for name in args.names:
        try:
            docs.append(inspect_volume(client, name))
        except RpcError as exc:
            print(daemon_error(client, exc), file=sys.stderr)
            failed = True
    return 0 if print_docs(docs, template) and not failed else 1


def cmd_rm(client: Client, args: argparse.Namespace) -> int:
    failed = False
    for name in args.names:
        try:
            client.engine.RemoveVolume(pb.RemoveVolumeRequest(name=name, force=args.force))
        except RpcError as exc:
            print(daemon_error(client, exc), file=sys.stderr)
            failed = True
            continue
        print(name)
    return 1 if failed else 0


def cmd_prune(client: Client, args: argparse.Namespace) -> int:
    what = "all local volumes" if args.all else "anonymous local volumes"
    if not args.force and not confirmed(
        f"WARNING! This will remove {what} not used by at least one container.\n"
        "Are you sure you want to continue? [y/N] "
    ):
        return 0
    reply = client.engine.PruneVolumes(
        pb.PruneVolumesRequest(filters=_filters(args.filter), all=args.all)
    )
    if reply.deleted:
        print("Deleted Volumes:")
        for name in reply.deleted:
            print(name)
        print()
    print(f"Total reclaimed space: {human_size(reply.space_reclaimed)}")
    return 0


# --- plugin ---------------------------------------------------------------------------


def cmd_plugin_ls(client: Client, args: argparse.Namespace) -> int:
    plugins = client.engine.ListPlugins(pb.ListPluginsRequest()).plugins
    if args.quiet:
        for plugin in plugins:
            print(plugin.name)
        return 0
    rows = [
        {
            "Name": p.name,
            "Type": p.kind,
            "State": p.state,
            "Address": p.address,
            "Enabled": "true" if p.enabled else "false",
            "Error": p.error,
        }
        for p in plugins
    ]
    fmt = args.format
    if not fmt or fmt == "table":
        fmt = "table {{.Name}}\t{{.Type}}\t{{.State}}\t{{.Address}}\t{{.Error}}"
    sys.stdout.write(format_rows(rows, fmt, type_name="*formatter.pluginContext"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    volume = sub.add_parser("volume", help="manage volumes")
    vsub = volume.add_subparsers(dest="volume_command", metavar="COMMAND", required=True)

    p = vsub.add_parser("create", help="create a volume")
    p.add_argument("name", nargs="?")
    p.add_argument("--name", dest="name_flag", help="volume name")
    p.add_argument("-d", "--driver", default="local", help="volume driver (default local)")
    p.add_argument("-o", "--opt", action="append", help="driver option KEY=VALUE")
    p.add_argument("--label", action="append", help="metadata KEY=VALUE")
    p.set_defaults(func=cmd_create)

    p = vsub.add_parser("ls", aliases=["list"], help="list volumes")
    p.add_argument("-q", "--quiet", action="store_true", help="only names")
    p.add_argument("-f", "--filter", action="append", help="dangling=, driver=, label=, name=")
    p.add_argument("--format", help="json or a Go template")
    p.set_defaults(func=cmd_ls)

    p = vsub.add_parser("inspect", help="show volumes")
    p.add_argument("names", nargs="+")
    p.add_argument("-f", "--format", help="Go template")
    p.set_defaults(func=cmd_inspect)

    p = vsub.add_parser("rm", aliases=["remove"], help="remove volumes")
    p.add_argument("names", nargs="+")
    p.add_argument("-f", "--force", action="store_true", help="no error for missing volumes")
    p.set_defaults(func=cmd_rm)

    p = vsub.add_parser("prune", help="remove unused volumes")
    p.add_argument("-a", "--all", action="store_true", help="named volumes too")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt")
    p.add_argument("--filter", action="append", help="label=K[=V], label!=K[=V]")
    p.set_defaults(func=cmd_prune)

    plugin = sub.add_parser("plugin", help="list plugins")
    psub = plugin.add_subparsers(dest="plugin_command", metavar="COMMAND", required=True)
    p = psub.add_parser("ls", aliases=["list"], help="discovered plugins and their state")
    p.add_argument("-q", "--quiet", action="store_true", help="only names")
    p.add_argument("--format", help="json or a Go template")
    p.set_defaults(func=cmd_plugin_ls)

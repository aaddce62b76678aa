"""`runtimectl system prune`: docker's one sweep over stopped containers, unused networks,
(with --volumes) unused anonymous volumes, dangling images (-a: unused ones) and the
build cache, through each kind's own prune call, with docker's prompt and total."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from runtimed.cli.client import Client, CliError, confirmed
from runtimed.cli.format import human_size
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

# What each kind's prune accepts (docker rejects `until` for volumes).
_KEYS = ("until", "label", "label!")


def parse_pairs(values: Sequence[str] | None) -> list[tuple[str, str]]:
    pairs = []
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"bad format of filter (expected name=value): {item}", 125)
        key = key.strip().lower()
        if key not in _KEYS:
            raise CliError(f"Error response from daemon: invalid filter '{key}'")
        pairs.append((key, value))
    return pairs


def confirmation(args: argparse.Namespace, pairs: list[tuple[str, str]]) -> str:
    warnings = ["all stopped containers", "all networks not used by at least one container"]
    if args.volumes:
        warnings.append("all anonymous volumes not used by at least one container")
    if args.all:
        warnings += ["all images without at least one container associated to them"]
        warnings += ["all build cache"]
    else:
        warnings += ["all dangling images", "unused build cache"]
    text = "WARNING! This will remove:\n" + "".join(f"  - {w}\n" for w in warnings)
    if pairs:
        text += "\n  Items to be pruned will be filtered with:\n"
        text += "".join(f"  - {k}={v}\n" for k, v in pairs)
    return text + "\nAre you sure you want to continue? [y/N] "


def _deleted(title: str, items: Sequence[str]) -> None:
    if items:
        print(title)
        for item in items:
            print(item)
        print()


def cmd_prune(client: Client, args: argparse.Namespace) -> int:
    pairs = parse_pairs(args.filter)
    if not args.force and not confirmed(confirmation(args, pairs)):
        return 0
    as_map = dict(pairs)
    as_list = [pb.Filter(key=k, value=v) for k, v in pairs]
    engine = client.engine
    total = 0
    containers = engine.PruneContainers(pb.PruneContainersRequest(filters=as_map))
    _deleted("Deleted Containers:", containers.deleted)
    total += containers.space_reclaimed
    networks = engine.PruneNetworks(pb.PruneNetworksRequest(filters=as_list))
    _deleted("Deleted Networks:", networks.deleted)
    if args.volumes:
        label_only = [f for f in as_list if f.key != "until"]
        volumes = engine.PruneVolumes(pb.PruneVolumesRequest(filters=label_only))
        _deleted("Deleted Volumes:", volumes.deleted)
        total += volumes.space_reclaimed
    images = engine.PruneImages(pb.PruneImagesRequest(all=args.all, filters=as_map))
    _deleted(
        "Deleted Images:",
        [f"untagged: {n}" for n in images.untagged] + [f"deleted: {d}" for d in images.deleted],
    )
    total += images.space_reclaimed
    if not pairs:  # the build cache knows no labels or ages of its own
        cache = engine.PruneBuildCache(pb.PruneBuildCacheRequest())
        _deleted(
            "Deleted build cache objects:",
            [d.removeprefix("sha256:")[:25] for d in cache.deleted],
        )
        total += cache.space_reclaimed
    print(f"Total reclaimed space: {human_size(total, 4)}")
    return 0


def register(system_sub: argparse._SubParsersAction) -> None:
    p = system_sub.add_parser("prune", help="remove unused data")
    p.add_argument("-a", "--all", action="store_true", help="all unused images, not only dangling")
    p.add_argument("--volumes", action="store_true", help="prune anonymous volumes too")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    p.add_argument("--filter", action="append", help="until=TIME, label=K[=V], label!=K[=V]")
    p.set_defaults(func=cmd_prune)

"""`update`, `pause` and `unpause`: a container's resources after create."""

from __future__ import annotations

import argparse
import sys

from runtimed.cli.client import Client, CliError
from runtimed.cli.containers import _each
from runtimed.cli.resourceflags import add_resource_flags, resources_from_args
from runtimed.gen.runtimed.v1 import engine_pb2 as pb


def cmd_update(client: Client, args: argparse.Namespace) -> int:
    res, pids_set = resources_from_args(args)
    if res == pb.Resources() and not pids_set:
        raise CliError("You must provide one or more flags when using this command.", 1)

    def update(ref: str) -> str:
        reply = client.engine.UpdateContainer(
            pb.UpdateContainerRequest(id=ref, resources=res, pids_limit_set=pids_set)
        )
        for warning in reply.warnings:
            print(f"WARNING: {warning}", file=sys.stderr)
        return ref

    return _each(client, args.containers, update)


def cmd_pause(client: Client, args: argparse.Namespace) -> int:
    def pause(ref: str) -> str:
        client.engine.PauseContainer(pb.ContainerRef(id=ref))
        return ref

    return _each(client, args.containers, pause)


def cmd_unpause(client: Client, args: argparse.Namespace) -> int:
    def unpause(ref: str) -> str:
        client.engine.UnpauseContainer(pb.ContainerRef(id=ref))
        return ref

    return _each(client, args.containers, unpause)


def register(sub: argparse._SubParsersAction, group: argparse._SubParsersAction) -> None:
    for parsers in (sub, group):
        update = parsers.add_parser("update", help="change containers' resource limits")
        add_resource_flags(update, update=True)
        update.add_argument("containers", nargs="+")
        update.set_defaults(func=cmd_update)
        for name, func, text in (
            ("pause", cmd_pause, "freeze every process of containers"),
            ("unpause", cmd_unpause, "thaw paused containers"),
        ):
            p = parsers.add_parser(name, help=text)
            p.add_argument("containers", nargs="+")
            p.set_defaults(func=func)

"""`runtimectl push`: docker push through the daemon, with docker's progress lines."""

from __future__ import annotations

import argparse
import sys

from runtimed.cli.client import Client, CliError
from runtimed.cli.progress import PullDisplay
from runtimed.cli.rpc import ConnectError, RpcError
from runtimed.gen.runtimed.v1 import engine_pb2 as pb


def _has_tag(name: str) -> bool:
    return ":" in name.partition("@")[0].rsplit("/", 1)[-1]


def cmd_push(client: Client, args: argparse.Namespace) -> int:
    reference = args.reference
    if args.all_tags and _has_tag(reference):
        raise CliError("tag can't be used with --all-tags/-a")
    if not args.all_tags and "@" not in reference and not _has_tag(reference):
        reference += ":latest"
        if not args.quiet:
            print("Using default tag: latest", flush=True)
    display = PullDisplay(sys.stdout, tty=sys.stdout.isatty())
    request = pb.PushImageRequest(reference=reference, all_tags=args.all_tags)
    try:
        for event in client.engine.PushImage(request):
            kind = event.WhichOneof("event")
            if kind == "result":
                if args.quiet:
                    # docker push -q prints the reference it pushed, fully qualified.
                    tag = "" if args.all_tags else f":{event.result.tags[0].tag}"
                    print(event.result.repository + tag)
            elif args.quiet:
                continue
            elif kind == "status":
                display.status(event.status)
            elif kind == "layer":
                layer = event.layer
                display.layer(layer.id, layer.status, layer.current, layer.total)
    except ConnectError:
        raise
    except RpcError as exc:
        # A failure inside the push ends its progress, as docker prints it: the message alone.
        raise CliError(exc.details()) from None
    return 0


def register(sub: argparse._SubParsersAction, image_group: argparse._SubParsersAction) -> None:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("reference", metavar="NAME[:TAG]")
        p.add_argument("-a", "--all-tags", action="store_true", help="push all tags of NAME")
        p.add_argument("-q", "--quiet", action="store_true", help="print only the reference")
        p.set_defaults(func=cmd_push)

    add(sub.add_parser("push", help="push an image to a registry"))
    add(image_group.add_parser("push", help="push an image to a registry"))

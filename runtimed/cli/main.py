"""`runtimectl`: the docker-style command line of runtimed."""

from __future__ import annotations

import argparse
import sys

from runtimed import __version__
from runtimed.cli import containers, images, networks, system, volumes
from runtimed.cli.client import Client, CliError, describe_rpc_error
from runtimed.cli.lazyparse import LazyArgumentParser
from runtimed.cli.rpc import RpcError


def build_parser() -> argparse.ArgumentParser:
    parser = LazyArgumentParser(prog="runtimectl", description="docker-style client for runtimed")
    parser.add_argument("-H", "--host", help="daemon socket (unix:///path), or $RUNTIMED_HOST")
    parser.add_argument("-v", "--version", action="version", version=f"runtimectl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    image = sub.add_parser("image", help="manage images")
    image_sub = image.add_subparsers(dest="image_command", metavar="COMMAND", required=True)
    images.register(sub, image_sub)
    container = sub.add_parser("container", help="manage containers")
    container_sub = container.add_subparsers(
        dest="container_command", metavar="COMMAND", required=True
    )
    containers.register(sub, container_sub)
    system.register(sub)
    volumes.register(sub)
    networks.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    client = None
    try:
        if not getattr(args, "offline", False):
            client = Client.connect(args.host)
        return args.func(client, args)
    except CliError as exc:
        print(exc.message, file=sys.stderr)
        return exc.exit_code
    except RpcError as exc:
        socket = client.socket if client else None
        print(describe_rpc_error(exc, socket).message, file=sys.stderr)  # type: ignore[arg-type]
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    finally:
        if client is not None:
            client.close()


if __name__ == "__main__":
    sys.exit(main())

"""`runtimectl`: the docker-style command line of runtimed."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from runtimed import __version__
from runtimed.cli import (
    build,
    containers,
    diskusage,
    events,
    images,
    imagework,
    networks,
    push,
    stats,
    sysprune,
    system,
    tlscmd,
    unshare,
    update,
    volumes,
)
from runtimed.cli.client import Client, CliError, TlsFlags, describe_rpc_error, os_error_line
from runtimed.cli.lazyparse import LazyArgumentParser
from runtimed.cli.rpc import RpcError

# docker's status for its own failures (bad flags, a daemon that is not there), kept
# apart from the exit codes of containers so scripts around `run` can tell them apart.
USAGE_ERROR = 125


class CliParser(LazyArgumentParser):
    """Sub-commands' parsers are of this class too (argparse passes its own type down)."""

    def error(self, message: str) -> NoReturn:
        # The error and where help is, as docker and podman put it; not run's 18-line usage.
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\nSee '{self.prog} --help'.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="runtimectl", description="docker-style client for runtimed")
    parser.add_argument(
        "-H",
        "--host",
        help="daemon: unix:///PATH or tcp://HOST:PORT (with --tlsverify), or $RUNTIMED_HOST",
    )
    parser.add_argument(
        "--tlsverify",
        action="store_true",
        help="mutual TLS to a tcp:// daemon (or $RUNTIMED_TLS_VERIFY); files from "
        "$RUNTIMED_CERT_PATH (ca.pem, cert.pem, key.pem)",
    )
    parser.add_argument("--tlscacert", help="CA that signed the daemon's certificate")
    parser.add_argument("--tlscert", help="our client certificate")
    parser.add_argument("--tlskey", help="our client key")
    parser.add_argument("-v", "--version", action="version", version=f"runtimectl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    image = sub.add_parser("image", help="manage images")
    image_sub = image.add_subparsers(dest="image_command", metavar="COMMAND", required=True)
    images.register(sub, image_sub)
    push.register(sub, image_sub)
    build.register(sub, image_sub)
    container = sub.add_parser("container", help="manage containers")
    container_sub = container.add_subparsers(
        dest="container_command", metavar="COMMAND", required=True
    )
    containers.register(sub, container_sub)
    imagework.register(sub, image_sub, container_sub)
    update.register(sub, container_sub)
    stats.register(sub, container_sub)
    system.register(sub)
    system_group = sub.add_parser("system", help="manage runtimed")
    system_sub = system_group.add_subparsers(
        dest="system_command", metavar="COMMAND", required=True
    )
    diskusage.register(system_sub)
    sysprune.register(system_sub)
    events.register(sub)
    volumes.register(sub)
    networks.register(sub)
    unshare.register(sub)
    tlscmd.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    client = None
    # run and create answer a failure of the daemon itself with 125, as docker's do.
    daemon_error = getattr(args, "daemon_error_code", 1)
    try:
        if not getattr(args, "offline", False):
            try:
                tls = TlsFlags(args.tlsverify, args.tlscacert, args.tlscert, args.tlskey)
                client = Client.connect(args.host, tls)
            except CliError as exc:
                raise CliError(exc.message, daemon_error) from None
        return args.func(client, args)
    except CliError as exc:
        print(exc.message, file=sys.stderr)
        return exc.exit_code
    except RpcError as exc:
        socket = client.socket if client else None
        print(describe_rpc_error(exc, socket).message, file=sys.stderr)
        return daemon_error
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a local file the command reads or writes: one line, no traceback
        print(f"runtimectl: {os_error_line(exc)}", file=sys.stderr)
        return daemon_error
    finally:
        if client is not None:
            client.close()


if __name__ == "__main__":
    sys.exit(main())

"""`runtimectl tls generate`: certificates for remote access with mutual TLS."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from runtimed.cli.client import CliError


def cmd_generate(client: Any, args: argparse.Namespace) -> int:
    from runtimed import tlscerts  # cryptography: only this command pays for it
    from runtimed.errors import RuntimedError
    from runtimed.hosts import default_cert_dir

    directory = Path(args.dir) if args.dir else default_cert_dir()
    try:
        paths = tlscerts.generate(directory, args.host or [], days=args.days, force=args.force)
    except RuntimedError as exc:
        raise CliError(f"runtimectl: {exc.message}") from None
    for path in paths:
        print(path)
    print(
        f"\nOn the daemon's host:  runtimed -H tcp://0.0.0.0:2376 --tlsverify "
        f"--tlscacert {paths[0]} --tlscert {paths[2]} --tlskey {paths[3]}\n"
        f"On a client, with ca.pem, cert.pem and key.pem of {directory} in CERTDIR:\n"
        "  RUNTIMED_HOST=tcp://HOST:2376 RUNTIMED_TLS_VERIFY=1 RUNTIMED_CERT_PATH=CERTDIR "
        "runtimectl ps"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    tls = sub.add_parser("tls", help="certificates for remote access (mutual TLS)")
    tls_sub = tls.add_subparsers(dest="tls_command", metavar="COMMAND", required=True)
    p = tls_sub.add_parser(
        "generate",
        help="make a CA, a daemon certificate and a client certificate",
        description="Write ca.pem, ca-key.pem, server-cert.pem, server-key.pem (the daemon's), "
        "cert.pem and key.pem (a client's) into DIR (default $XDG_CONFIG_HOME/runtimed/tls, "
        "where runtimed and runtimectl look by default). Keys are 0600.",
    )
    p.add_argument("--dir", help="where to write (made 0700 if missing)")
    p.add_argument(
        "--host",
        action="append",
        metavar="NAME|IP",
        help="a name or address clients use for the daemon (repeatable; this host's name, "
        "localhost, 127.0.0.1 and ::1 are always in)",
    )
    p.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(func=cmd_generate, offline=True)

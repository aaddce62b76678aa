"""`runtimectl unshare [--rootless-netns] [COMMAND...]`: a command inside runtimed's namespaces.

As `podman unshare`: COMMAND (default $SHELL, else /bin/sh) runs as root of the
daemon's user namespace (ids 1.. are the user's subordinate range), in its mount
namespace (where the containers' overlay mounts are), and with --rootless-netns
also in the network namespace that holds the container and pod networks: their
addresses answer there, host-network pods live there, and so does a kubelet
started by deploy/kubelet.sh. runtimectl becomes COMMAND (exec): the exit code,
signals and terminal are COMMAND's own. Environment and working directory are kept.
"""

from __future__ import annotations

import argparse
import os

from runtimed.cli.client import Client, CliError
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

# docker's codes for a command that cannot be run, and one that is not there.
CANNOT_EXECUTE, NOT_FOUND = 126, 127


def cmd_unshare(client: Client, args: argparse.Namespace) -> int:
    import shutil  # here, not at the top: every runtimectl command loads this module

    from runtimed.errors import RuntimedError
    from runtimed.rootless import nsenter

    where = client.engine.Namespaces(pb.NamespacesRequest(network=args.rootless_netns))
    # Its reader thread ends with the connection: setns(2) into a user namespace needs one thread.
    client.close()
    argv = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    argv = argv or [os.environ.get("SHELL") or "/bin/sh"]
    try:
        cwd = os.getcwd()
    except OSError:  # removed meanwhile
        cwd = os.environ.get("HOME", "/")
    try:
        joined_user = nsenter.enter_daemon(
            where.pid, where.user_ns, where.mount_ns, where.network_ns_path
        )
    except RuntimedError as exc:
        raise CliError(f"Error: {exc.message}", 125) from None
    if joined_user:
        # Our ids map to 0 there already; this also clears saved ids of other values.
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    # Entering a mount namespace moves us to its root; the same path is (nearly always) there.
    for directory in (cwd, os.environ.get("HOME", "/"), "/"):
        try:
            os.chdir(directory)
            break
        except OSError:
            continue
    env = dict(os.environ, RUNTIMED_HOST=f"unix://{where.socket}")
    # Looked up here, as a shell does: a PATH entry we may not search is no reason for 126.
    program = argv[0] if "/" in argv[0] else shutil.which(argv[0])
    if program is None or not os.path.exists(program):
        raise CliError(f"runtimectl unshare: {argv[0]}: command not found", NOT_FOUND)
    try:
        os.execve(program, argv, env)
    except OSError as exc:
        raise CliError(
            f"runtimectl unshare: {argv[0]}: {exc.strerror or exc}", CANNOT_EXECUTE
        ) from None
    return CANNOT_EXECUTE  # not reached: exec replaced us


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "unshare",
        help="run a command in runtimed's user and mount (and network) namespaces",
        description="Run COMMAND (default: $SHELL) as root of runtimed's user namespace, in "
        "its mount namespace, and with --rootless-netns in the network namespace of the "
        "container and pod networks.",
    )
    p.add_argument(
        "--rootless-netns",
        action="store_true",
        help="also join the network namespace holding the container and pod networks",
    )
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")
    p.set_defaults(func=cmd_unshare, daemon_error_code=125)

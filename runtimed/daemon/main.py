"""`runtimed`: parse flags, take the state lock, enter the user namespace, serve.

Heavy imports (grpc, the servicers) happen only after the child has entered
its namespaces: unshare(CLONE_NEWUSER) requires a single-threaded process.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import stat
import sys
import traceback
from pathlib import Path

from runtimed import __version__
from runtimed.config import Config
from runtimed.daemon.remote import RemoteAccess, resolved_tls_args
from runtimed.errors import InvalidArgument, RuntimedError
from runtimed.hosts import parse_host as parse_any_host
from runtimed.paths import default_socket, parse_host
from runtimed.rootless import userns

LOCK_FD_ENV = "_RUNTIMED_LOCK_FD"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="runtimed", description="rootless container runtime daemon")
    p.add_argument("--config", type=Path, help="runtimed.toml to read")
    p.add_argument("--socket", metavar="unix://PATH", help="unix socket to listen on")
    p.add_argument(
        "-H",
        "--host",
        dest="hosts",
        action="append",
        default=[],
        metavar="unix://PATH|tcp://ADDR:PORT",
        help="where to serve the gRPC API (repeatable): the unix socket, and tcp:// addresses "
        "(with --tlsverify only)",
    )
    p.add_argument(
        "--docker-host",
        dest="docker_hosts",
        action="append",
        default=[],
        metavar="unix://PATH|tcp://ADDR:PORT",
        help="where to serve the Docker Engine API: its unix socket (default: docker.sock "
        "beside the socket; '' for none), and tcp:// addresses (repeatable; --tlsverify only)",
    )
    p.add_argument(
        "--tlsverify", action="store_true", help="mutual TLS on tcp:// (required for them)"
    )
    p.add_argument("--tlscacert", type=Path, help="CA that signs client certificates")
    p.add_argument("--tlscert", type=Path, help="the daemon's TLS certificate")
    p.add_argument("--tlskey", type=Path, help="the daemon's TLS key")
    p.add_argument("--data-dir", type=Path, help="where images and containers are stored")
    p.add_argument("--run-dir", type=Path, help="run state (default: next to the socket)")
    p.add_argument("--storage-driver", choices=("auto", "overlay", "fuse-overlayfs", "vfs"))
    p.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST[:PORT]|CIDR",
        help="a registry that may be used over plain HTTP or with unchecked TLS (repeatable; "
        "added to insecure_registries in runtimed.toml)",
    )
    p.add_argument("--debug", "-D", action="store_true", help="debug logging")
    # Set by the parent for its child: the socket is in the runtime's own directory.
    p.add_argument("--own-socket-dir", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--version", "-v", action="version", version=f"runtimed {__version__}")
    return p


def load_config(args: argparse.Namespace) -> Config:
    cfg = Config.load(args.config)
    socket_flag = _unix_host(args)
    # Only the runtime's own (default) directory is made private; one the user named is not.
    cfg.own_socket_dir = args.own_socket_dir or (not socket_flag and cfg.socket == default_socket())
    if socket_flag:
        cfg.socket = parse_host(socket_flag)
        if not args.run_dir:
            cfg.run_dir = cfg.socket.parent
    docker_unix = _docker_unix_host(args)
    if docker_unix is not None:
        cfg.docker_socket = str(parse_host(docker_unix)) if docker_unix else ""
    if args.data_dir:
        cfg.data_dir = args.data_dir
    if args.run_dir:
        cfg.run_dir = args.run_dir
    if args.storage_driver:
        cfg.storage_driver = args.storage_driver
    for registry in args.insecure_registry:  # merged with the file's, as dockerd's
        if registry not in cfg.insecure_registries:
            cfg.insecure_registries.append(registry)
    if args.debug:
        cfg.debug = True
    apply_remote_flags(cfg, args)
    cfg.data_dir = cfg.data_dir.absolute()
    cfg.run_dir = cfg.run_dir.absolute()
    cfg.socket = cfg.socket.absolute()
    if cfg.docker_socket:
        cfg.docker_socket = str(Path(cfg.docker_socket).absolute())
    return cfg


def _unix_host(args: argparse.Namespace) -> str | None:
    """The unix socket named by --socket or a unix -H (one socket: the gRPC API's own)."""
    unix = [h for h in args.hosts if not parse_any_host(h).is_tcp]
    if len({str(parse_any_host(h)) for h in unix}) > 1:
        raise InvalidArgument(f"one unix socket only, not {' and '.join(unix)}")
    return args.socket or (unix[0] if unix else None)


def _docker_unix_host(args: argparse.Namespace) -> str | None:
    """The Docker API's unix socket named by --docker-host ("" for none; None: not named)."""
    unix = [h for h in args.docker_hosts if not h or not parse_any_host(h).is_tcp]
    if len(set(unix)) > 1:
        raise InvalidArgument(f"one unix socket for the Docker API only, not {' and '.join(unix)}")
    return unix[0] if unix else None


def apply_remote_flags(cfg: Config, args: argparse.Namespace) -> None:
    """tcp:// -H and --docker-host values replace runtimed.toml's lists; TLS flags override."""
    tcp = [h for h in args.hosts if parse_any_host(h).is_tcp]
    if tcp:
        cfg.tcp_hosts = tcp
    docker_tcp = [h for h in args.docker_hosts if h and parse_any_host(h).is_tcp]
    if docker_tcp:
        cfg.docker_tcp_hosts = docker_tcp
    cfg.tlsverify = cfg.tlsverify or args.tlsverify
    cfg.tlscacert = args.tlscacert or cfg.tlscacert
    cfg.tlscert = args.tlscert or cfg.tlscert
    cfg.tlskey = args.tlskey or cfg.tlskey


def os_reason(exc: OSError) -> str:
    """`/root: permission denied`: the path and the reason, as one short line."""
    reason = (exc.strerror or str(exc)).lower()
    return f"{exc.filename}: {reason}" if exc.filename is not None else reason


def _refused(flag: str, path: Path, reason: str, at: object = None) -> RuntimedError:
    where = f" ({at})" if at is not None and str(at) != str(path) else ""
    return RuntimedError(f"cannot use {flag} {path}: {reason}{where}")


def check_dir_usable(flag: str, path: Path, directory: Path) -> None:
    """`directory` (where `path` goes) is one we may write in, or could create; changes nothing.

    Checked as the user, before the namespaces: there a denied path would only show up
    as a traceback from deep inside the daemon's start.
    """
    probe = directory
    while True:
        try:
            st = os.stat(probe)
            break
        except FileNotFoundError:
            probe = probe.parent
        except OSError as exc:
            raise _refused(flag, path, (exc.strerror or str(exc)).lower(), probe) from None
    if not stat.S_ISDIR(st.st_mode):
        raise _refused(flag, path, "not a directory", probe)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise _refused(flag, path, "permission denied", probe)


def check_not_foreign(flag: str, path: Path) -> None:
    """A file at `path` that another user owns is not ours to replace."""
    try:
        owner = os.lstat(path).st_uid
    except OSError:
        return  # absent (or unreadable: the bind will say why)
    if owner != os.geteuid() and os.geteuid() != 0:
        raise _refused(flag, path, f"it exists and belongs to another user (uid {owner})")


def take_lock(data_dir: Path) -> int:
    """Hold an exclusive lock on the data directory for the daemon's lifetime."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = data_dir / "runtimed.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise _refused("--data-dir", data_dir, reason, exc.filename) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RuntimedError(
            f"another runtimed (pid {holder}) is using {data_dir}: "
            "stop it first, or give this one its own --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        if userns.CHILD_ENV in os.environ:
            cfg = load_config(args)
            userns.become_child(cfg.run_dir)
            lock_fd = int(os.environ.pop(LOCK_FD_ENV))
            return _serve(cfg, lock_fd, rootless=True)
        cfg = load_config(args)
        # Plain TCP, a missing or broken certificate, a taken port: refused before anything.
        remote = RemoteAccess.plan(cfg)
        remote.check_bind()
        check_dir_usable("--socket", cfg.socket, cfg.socket.parent)
        check_not_foreign("--socket", cfg.socket)
        check_dir_usable("--run-dir", cfg.run_dir, cfg.run_dir)
        docker_socket = cfg.docker_socket_path()
        if docker_socket is not None:
            check_dir_usable("--docker-host", docker_socket, docker_socket.parent)
            check_not_foreign("--docker-host", docker_socket)
        lock_fd = take_lock(cfg.data_dir)
        if os.geteuid() == 0:
            return _serve(cfg, lock_fd, rootless=userns.is_rootless())
        mapping = userns.plan_mapping()
        os.set_inheritable(lock_fd, True)
        os.environ[LOCK_FD_ENV] = str(lock_fd)
        # Paths are resolved here, as the user: inside the namespace we are uid 0 and the
        # defaults would point at root's directories.
        resolved = [
            "--data-dir",
            str(cfg.data_dir),
            "--socket",
            str(cfg.socket),
            "--run-dir",
            str(cfg.run_dir),
        ]
        if cfg.own_socket_dir:
            resolved.append("--own-socket-dir")
        resolved += resolved_tls_args(cfg)
        # -I: the child imports the installed runtimed, never a same-named dir in the cwd.
        child_argv = ["-I", "-m", "runtimed.daemon.main", *argv, *resolved]
        return userns.run_parent(mapping, child_argv, (lock_fd,))
    except RuntimedError as exc:
        print(f"runtimed: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        # A path the host refuses us (a --data-dir or --socket we may not write, ...): one
        # line, as dockerd says it; the traceback only for --debug.
        if args.debug:
            traceback.print_exc()
        print(f"runtimed: {os_reason(exc)}", file=sys.stderr)
        return 1


def _serve(cfg: Config, lock_fd: int, *, rootless: bool) -> int:
    from runtimed.daemon.server import run

    return run(cfg, lock_fd=lock_fd, rootless=rootless)


if __name__ == "__main__":
    sys.exit(main())

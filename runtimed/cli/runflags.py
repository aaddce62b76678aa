"""docker run/create flags turned into a CreateContainerRequest."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from runtimed.cli.client import CliError
from runtimed.cli.healthflags import apply_health_flags
from runtimed.cli.mountflags import check_duplicates, parse_mount, parse_tmpfs
from runtimed.cli.netflags import apply_network_flags
from runtimed.cli.resourceflags import resources_from_args
from runtimed.detachkeys import DEFAULT_DETACH_KEYS, parse_detach_keys
from runtimed.errors import InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
PULL_POLICIES = ("always", "missing", "never")
_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_WHITESPACE = " \t\n\v\f\r"
RM_WAIT = 30.0  # seconds `run --rm` waits for the daemon to remove the container

# --- parsing flags into a CreateContainerRequest -------------------------------------------


def _usage(message: str) -> CliError:
    return CliError(message, 125)


def _env_value(key: str, environ: Mapping[str, str]) -> list[str]:
    """A bare KEY takes the client's value, and is left out when the client has none."""
    return [f"{key}={environ[key]}"] if key in environ else []


def parse_env_file(path: str, environ: Mapping[str, str]) -> list[str]:
    """docker's --env-file: `#` comments, blank lines, KEY=VALUE (value verbatim), bare KEY."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise _usage(f"open {path}: {exc.strerror.lower() if exc.strerror else exc}") from exc
    result: list[str] = []
    for number, line_bytes in enumerate(raw.split(b"\n"), start=1):
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise _usage(f"env file {path} contains invalid utf8 bytes at line {number}") from None
        if number == 1:
            line = line.removeprefix("\ufeff")
        line = line.removesuffix("\r").lstrip(_WHITESPACE)
        if not line or line.startswith("#"):
            continue
        key, has_value, value = line.partition("=")
        if not key:
            raise _usage(f"poorly formatted environment: no variable name on line '{line}'")
        if any(ch in _WHITESPACE for ch in key):
            raise _usage(f"poorly formatted environment: variable '{key}' contains whitespaces")
        result += [f"{key}={value}"] if has_value else _env_value(key, environ)
    return result


def parse_env(
    files: Sequence[str] | None, values: Sequence[str] | None, environ: Mapping[str, str]
) -> list[str]:
    """Env files first, then -e, so -e wins when the daemon merges (docker's order)."""
    result: list[str] = []
    for path in files or []:
        result += parse_env_file(path, environ)
    for item in values or []:
        key, has_value, _ = item.partition("=")
        if not key:
            raise _usage(f"invalid environment variable: {item}")
        result += [item] if has_value else _env_value(key, environ)
    return result


def parse_labels(values: Sequence[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values or []:
        key, _, value = item.partition("=")
        if not key:
            raise _usage(f"invalid label '{item}': empty name")
        labels[key] = value
    return labels


def parse_key_values(values: Sequence[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _usage(f"invalid {what} '{item}': expected KEY=VALUE")
        result[key] = value
    return result


def parse_restart_policy(text: str | None) -> pb.RestartPolicy:
    """no | always | unless-stopped | on-failure[:max-retries]."""
    if not text:
        return pb.RestartPolicy(name="no")
    name, sep, count = text.partition(":")
    if name not in RESTART_POLICIES:
        raise _usage(
            f"invalid restart policy '{text}': use no, always, unless-stopped "
            "or on-failure[:max-retries]"
        )
    retries = 0
    if sep:
        if name != "on-failure":
            raise _usage(
                f"invalid restart policy '{text}': a maximum retry count can only be used "
                "with on-failure"
            )
        try:
            retries = int(count)
        except ValueError:
            raise _usage(f"invalid restart policy '{text}': '{count}' is not a number") from None
        if retries < 0:
            raise _usage(f"invalid restart policy '{text}': maximum retry count cannot be negative")
    return pb.RestartPolicy(name=name, max_retries=retries)


def _volume_modes(spec: str, modes: list[str], *, bind: bool) -> tuple[bool, str, bool]:
    """(readonly, propagation, nocopy) from -v's third field."""
    readonly, propagation, nocopy, seen_rw = False, "rprivate", False, False
    for mode in modes:
        if mode in ("ro", "rw"):
            if seen_rw:
                raise _usage(f"invalid volume specification: '{spec}': conflicting modes")
            seen_rw = True
            readonly = mode == "ro"
        elif mode in PROPAGATIONS and bind:
            propagation = mode
        elif mode == "nocopy" and not bind:
            nocopy = True
        elif mode in ("z", "Z", "consistent", "cached", "delegated"):
            continue  # SELinux relabel and macOS hints have no meaning here
        else:
            raise _usage(f"invalid volume specification: '{spec}': invalid mode: {mode}")
    return readonly, propagation, nocopy


def parse_volume(spec: str) -> pb.Bind | pb.MountSpec:
    """-v HOST:CTR[:OPTS] (a bind), -v NAME:CTR[:OPTS] (a named volume), -v CTR (anonymous).

    OPTS: ro|rw, a propagation mode (binds), nocopy (volumes), comma-separated.
    """
    parts = spec.split(":")
    if len(parts) == 1:
        target = parts[0]
        if not target.startswith("/"):
            raise _usage(f"invalid volume specification: '{spec}': mount path must be absolute")
        target = os.path.normpath(target)
        if target == "/":
            raise _usage(f"invalid volume specification: '{spec}': destination can't be '/'")
        return pb.MountSpec(type="volume", target=target)
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise _usage(f"invalid volume specification: '{spec}'")
    source, target = parts[0], parts[1]
    is_bind = source.startswith("/")
    if not is_bind and not _VOLUME_NAME.fullmatch(source):
        raise _usage(
            f"invalid volume specification: '{spec}': bind source path must be absolute, "
            "or name a volume ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"
        )
    if not target.startswith("/"):
        raise _usage(f"invalid volume specification: '{spec}': mount path must be absolute")
    target = os.path.normpath(target)
    if target == "/":
        raise _usage(f"invalid volume specification: '{spec}': destination can't be '/'")
    modes = [m for m in parts[2].split(",") if m] if len(parts) == 3 else []
    readonly, propagation, nocopy = _volume_modes(spec, modes, bind=is_bind)
    if is_bind:
        return pb.Bind(
            source=os.path.normpath(source),
            target=target,
            readonly=readonly,
            propagation=propagation,
        )
    return pb.MountSpec(
        type="volume", source=source, target=target, readonly=readonly, no_copy=nocopy
    )


def parse_volumes(specs: Sequence[str] | None) -> list[pb.Bind | pb.MountSpec]:
    found: list[pb.Bind | pb.MountSpec] = []
    for spec in specs or []:
        item = parse_volume(spec)
        if any(b.target == item.target for b in found):
            raise _usage(f"Duplicate mount point: {item.target}")
        found.append(item)
    return found


def volume_flags(
    args: argparse.Namespace,
) -> tuple[list[pb.Bind], list[pb.MountSpec], list[str]]:
    """-v, --mount, --tmpfs, --volume-driver and --volumes-from, as the request carries them."""
    binds: list[pb.Bind] = []
    mounts: list[pb.MountSpec] = []
    driver = getattr(args, "volume_driver", None) or ""
    for item in parse_volumes(args.volume):
        if isinstance(item, pb.Bind):
            binds.append(item)
        else:
            item.volume_driver = driver
            mounts.append(item)
    mounts += [parse_mount(m) for m in getattr(args, "mount", None) or []]
    mounts += [parse_tmpfs(t) for t in getattr(args, "tmpfs", None) or []]
    check_duplicates(binds, mounts)
    return binds, mounts, list(getattr(args, "volumes_from", None) or [])


def build_create_request(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> pb.CreateContainerRequest:
    """Flags of `run`/`create` as the daemon wants them; raises CliError (125) on bad input."""
    if args.pull not in PULL_POLICIES:
        raise _usage(
            f'invalid pull option: \'{args.pull}\': must be one of "always", "missing" or "never"'
        )
    restart = parse_restart_policy(args.restart)
    if args.rm and restart.name != "no":
        raise _usage("Conflicting options: cannot specify both --restart and --rm")
    log_opts = parse_key_values(args.log_opt, "log-opt")
    if args.log_driver == "none" and log_opts:
        raise _usage("invalid logging opts for driver none")
    detach = bool(getattr(args, "detach", False))
    binds, mounts, volumes_from = volume_flags(args)
    req = pb.CreateContainerRequest(
        image=args.image,
        name=args.name or "",
        env=parse_env(args.env_file, args.env, environ),
        working_dir=args.workdir or "",
        user=args.user or "",
        hostname=args.hostname or "",
        labels=parse_labels(args.label),
        tty=args.tty,
        stdin_open=args.interactive,
        # docker closes stdin after the first attached client leaves when it attaches one.
        stdin_once=args.interactive and not detach,
        read_only=args.read_only,
        restart_policy=restart,
        stop_signal=args.stop_signal or "",
        stop_timeout=-1 if args.stop_timeout is None else args.stop_timeout,
        binds=binds,
        mounts=mounts,
        volumes_from=volumes_from,
        auto_remove=args.rm,
        # The CLI pulls itself, with docker's progress display, when the daemon says the
        # image is missing; the daemon's silent pull is for other API clients.
        pull_if_missing=False,
        platform=args.platform or "",
        log_driver=args.log_driver or "",
        log_opts=log_opts,
        pid_mode=args.pid or "",
    )
    if args.entrypoint is not None:
        req.has_entrypoint = True
        req.entrypoint.extend([args.entrypoint] if args.entrypoint else [])
    if args.cmd:
        req.has_cmd = True
        req.cmd.extend(args.cmd)
    apply_network_flags(args, req)
    apply_health_flags(args, req)
    req.resources.CopyFrom(resources_from_args(args)[0])
    return req


def detach_keys_or_fail(spec: str | None, exit_code: int) -> bytes:
    try:
        return parse_detach_keys(spec or DEFAULT_DETACH_KEYS)
    except InvalidArgument as exc:
        raise CliError(exc.message, exit_code) from None

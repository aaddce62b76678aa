"""docker's --mount and --tmpfs flags, turned into MountSpecs for CreateContainer."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence

from runtimed.cli.client import CliError
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?", re.IGNORECASE | re.ASCII)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def _usage(message: str) -> CliError:
    return CliError(message, 125)


def parse_ram_size(text: str) -> int:
    """docker's RAMInBytes: 64m = 64 MiB; a bare number is bytes."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise _usage(f"invalid size: '{text}'")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _bool(key: str, value: str | None) -> bool:
    if value is None:
        return True
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise _usage(f"invalid value for {key}: {value}")


def _key_value(key: str, value: str | None) -> tuple[str, str]:
    if not value:
        raise _usage(f"invalid field '{key}' must be a key=value pair")
    k, sep, v = value.partition("=")
    if not sep or not k:
        raise _usage(f"invalid field '{key}={value}' must be a key=value pair")
    return k, v


def parse_mount(text: str) -> pb.MountSpec:
    """--mount type=bind|volume|tmpfs,source=,target=,readonly,volume-driver=,volume-opt=K=V,
    volume-label=K=V,volume-nocopy,bind-propagation=,tmpfs-size=,tmpfs-mode=."""
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        raise _usage(f'invalid argument "{text}" for "--mount" flag') from None
    spec = pb.MountSpec(type="volume")  # docker's default type
    for item in fields:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        val: str | None = value if sep else None
        if key == "type":
            if val not in ("bind", "volume", "tmpfs"):
                raise _usage(f"invalid mount type {val!r}: use bind, volume or tmpfs")
            spec.type = val
        elif key in ("source", "src"):
            spec.source = val or ""
        elif key in ("target", "destination", "dst"):
            spec.target = val or ""
        elif key in ("readonly", "ro"):
            spec.readonly = _bool(key, val)
        elif key == "consistency":
            continue  # a macOS hint
        elif key == "bind-propagation":
            if val not in PROPAGATIONS:
                raise _usage(f"invalid bind-propagation {val!r}: use {', '.join(PROPAGATIONS)}")
            spec.bind_propagation = val
        elif key == "volume-driver":
            spec.volume_driver = val or ""
        elif key == "volume-opt":
            k, v = _key_value(key, val)
            spec.volume_opts[k] = v
        elif key == "volume-label":
            k, v = _key_value(key, val)
            spec.volume_labels[k] = v
        elif key == "volume-nocopy":
            spec.no_copy = _bool(key, val)
        elif key == "tmpfs-size":
            try:
                spec.tmpfs_size = parse_ram_size(val or "")
            except CliError:
                raise _usage(f"invalid value for {key}: {val}") from None
        elif key == "tmpfs-mode":
            try:
                spec.tmpfs_mode = int(val or "", 8)
            except ValueError:
                raise _usage(
                    f"invalid tmpfs-mode {val!r}: use an octal mode such as 1770"
                ) from None
        else:
            raise _usage(f"unexpected key '{key}' in '{item}'")
    if not spec.target:
        raise _usage("invalid argument for --mount: target is required")
    if spec.type == "bind" and not spec.source:
        raise _usage("invalid argument for --mount: source is required when type is bind")
    if spec.type == "tmpfs" and spec.source:
        raise _usage("invalid argument for --mount: source is not allowed when type is tmpfs")
    _check_mix(spec)
    if spec.type == "bind":
        if not spec.source.startswith("/"):
            raise _usage(
                f'invalid mount config for type "bind": invalid mount path: '
                f"'{spec.source}' mount path must be absolute"
            )
        spec.source = os.path.normpath(spec.source)
    return spec


def _check_mix(spec: pb.MountSpec) -> None:
    volume_only = spec.volume_driver or spec.volume_opts or spec.volume_labels or spec.no_copy
    if volume_only and spec.type != "volume":
        raise _usage(f"cannot mix 'volume-*' options with mount type '{spec.type}'")
    if spec.bind_propagation and spec.type != "bind":
        raise _usage(f"cannot mix 'bind-*' options with mount type '{spec.type}'")
    if (spec.tmpfs_size or spec.tmpfs_mode) and spec.type != "tmpfs":
        raise _usage(f"cannot mix 'tmpfs-*' options with mount type '{spec.type}'")


def parse_tmpfs(text: str) -> pb.MountSpec:
    """--tmpfs /path[:opts]: opts are tmpfs mount options (size=64m,mode=1777,exec,...)."""
    target, _, opts = text.partition(":")
    if not target.startswith("/"):
        raise _usage(f"invalid tmpfs specification '{text}': mount path must be absolute")
    return pb.MountSpec(
        type="tmpfs",
        target=target,
        tmpfs_options=[o for o in opts.split(",") if o],
    )


def check_duplicates(binds: Sequence[pb.Bind], mounts: Sequence[pb.MountSpec]) -> None:
    seen: set[str] = set()
    for target in [b.target for b in binds] + [m.target for m in mounts]:
        clean = os.path.normpath(target)
        if clean in seen:
            raise _usage(f"Duplicate mount point: {clean}")
        seen.add(clean)

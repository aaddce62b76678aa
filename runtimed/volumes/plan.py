"""A container's mounts as the volume part keeps them: one MountEntry per target.

The Engine and CRI translators produce entries; the container hook resolves
them at create (anonymous names, image VOLUMEs, --volumes-from, drivers) and
stores the result in `container.config.extras["volumes"]`, from which every
start builds the OCI mounts.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from runtimed.errors import InvalidArgument
from runtimed.oci.spec import PROPAGATIONS, BindMount

EXTRAS_KEY = "volumes"
TYPES = ("volume", "bind", "tmpfs", "image")

# docker's defaults for a tmpfs; a user's own word for the same flag wins.
TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev")
_TMPFS_FLAG_PAIRS = {
    "exec": "noexec",
    "suid": "nosuid",
    "dev": "nodev",
    "rw": "ro",
    "atime": "noatime",
    "diratime": "nodiratime",
    "relatime": "norelatime",
    "sync": "async",
}
_TMPFS_WORDS = (
    set(_TMPFS_FLAG_PAIRS)
    | set(_TMPFS_FLAG_PAIRS.values())
    | {
        "strictatime",
        "dirsync",
        "mand",
        "nomand",
    }
)
_COUNT = r"[0-9]+[kKmMgGtTpPeE]?"  # the kernel's memparse suffixes
# tmpfs(5)'s value syntax per key, and how to say it: a bad value is named before start.
_TMPFS_VALUES = {
    "size": (
        rf"{_COUNT}|[0-9]+%",
        "a number of bytes with an optional k, m or g suffix, or a percentage of memory",
    ),
    "nr_inodes": (_COUNT, "a number with an optional k, m or g suffix"),
    "nr_blocks": (_COUNT, "a number with an optional k, m or g suffix"),
    "mode": ("[0-7]{1,4}", "an octal mode such as 1777"),
    "uid": ("[0-9]+", "a numeric user id"),
    "gid": ("[0-9]+", "a numeric group id"),
    "huge": ("never|always|within_size|advise|deny|force", "never, always, within_size or advise"),
    "mpol": (
        "(default|prefer|bind|interleave|local)(:[0-9,-]+)?",
        "default, prefer:N, bind:NODES, interleave[:NODES] or local",
    ),
}
_TMPFS_KEYS = tuple(_TMPFS_VALUES)


@dataclass
class MountEntry:
    type: str  # volume | bind | tmpfs | image
    target: str
    source: str = ""  # volume name ("" = anonymous), host path, or image reference
    readonly: bool = False
    propagation: str = ""  # bind mounts; "" = rprivate
    driver: str = ""  # volume driver; "" = the volume's own, or local for a new one
    driver_opts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    nocopy: bool = False
    anonymous: bool = False
    tmpfs_size: int = 0
    tmpfs_mode: int = 0
    options: list[str] = field(default_factory=list)  # tmpfs words; "rro" for binds
    sub_path: str = ""  # image volumes: a directory of the image
    image_id: str = ""  # image volumes, once resolved
    from_container: str = ""  # --volumes-from: whose mount this was

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MountEntry:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def plan_of(extras: dict[str, Any]) -> list[MountEntry]:
    section = extras.get(EXTRAS_KEY) or {}
    return [MountEntry.from_dict(m) for m in section.get("mounts", [])]


def volume_names(extras: dict[str, Any]) -> list[str]:
    """Names of the volumes a container's plan uses, each once."""
    names: list[str] = []
    for entry in plan_of(extras):
        if entry.type == "volume" and entry.source and entry.source not in names:
            names.append(entry.source)
    return names


def tmpfs_words(entry: MountEntry) -> list[str]:
    """The tmpfs mount options for the OCI spec: docker's defaults under the user's own."""
    merged: dict[str, str] = {}
    flags: list[str] = []

    def put_flag(word: str) -> None:
        for a, b in _TMPFS_FLAG_PAIRS.items():
            if word in (a, b):
                flags[:] = [f for f in flags if f not in (a, b)]
        if word not in flags:
            flags.append(word)

    for word in TMPFS_DEFAULTS:
        put_flag(word)
    for word in entry.options:
        key, eq, value = word.partition("=")
        if eq:
            merged[key] = value
        else:
            put_flag(word)
    if entry.tmpfs_size:
        merged["size"] = str(entry.tmpfs_size)
    if entry.tmpfs_mode:
        merged["mode"] = format(entry.tmpfs_mode, "o")
    if entry.readonly:
        put_flag("ro")
    return flags + [f"{k}={v}" for k, v in merged.items()]


def check_tmpfs_options(words: list[str]) -> list[str]:
    """Refuse option words a tmpfs does not take (they would fail at start, less clearly)."""
    out = []
    for word in words:
        word = word.strip()
        if not word:
            continue
        if "," in word or "\x00" in word:
            # One option per word: a comma would smuggle more options into the mount.
            raise InvalidArgument(f"invalid tmpfs option {word!r}: one option per entry")
        key, eq, value = word.partition("=")
        if eq:
            if key not in _TMPFS_KEYS:
                raise InvalidArgument(
                    f"invalid tmpfs option {word!r}: keys are {', '.join(_TMPFS_KEYS)}"
                )
            pattern, what = _TMPFS_VALUES[key]
            if not re.fullmatch(pattern, value):
                raise InvalidArgument(f"invalid tmpfs option {word!r}: {key} must be {what}")
        elif word not in _TMPFS_WORDS:
            raise InvalidArgument(
                f"invalid tmpfs option {word!r}: use size=, mode=, uid=, gid=, nr_inodes= "
                "or flags such as ro, exec, noexec, nosuid, nodev"
            )
        out.append(word)
    return out


def check_propagation(value: str) -> str:
    if value and value not in PROPAGATIONS:
        raise InvalidArgument(
            f"invalid propagation mode {value!r}: use one of {', '.join(PROPAGATIONS)}"
        )
    return value


def oci_mount(entry: MountEntry, source: str) -> BindMount:
    """The OCI mount for an entry whose host side is `source` (a path, or tmpfs)."""
    if entry.type == "tmpfs":
        return BindMount(
            source="tmpfs",
            destination=entry.target,
            type="tmpfs",
            propagation="rprivate",
            options=tuple(tmpfs_words(entry)),
        )
    options: tuple[str, ...] = ()
    if "rro" in entry.options and entry.readonly:
        options = ("rro",)
    return BindMount(
        source=source,
        destination=entry.target,
        readonly=entry.readonly,
        propagation=entry.propagation or "rprivate",
        options=options,
    )

"""Volume names and path checks: nothing a user names may lead outside where it belongs."""

from __future__ import annotations

import os
import posixpath
import re
import secrets
import stat
from pathlib import Path

from runtimed.errors import InvalidArgument, shown

# docker's rule: a letter or digit, then letters, digits, '_', '.' or '-' (two or more).
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
MAX_NAME = 255
ANONYMOUS_LABEL = "com.docker.volume.anonymous"


def check_name(name: str) -> str:
    """`name` if it may name a volume; InvalidArgument saying why not otherwise."""
    if len(name) > MAX_NAME:
        raise InvalidArgument(
            f'volume name "{shown(name)}" is too long: at most {MAX_NAME} characters are allowed'
        )
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            f'volume name "{shown(name)}" includes invalid characters for a local volume name, '
            "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed (two characters or more)"
        )
    return name


def anonymous_name() -> str:
    """Docker's generated names: 64 hex digits."""
    return secrets.token_hex(32)


def clean_target(path: str, what: str = "mount") -> str:
    """An absolute, normalised container path that is not `/`."""
    if not path:
        raise InvalidArgument(f"{what}: a target path inside the container is required")
    if "\x00" in path:
        raise InvalidArgument(f"{what}: path contains a NUL byte")
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid {what} path {path!r}: mount path must be absolute")
    clean = posixpath.normpath(path)
    clean = "/" + clean.lstrip("/")
    if clean == "/":
        raise InvalidArgument(f"invalid {what} path {path!r}: destination can't be '/'")
    return clean


def check_sub_path(sub_path: str) -> str:
    """A relative path that stays below its base: no `..`, not absolute."""
    if "\x00" in sub_path:
        raise InvalidArgument("sub-path contains a NUL byte")
    if sub_path.startswith("/"):
        raise InvalidArgument(f"sub-path {sub_path!r} must be relative to the volume")
    parts = [p for p in sub_path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"sub-path {sub_path!r} may not contain '..'")
    return "/".join(parts)


def join_no_symlinks(base: Path, sub_path: str) -> Path:
    """`base/sub_path`, refusing when any component below `base` is a symlink.

    A container that can write into a volume can plant a link there; following
    it while preparing a mount would bind whatever it points at on the host.
    """
    rel = check_sub_path(sub_path)
    current = base
    for part in [p for p in rel.split("/") if p]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            raise InvalidArgument(f"sub-path {sub_path!r} does not exist in {base}") from None
        if stat.S_ISLNK(st.st_mode):
            raise InvalidArgument(f"sub-path {sub_path!r} is refused: {part!r} is a symbolic link")
    return current


def require_real_dir(path: Path, what: str) -> None:
    """`path` must be a directory and not a symlink (something could have swapped it)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise InvalidArgument(f"{what} {path} does not exist") from None
    if stat.S_ISLNK(st.st_mode):
        raise InvalidArgument(f"{what} {path} is a symbolic link: refused")
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"{what} {path} is not a directory")

"""Resolve a container user spec against the image's own /etc/passwd and /etc/group.

The rootfs is hostile: /etc/passwd may be a symlink to /root/../../etc/shadow of
the host, a FIFO that never answers, or a gigabyte of junk. Paths are therefore
walked one component at a time from a rootfs directory fd with O_NOFOLLOW;
symlinks are read and resolved as the container would see them, with ".." and
absolute targets clamped at the rootfs root, so nothing outside it is opened.
Only regular files are read, and only their first few MiB.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runtimed.errors import InvalidArgument

_MAX_LINKS = 40  # as the kernel's ELOOP limit
_MAX_FILE = 4 << 20
_MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


@dataclass(frozen=True)
class ResolvedUser:
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"


@dataclass(frozen=True)
class _PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class _GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def open_in_root(root: Path, path: str) -> int:
    """Open `path` (as seen from inside `root`) for reading; symlinks never leave `root`.

    Returns an fd of a regular file. Raises FileNotFoundError if the path does
    not resolve to one, OSError(ELOOP) on symlink loops.
    """
    root_fd = os.open(root, _DIR_FLAGS)
    dirs = [root_fd]  # dirs[-1] is the current directory; dirs[0] is the root
    try:
        parts = [p for p in path.split("/") if p]
        links = 0
        while parts:
            name = parts.pop(0)
            if name == ".":
                continue
            if name == "..":
                if len(dirs) > 1:
                    os.close(dirs.pop())
                continue
            st = os.stat(name, dir_fd=dirs[-1], follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(name, dir_fd=dirs[-1])
                if target.startswith("/"):
                    while len(dirs) > 1:
                        os.close(dirs.pop())
                parts = [p for p in target.split("/") if p] + parts
            elif parts:
                # O_NOFOLLOW: if it was swapped for a symlink since the stat, fail.
                dirs.append(os.open(name, _DIR_FLAGS, dir_fd=dirs[-1]))
            else:
                if not stat.S_ISREG(st.st_mode):
                    raise FileNotFoundError(errno.ENOENT, "not a regular file", path)
                fd = os.open(name, _READ_FLAGS, dir_fd=dirs[-1])
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    os.close(fd)
                    raise FileNotFoundError(errno.ENOENT, "not a regular file", path)
                return fd
        raise FileNotFoundError(errno.ENOENT, "not a regular file", path)
    finally:
        for fd in dirs:
            os.close(fd)


def read_in_root(root: Path, path: str, limit: int = _MAX_FILE) -> str | None:
    """The text of `path` inside `root`, or None when it is missing or not a file."""
    try:
        fd = open_in_root(root, path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EACCES):
            return None
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")


def _records(text: str | None, min_fields: int) -> Iterator[list[str]]:
    for line in (text or "").splitlines():
        if not line or line.startswith(("#", "+", "-")):  # NIS compat lines
            continue
        fields = line.split(":")
        if len(fields) >= min_fields:
            yield fields


def _parse_id(text: str) -> int | None:
    if not text.isdigit():
        return None
    value = int(text)
    return value if value <= _MAX_ID else None


def _passwd(rootfs: Path) -> list[_PasswdEntry]:
    out = []
    for f in _records(read_in_root(rootfs, "/etc/passwd"), 6):
        uid, gid = _parse_id(f[2]), _parse_id(f[3])
        if uid is not None and gid is not None:
            out.append(_PasswdEntry(f[0], uid, gid, f[5] or "/"))
    return out


def _groups(rootfs: Path) -> list[_GroupEntry]:
    out = []
    for f in _records(read_in_root(rootfs, "/etc/group"), 3):
        gid = _parse_id(f[2])
        if gid is not None:
            members = tuple(m for m in f[3].split(",") if m) if len(f) > 3 else ()
            out.append(_GroupEntry(f[0], gid, members))
    return out


def check_id(value: int, what: str) -> int:
    """`value` if it can be a uid or gid; InvalidArgument naming `what` otherwise."""
    if not 0 <= value <= _MAX_ID:
        raise InvalidArgument(f"{what} {value} is out of range (0 to {_MAX_ID})")
    return value


def _numeric(text: str, what: str) -> int | None:
    if not text.isdigit():
        return None
    return check_id(int(text), what)


def resolve_user_full(rootfs: Path, user: str) -> ResolvedUser:
    """Resolve "name", "uid", "uid:gid", "name:group" (or "") like Docker does.

    A name must exist in the image's /etc/passwd; a numeric uid need not (it
    then gets gid 0 and HOME /). Supplementary groups are the primary gid plus
    every /etc/group entry that lists the user's name as a member.
    """
    user_part, _, group_part = user.partition(":")
    if ":" in user and not group_part:
        raise InvalidArgument(f"invalid user {user!r}: group is empty (use USER or USER:GROUP)")
    if not user_part:
        if user:
            raise InvalidArgument(f"invalid user {user!r}: user is empty (use USER or USER:GROUP)")
        user_part = "0"

    passwd = _passwd(rootfs)
    uid = _numeric(user_part, "uid")
    if uid is None:
        entry = next((p for p in passwd if p.name == user_part), None)
        if entry is None:
            raise InvalidArgument(
                f"unable to find user {user_part}: no matching entries in passwd file"
            )
    else:
        entry = next((p for p in passwd if p.uid == uid), None)
    uid = entry.uid if entry else uid
    assert uid is not None
    gid = entry.gid if entry else 0
    home = entry.home if entry else "/"

    groups = _groups(rootfs) if (group_part and not group_part.isdigit()) or entry else []
    if group_part:
        numeric_gid = _numeric(group_part, "gid")
        if numeric_gid is None:
            group = next((g for g in groups if g.name == group_part), None)
            if group is None:
                raise InvalidArgument(
                    f"unable to find group {group_part}: no matching entries in group file"
                )
            numeric_gid = group.gid
        gid = numeric_gid

    additional = [gid]
    if entry:
        for g in groups:
            if entry.name in g.members and g.gid not in additional:
                additional.append(g.gid)
    return ResolvedUser(uid, gid, additional, home)


def resolve_user(rootfs: Path, user: str) -> tuple[int, int, list[int]]:
    """(uid, gid, additional gids) for `user` in the image at `rootfs`."""
    r = resolve_user_full(rootfs, user)
    return r.uid, r.gid, r.additional_gids

"""COPY and ADD: which files, where they go, their checksum, and the tar that carries them.

Sources are paths in a source tree (the build context, or another stage's or
image's root) resolved inside it: `..` may not climb out of the context, an
absolute source is taken from the context's top, and a symlink met on the way
is followed with the tree as `/`, so nothing outside the tree is ever read.
Wildcards follow Go's filepath.Match, one path component at a time. Inside a
copied directory symlinks are copied as links, never followed.

The tar written for a step names files by their destination and carries the
owner (--chown, else 0:0) and mode (--chmod, else the source's); it is
unpacked into the step's root by runtimed.core.copyin, which resolves the
destination inside that root as the container would.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from runtimed.build.patterns import go_match, has_wildcards
from runtimed.core.inroot import closing, open_in_root
from runtimed.errors import InvalidArgument
from runtimed.snapshots.diff import ExactReader

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_CHUNK = 1 << 20
ARCHIVE_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"(\xb5/\xfd")


@dataclass(frozen=True)
class Match:
    rel: str  # the source, relative to the tree's top ("" for the top itself)
    is_dir: bool


@dataclass(frozen=True)
class Entry:
    rel: str  # below the matched source ("" for a matched file itself)
    path: str  # host path to read (a /proc/self/fd path below the resolved source)
    st: os.stat_result


def clean_source(src: str, line: int) -> str:
    """The context-relative path of a COPY source; refuses climbing out of the tree."""
    cleaned = (
        posixpath.normpath("/" + src.lstrip("/"))
        if src.startswith("/")
        else posixpath.normpath(src)
    )
    if cleaned == ".." or cleaned.startswith("../"):
        raise InvalidArgument(f"line {line}: forbidden path outside the build context: {src} ()")
    return cleaned.lstrip("/") if cleaned != "/" else ""


def _resolve(root_fd: int, rel: str) -> int:
    """An O_PATH fd for `rel` inside the tree (symlinks followed with the tree as `/`)."""
    return open_in_root(root_fd, rel or ".", os.O_PATH)


def find_sources(root_fd: int, src: str, line: int, label: str) -> list[Match]:
    rel = clean_source(src, line)
    if not has_wildcards(rel):
        try:
            fd = _resolve(root_fd, rel)
        except FileNotFoundError:
            raise InvalidArgument(
                f"line {line}: COPY failed: file not found in {label}: stat {src}: "
                "file does not exist"
            ) from None
        except OSError as exc:
            raise InvalidArgument(
                f"line {line}: COPY failed: {src} in {label}: {exc.strerror}"
            ) from None
        with closing(fd):
            return [Match(rel, stat.S_ISDIR(os.fstat(fd).st_mode))]
    found: list[Match] = []
    parts = rel.split("/")

    def walk(prefix: str, index: int) -> None:
        if index == len(parts):
            fd = _resolve(root_fd, prefix)
            with closing(fd):
                found.append(Match(prefix, stat.S_ISDIR(os.fstat(fd).st_mode)))
            return
        part = parts[index]
        if not has_wildcards(part):
            candidate = posixpath.join(prefix, part) if prefix else part
            try:
                os.close(_resolve(root_fd, candidate))
            except OSError:
                return
            walk(candidate, index + 1)
            return
        try:
            fd = open_in_root(root_fd, prefix or ".", _DIR_FLAGS)
        except OSError:
            return
        with closing(fd):
            names = sorted(os.listdir(fd))
        for name in names:
            if go_match(part, name):
                walk(posixpath.join(prefix, name) if prefix else name, index + 1)

    walk("", 0)
    if not found:
        raise InvalidArgument(
            f"line {line}: COPY failed: no source files were specified "
            f"({src} matched nothing in {label})"
        )
    return found


def walk_source(root_fd: int, match: Match) -> Iterator[Entry]:
    """The matched file, or everything below the matched directory (parents first, sorted)."""
    fd = _resolve(root_fd, match.rel)
    try:
        top = f"/proc/self/fd/{fd}"
        st = os.stat(top)
        if not stat.S_ISDIR(st.st_mode):
            yield Entry("", top, st)
            return
        yield Entry("", top, st)
        yield from _walk_dir(top, "")
    finally:
        os.close(fd)


def _walk_dir(top: str, rel: str) -> Iterator[Entry]:
    base = os.path.join(top, rel) if rel else top
    with os.scandir(base) as it:
        items = sorted(it, key=lambda e: e.name)
    for item in items:
        child = f"{rel}/{item.name}" if rel else item.name
        st = item.stat(follow_symlinks=False)
        yield Entry(child, item.path, st)
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(top, child)


class KnownDigests:
    """sha256 of the context's files, taken as they were unpacked (runtimed.core.copyin's
    `record`), so a build's cache keys need not read them again. A file is known by
    its inode; a size, mtime or ctime that moved since means it changed: read it again."""

    def __init__(self) -> None:
        self._by_inode: dict[tuple[int, int], tuple[int, int, int, bytes]] = {}

    def record(self, fd: int, digest: bytes) -> None:
        st = os.fstat(fd)
        self._by_inode[(st.st_dev, st.st_ino)] = (
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            digest,
        )

    def get(self, st: os.stat_result) -> bytes | None:
        known = self._by_inode.get((st.st_dev, st.st_ino))
        if known is None or known[:3] != (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            return None
        return known[3]


def checksum(root_fd: int, matches: list[Match], known: KnownDigests | None = None) -> str:
    """What the files say about themselves: names, types, modes, link targets, contents."""
    digest = hashlib.sha256()
    for match in matches:
        digest.update(f"M\0{match.rel}\0".encode())
        for entry in walk_source(root_fd, match):
            st = entry.st
            digest.update(
                f"{entry.rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode()
            )
            if stat.S_ISLNK(st.st_mode):
                digest.update(os.readlink(entry.path).encode() + b"\0")
            elif stat.S_ISREG(st.st_mode):
                recorded = known.get(st) if known is not None else None
                digest.update(recorded or _file_digest(entry.path))
    return "sha256:" + digest.hexdigest()


def _file_digest(path: str) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return hashlib.file_digest(f, "sha256").digest()


def is_archive(path: str) -> bool:
    """ADD extracts local tar archives (plain, gzip, bzip2, xz, zstd), known by their bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    if any(head.startswith(m) for m in ARCHIVE_MAGIC):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


@dataclass
class CopyPlan:
    """Where each match goes: its destination path in the image (absolute)."""

    items: list[tuple[Match, str]]
    into_dir: bool


def plan_destinations(
    matches: list[Match], count: int, dest: str, workdir: str, dest_is_dir: bool, line: int
) -> CopyPlan:
    """`count`: the sources in all (matches and heredocs); more than one needs a directory."""
    if not dest.startswith("/"):
        dest = posixpath.join(workdir or "/", dest)
    into_dir = dest.endswith("/") or dest.endswith("/.") or dest_is_dir
    norm = posixpath.normpath(dest)
    if count > 1 and not into_dir:
        raise InvalidArgument(
            f"line {line}: When using COPY with more than one source file, "
            "the destination must be a directory and end with a /"
        )
    items = []
    for match in matches:
        if match.is_dir:
            items.append((match, norm))  # a directory's contents go into the destination
        elif into_dir:
            items.append((match, posixpath.join(norm, posixpath.basename(match.rel) or "file")))
        else:
            items.append((match, norm))
    return CopyPlan(items, into_dir)


def write_tar(
    out: IO[bytes],
    root_fd: int,
    plan: CopyPlan,
    owner: Owner,
    chmod: int | None,
    existing_dirs: set[str],
) -> None:
    """The tar of the copy, names relative to `/`; directories that exist keep their metadata."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for match, dest in plan.items:
            for entry in walk_source(root_fd, match):
                target = posixpath.join(dest, entry.rel) if entry.rel else dest
                name = target.lstrip("/")
                st = entry.st
                if stat.S_ISDIR(st.st_mode) and (not name or target in existing_dirs):
                    continue
                info = tarfile.TarInfo(name or ".")
                info.uid, info.gid = owner.uid, owner.gid
                info.uname = info.gname = ""
                info.mtime = int(st.st_mtime)
                mode = stat.S_IMODE(st.st_mode)
                if chmod is not None and not stat.S_ISLNK(st.st_mode):
                    mode = chmod
                info.mode = mode
                if stat.S_ISDIR(st.st_mode):
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif stat.S_ISLNK(st.st_mode):
                    info.type = tarfile.SYMTYPE
                    info.linkname = os.readlink(entry.path)
                    tar.addfile(info)
                elif stat.S_ISREG(st.st_mode):
                    info.size = st.st_size
                    with open(entry.path, "rb", buffering=0) as f:
                        tar.addfile(info, ExactReader(f.fileno(), st.st_size))  # type: ignore[arg-type]
                # Devices, fifos and sockets in a context are not copied (as BuildKit skips them).


def parse_chmod(value: str | None, line: int) -> int | None:
    if not value:
        return None
    try:
        mode = int(value, 8)
    except ValueError:
        raise InvalidArgument(
            f"line {line}: invalid --chmod={value}: use an octal mode like 0755"
        ) from None
    if mode > 0o7777:
        raise InvalidArgument(f"line {line}: invalid --chmod={value}: mode out of range")
    return mode


def resolve_owner(spec: str | None, root: Path | None, line: int) -> Owner:
    """--chown USER[:GROUP], names looked up in the image's /etc/passwd and /etc/group."""
    if not spec:
        return Owner(0, 0)
    user, _, group = spec.partition(":")
    passwd = _table(root, "etc/passwd") if root is not None else {}
    groups = _table(root, "etc/group") if root is not None else {}
    if user.isdigit():
        uid = int(user)
        primary = int(user)
    elif user in passwd and len(passwd[user]) >= 3:
        uid, primary = int(passwd[user][1]), int(passwd[user][2])
    else:
        raise InvalidArgument(
            f"line {line}: unable to convert uid/gid chown string to host mapping: "
            f"no such user: {user}"
        )
    if not group:
        return Owner(uid, primary)
    if group.isdigit():
        return Owner(uid, int(group))
    if group in groups and len(groups[group]) >= 2:
        return Owner(uid, int(groups[group][1]))
    raise InvalidArgument(
        f"line {line}: unable to convert uid/gid chown string to host mapping: "
        f"no such group: {group}"
    )


def _table(root: Path, rel: str) -> dict[str, list[str]]:
    """name -> the other fields of /etc/passwd or /etc/group, read inside `root`."""
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        fd = open_in_root(root_fd, rel, os.O_RDONLY)
    except OSError:
        return {}
    finally:
        os.close(root_fd)
    with os.fdopen(fd, "r", errors="replace") as f:
        out = {}
        for line in f:
            fields = line.rstrip("\n").split(":")
            if fields and fields[0] and not fields[0].startswith("#"):
                out[fields[0]] = fields[1:]
        return out

"""What a container changed on top of its image: docker diff's list, commit's layer tar,
and export's flattened tar.

For the overlay drivers the changes are the upper directory: a 0:0 character
device is a deletion (`.wh.NAME` in the layer), a directory with an opaque
xattr hides everything below it (`DIR/.wh..wh..opq`). The vfs driver has no
upper directory, so its merged tree is compared with the image's layers.

Mount points the runtime made for the container (/proc, /etc/hosts, ...) are
not changes: docker keeps those in an init layer that neither `diff` nor
`commit` sees; here an empty file or directory at a mount destination is
left out, and so is the mtime change it caused on its parent.

Trees are walked through directory fds opened with O_NOFOLLOW, names in
byte order (the order docker's walk lists them). A running container may
change files meanwhile: what vanishes is skipped, and a file's content is cut
or zero-padded to the size it had when its header was written.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from runtimed.snapshots import whiteout
from runtimed.snapshots.base import Snapshotter
from runtimed.snapshots.overlay import LayeredMount
from runtimed.snapshots.vfs import VfsSnapshotter

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_CHUNK = 1 << 20
_XATTR_PAX_PREFIX = "SCHILY.xattr."

Parts = tuple[str, ...]

ADDED, CHANGED, DELETED = "A", "C", "D"


@dataclass(frozen=True)
class Change:
    path: str  # absolute, as the container sees it
    kind: str  # A | C | D


@dataclass
class _Entry:
    parts: Parts
    st: os.stat_result
    kind: str
    listed: bool = True  # shown by `diff` (an unchanged directory is not)
    opaque: bool = False


def _name_key(name: str) -> bytes:
    return os.fsencode(name)


def _listdir(fd: int) -> list[str]:
    return sorted(os.listdir(fd), key=_name_key)


def _stats(fd: int, parts: Parts) -> Iterator[tuple[str, Parts, os.stat_result]]:
    """(name, its path, its lstat) for each entry of `fd` in name order, skipping any that
    vanish meanwhile."""
    for name in _listdir(fd):
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        yield name, (*parts, name), st


@contextlib.contextmanager
def _subdir(fd: int, name: str) -> Iterator[int | None]:
    """Directory `name` below `fd`, open; None when it vanished or stopped being one."""
    try:
        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
    except (FileNotFoundError, NotADirectoryError):
        yield None
        return
    try:
        yield child
    finally:
        os.close(child)


def _same_dir(a: os.stat_result, b: os.stat_result, *, ignore_mtime: bool) -> bool:
    return (
        a.st_mode == b.st_mode
        and a.st_uid == b.st_uid
        and a.st_gid == b.st_gid
        and (ignore_mtime or a.st_mtime_ns == b.st_mtime_ns)
    )


def _is_placeholder(st: os.stat_result, dir_fd: int, name: str) -> bool:
    """An empty file or directory, as the runtime leaves at a mount destination."""
    if stat.S_ISREG(st.st_mode):
        return st.st_size == 0
    if stat.S_ISDIR(st.st_mode):
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError:
            return False
        try:
            return not os.listdir(fd)
        finally:
            os.close(fd)
    return False


class _LowerView:
    """Looks a path up through the image's layers (top-most first) with overlay's rules."""

    def __init__(self, lowers: list[Path]) -> None:
        self.lowers = lowers

    def lookup(self, parts: Parts) -> os.stat_result | None:
        for layer in self.lowers:
            found, stop = self._in_layer(layer, parts)
            if found is not None or stop:
                return found
        return None

    @staticmethod
    def _in_layer(layer: Path, parts: Parts) -> tuple[os.stat_result | None, bool]:
        """(what this layer has at parts, whether lower layers are hidden from here)."""
        path = layer
        for i, comp in enumerate(parts):
            path = path / comp
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None, False
            if whiteout.is_whiteout(st):
                return None, True
            if i == len(parts) - 1:
                return st, True
            if not stat.S_ISDIR(st.st_mode):
                return None, True  # a file here hides whatever lower layers have below
            with contextlib.suppress(OSError):
                fd = os.open(path, _DIR_FLAGS)
                try:
                    if whiteout.is_opaque(fd):
                        # Nothing lower shows through; look no further down.
                        rest = path.joinpath(*parts[i + 1 :])
                        try:
                            st = os.lstat(rest)
                        except (FileNotFoundError, NotADirectoryError):
                            return None, True
                        return (None if whiteout.is_whiteout(st) else st), True
                finally:
                    os.close(fd)
        return None, False


# -- overlay: the upper directory is the diff -------------------------------------------------


def _walk_upper(
    dir_fd: int, parts: Parts, lower: _LowerView, ignore: frozenset[Parts], in_opaque: bool
) -> Iterator[tuple[_Entry, int]]:
    """(entry, its parent's fd) for everything below `dir_fd`, parents first."""
    for name, here, st in _stats(dir_fd, parts):
        if whiteout.is_whiteout(st):
            yield _Entry(here, st, DELETED), dir_fd
            continue
        if here in ignore and _is_placeholder(st, dir_fd, name):
            continue
        below = None if in_opaque else lower.lookup(here)
        if not stat.S_ISDIR(st.st_mode):
            yield _Entry(here, st, CHANGED if below is not None else ADDED), dir_fd
            continue
        with _subdir(dir_fd, name) as fd:
            if fd is None:
                continue
            opaque = whiteout.is_opaque(fd)
            if below is None or not stat.S_ISDIR(below.st_mode):
                entry = _Entry(here, st, ADDED, opaque=opaque)
            elif opaque:
                # docker lists a directory that replaced the image's as deleted.
                entry = _Entry(here, st, DELETED, opaque=True)
            else:
                mounts_inside = any((*here, child) in ignore for child in os.listdir(fd))
                same = _same_dir(st, below, ignore_mtime=mounts_inside)
                entry = _Entry(here, st, CHANGED, listed=not same)
            yield entry, dir_fd
            yield from _walk_upper(fd, here, lower, ignore, in_opaque or opaque)


# -- vfs: compare the merged tree with the layers ---------------------------------------------


def _lower_map(lowers: list[Path]) -> dict[Parts, os.stat_result]:
    """Everything the image's layers show, applied bottom-up as overlay would."""
    view: dict[Parts, os.stat_result] = {}

    def drop_below(parts: Parts, *, itself: bool) -> None:
        n = len(parts)
        for key in [k for k in view if k[:n] == parts and (itself or len(k) > n)]:
            del view[key]

    def apply(fd: int, parts: Parts) -> None:
        for name in _listdir(fd):
            here = (*parts, name)
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if whiteout.is_whiteout(st):
                drop_below(here, itself=True)
                continue
            old = view.get(here)
            if old is not None and (stat.S_ISDIR(old.st_mode) != stat.S_ISDIR(st.st_mode)):
                drop_below(here, itself=True)
            view[here] = st
            if stat.S_ISDIR(st.st_mode):
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                try:
                    if whiteout.is_opaque(child):
                        drop_below(here, itself=False)
                    apply(child, here)
                finally:
                    os.close(child)

    for layer in reversed(lowers):
        fd = os.open(layer, _DIR_FLAGS)
        try:
            apply(fd, ())
        finally:
            os.close(fd)
    return view


def _differs(st: os.stat_result, old: os.stat_result) -> bool:
    if stat.S_IFMT(st.st_mode) != stat.S_IFMT(old.st_mode):
        return True
    if (st.st_mode, st.st_uid, st.st_gid) != (old.st_mode, old.st_uid, old.st_gid):
        return True
    if stat.S_ISDIR(st.st_mode):
        return False
    return st.st_size != old.st_size or st.st_mtime_ns != old.st_mtime_ns


def _vfs_changes(
    merged_fd: int, lowers: list[Path], ignore: frozenset[Parts]
) -> dict[Parts, _Entry]:
    lower = _lower_map(lowers)
    found: dict[Parts, _Entry] = {}
    seen: set[Parts] = set()

    def walk(fd: int, parts: Parts) -> None:
        for name, here, st in _stats(fd, parts):
            seen.add(here)
            old = lower.get(here)
            if old is None and here in ignore and _is_placeholder(st, fd, name):
                continue
            if old is None:
                found[here] = _Entry(here, st, ADDED)
            elif _differs(st, old):
                found[here] = _Entry(here, st, CHANGED)
            if stat.S_ISDIR(st.st_mode):
                with _subdir(fd, name) as child:
                    if child is not None:
                        walk(child, here)

    walk(merged_fd, ())
    for parts, st in lower.items():
        if parts not in seen and parts[:-1] in seen | {()}:
            found[parts] = _Entry(parts, st, DELETED)
    return found


# -- public -----------------------------------------------------------------------------------


def _source(snapshotter: Snapshotter, key: str) -> tuple[str, Path]:
    if isinstance(snapshotter, LayeredMount):
        return "upper", snapshotter.upper_dir(key)
    if isinstance(snapshotter, VfsSnapshotter):
        return "vfs", snapshotter.merged_dir(key)
    raise TypeError(f"no diff for snapshotter {snapshotter.name}")


def _entries(
    snapshotter: Snapshotter, key: str, lowers: list[Path], ignore: frozenset[Parts]
) -> Iterator[tuple[_Entry, int]]:
    kind, root = _source(snapshotter, key)
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        if kind == "upper":
            yield from _walk_upper(root_fd, (), _LowerView(lowers), ignore, False)
        else:
            yield from _vfs_entries(root_fd, lowers, ignore)
    finally:
        os.close(root_fd)


def _vfs_entries(
    root_fd: int, lowers: list[Path], ignore: frozenset[Parts]
) -> Iterator[tuple[_Entry, int]]:
    """The vfs changes in walk order, with the unchanged parents a layer needs as well."""
    found = _vfs_changes(root_fd, lowers, ignore)
    needed: set[Parts] = set()
    for parts in found:
        needed.update(parts[:i] for i in range(1, len(parts)))
    deleted: dict[Parts, list[_Entry]] = {}
    for entry in found.values():
        if entry.kind == DELETED:
            deleted.setdefault(entry.parts[:-1], []).append(entry)

    def walk(fd: int, parts: Parts) -> Iterator[tuple[_Entry, int]]:
        gone = {e.parts[-1]: e for e in deleted.get(parts, [])}
        for name in sorted([*os.listdir(fd), *gone], key=_name_key):
            here = (*parts, name)
            if name in gone:
                yield gone[name], fd
                continue
            if here not in found and here not in needed:
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            entry = found.get(here) or _Entry(here, st, CHANGED, listed=False)
            entry.st = st
            yield entry, fd
            if stat.S_ISDIR(st.st_mode):
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                try:
                    yield from walk(child, here)
                finally:
                    os.close(child)

    yield from walk(root_fd, ())


def changes(
    snapshotter: Snapshotter, key: str, lowers: list[Path], ignore: frozenset[Parts]
) -> list[Change]:
    """docker diff: A/C/D per path, a changed parent listed before its added or deleted child."""
    out: list[Change] = []
    changed_dirs: set[str] = set()
    for entry, _fd in _entries(snapshotter, key, lowers, ignore):
        if not entry.listed:
            continue
        path = "/" + "/".join(entry.parts)
        if stat.S_ISDIR(entry.st.st_mode):
            changed_dirs.add(path)
        if entry.kind in (ADDED, DELETED):
            parent = os.path.dirname(path)
            if parent != "/" and parent not in changed_dirs:
                out.append(Change(parent, CHANGED))
                changed_dirs.add(parent)
        out.append(Change(path, entry.kind))
    return out


def write_diff_tar(
    snapshotter: Snapshotter,
    key: str,
    lowers: list[Path],
    ignore: frozenset[Parts],
    out: IO[bytes],
) -> int:
    """The container's changes as one OCI layer tar (docker's whiteout names); entries written."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        writer = _TarWriter(tar)
        for entry, parent_fd in _entries(snapshotter, key, lowers, ignore):
            name = "/".join(entry.parts)
            if entry.kind == DELETED and not entry.opaque:
                writer.marker(
                    "/".join((*entry.parts[:-1], whiteout.OCI_WHITEOUT_PREFIX + entry.parts[-1])),
                    entry.st,
                )
                continue
            writer.add(parent_fd, entry.parts[-1], name, entry.st)
            if entry.opaque:
                writer.marker(f"{name}/{whiteout.OCI_OPAQUE_MARKER}", entry.st)
    return writer.count


def write_tree_tar(root: Path, out: IO[bytes]) -> None:
    """Everything below `root` (a container's flattened filesystem) as a tar; docker export."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        writer = _TarWriter(tar)
        root_fd = os.open(root, _DIR_FLAGS)
        try:
            _tree(writer, root_fd, ())
        finally:
            os.close(root_fd)


def _tree(writer: _TarWriter, fd: int, parts: Parts) -> None:
    for name, here, st in _stats(fd, parts):
        writer.add(fd, name, "/".join(here), st)
        if stat.S_ISDIR(st.st_mode):
            with _subdir(fd, name) as child:
                if child is not None:
                    _tree(writer, child, here)


class ExactReader:
    """Exactly `size` bytes of an fd, for a tar member whose header said `size`: cut if
    the file grew, zero-padded if it shrank (tarfile refuses any short read)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size

    def read(self, n: int = -1) -> bytes:
        want = self.left if n < 0 else min(n, self.left)
        data = b""
        while len(data) < want:
            more = os.read(self.fd, want - len(data))
            if not more:
                data += b"\0" * (want - len(data))
                break
            data += more
        self.left -= len(data)
        return data


class _TarWriter:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.tar.copybufsize = _CHUNK  # type: ignore[attr-defined]
        self.links: dict[tuple[int, int], str] = {}
        self.count = 0

    def _emit(self, info: tarfile.TarInfo, fileobj: object = None) -> None:
        self.tar.addfile(info, fileobj)  # type: ignore[arg-type]
        self.count += 1

    @staticmethod
    def _info(arcname: str, st: os.stat_result) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = int(st.st_mtime)
        return info

    def marker(self, arcname: str, st: os.stat_result) -> None:
        """An empty regular file that means something to the unpacker (whiteouts)."""
        info = self._info(arcname, st)
        info.mode &= 0o777
        self._emit(info)

    def add(self, dir_fd: int, name: str, arcname: str, st: os.stat_result) -> None:
        info = self._info(arcname, st)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
            with _opened(name, _DIR_FLAGS, dir_fd) as fd:
                if fd is None:
                    return
                self._xattrs(fd, info)
                self._emit(info)
        elif stat.S_ISREG(mode):
            self._file(dir_fd, name, info, st)
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            try:
                info.linkname = os.readlink(name, dir_fd=dir_fd)
            except OSError:
                return
            self._emit(info)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
            self._emit(info)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self._emit(info)
        # Sockets have no tar form.

    def _file(self, dir_fd: int, name: str, info: tarfile.TarInfo, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1:
            first = self.links.get(key)
            if first is not None:
                info.type = tarfile.LNKTYPE
                info.linkname = first
                self._emit(info)
                return
        with _opened(name, _FILE_FLAGS, dir_fd) as fd:
            if fd is None:
                return
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode):
                return  # swapped for something else since the listing
            if st.st_nlink > 1:
                self.links[key] = info.name
            info.size = now.st_size
            self._xattrs(fd, info)
            self._emit(info, ExactReader(fd, info.size))  # type: ignore[arg-type]

    @staticmethod
    def _xattrs(fd: int, info: tarfile.TarInfo) -> None:
        try:
            names = os.listxattr(fd)
        except OSError:
            return
        for attr in names:
            if whiteout.is_reserved_xattr(attr):
                continue  # overlay's own bookkeeping, never part of a layer
            with contextlib.suppress(OSError):
                value = os.getxattr(fd, attr)
                info.pax_headers[_XATTR_PAX_PREFIX + attr] = value.decode(
                    "utf-8", "surrogateescape"
                )


@contextlib.contextmanager
def _opened(name: str, flags: int, dir_fd: int) -> Iterator[int | None]:
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError, OSError):
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


__all__ = ["Change", "ExactReader", "changes", "write_diff_tar", "write_tree_tar"]

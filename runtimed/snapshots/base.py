"""What every snapshotter offers, and the bookkeeping they share.

A snapshot is a container's writable root filesystem built from unpacked
layers (overlay upper directories, see runtimed.snapshots.whiteout). Each
snapshotter keeps its snapshots under `<root>/<name>/<key>/`.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from pathlib import Path
from typing import NamedTuple, Protocol

import structlog

from runtimed.errors import FailedPrecondition, InvalidArgument, NotFound
from runtimed.snapshots import _mount

log = structlog.get_logger(__name__)

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Separators (or escapes) in overlay and fuse-overlayfs option strings.
_OPTION_METACHARS = frozenset(",:\\\n")


class DiskUsage(NamedTuple):
    """What a directory tree holds (below its top directory; hard links once each)."""

    bytes: int  # apparent bytes of files and symlinks (what docker's SizeRw counts)
    inodes: int  # directories, files, symlinks, whiteouts
    allocated: int  # bytes of the blocks they take on disk, as du counts them


class Snapshotter(Protocol):
    name: str

    def mount(self, key: str, lowers: list[Path]) -> Path:
        """Build (or return the existing) writable root for `key`.

        `lowers` are unpacked layer directories, top-most first.
        """
        ...

    def unmount(self, key: str) -> None: ...

    def remove(self, key: str) -> None: ...

    def usage(self, key: str) -> DiskUsage:
        """What the snapshot has written on top of its layers (its writable layer)."""
        ...


def check_key(key: str) -> None:
    if not _KEY.fullmatch(key):
        raise InvalidArgument(
            f"snapshot key {key!r} is invalid: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )


def check_lowers(lowers: list[Path], *, for_options: bool) -> list[Path]:
    """Absolute, existing layer directories; refuse paths a mount option cannot carry."""
    out = []
    for lower in lowers:
        path = Path(os.path.abspath(lower))
        if not path.is_dir():
            raise NotFound(f"layer directory {path} does not exist; pull the image again")
        if for_options and _OPTION_METACHARS & set(str(path)):
            raise InvalidArgument(
                f"layer directory {path} contains one of , : \\ or a newline, which overlay "
                "mount options cannot carry; move the storage root to a plainer path"
            )
        out.append(path)
    return out


def tree_usage(path: Path) -> DiskUsage:
    """What is below `path` (see DiskUsage); unreadable directories count nothing."""
    total = inodes = allocated = 0
    seen: set[tuple[int, int]] = set()  # hard-linked inodes met so far
    stack = [str(path)]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue  # removed or replaced by a running container meanwhile, or sealed off
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
                elif st.st_nlink > 1:
                    ident = (st.st_dev, st.st_ino)
                    if ident in seen:
                        continue
                    seen.add(ident)
                inodes += 1
                allocated += st.st_blocks * 512
                if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    total += st.st_size
    return DiskUsage(total, inodes, allocated)


def remove_tree(path: Path) -> None:
    """Delete a snapshot directory; refuse if anything below is still mounted."""
    prefix = os.path.realpath(path) + "/"
    busy = [m for m in _mount.mount_points() if m.startswith(prefix)]
    if busy:
        # Deleting through a mount would delete the layers (or worse) below it.
        raise FailedPrecondition(f"refusing to delete {path}: {busy[0]} is still mounted")

    if path.exists() or path.is_symlink():
        shutil.rmtree(path, onerror=_retry_writable)


def _retry_writable(func: object, failed: str, excinfo: tuple[type, BaseException, object]) -> None:
    # Without root, read-only dirs (overlay's work/work is 000, images ship
    # 0555 ones) block deletion: open them up and try again.
    exc = excinfo[1]
    if not isinstance(exc, PermissionError):
        raise exc
    if func in (os.unlink, os.rmdir):
        os.chmod(os.path.dirname(failed), 0o700)
        func(failed)
    else:
        os.chmod(failed, 0o700)
        shutil.rmtree(failed)


def copy_root_attrs(top: Path | None, upper: Path) -> None:
    """Give the empty upper dir the owner and mode of the image's root.

    The merged root takes its attributes from the upper dir, so without this
    every container's / would be the daemon's 0755 default.
    """
    if top is None:
        return
    st = top.stat()
    try:
        os.chown(upper, st.st_uid, st.st_gid)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EINVAL):
            raise
        log.warning("snapshot_root_owner_not_copied", upper=str(upper), reason=exc.strerror)
    os.chmod(upper, stat.S_IMODE(st.st_mode))

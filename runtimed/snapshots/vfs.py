"""The vfs snapshotter: a full copy of the layers, no mount at all.

Slow and space-hungry, but works anywhere a process can write files. Layers
are applied bottom-up with overlay's rules: a 0:0 character device deletes
the path below it, an opaque directory empties its lower namesake first.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import structlog

from runtimed.errors import FailedPrecondition
from runtimed.snapshots import whiteout
from runtimed.snapshots.base import DiskUsage, check_key, check_lowers, remove_tree, tree_usage

log = structlog.get_logger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_COMPLETE = ".complete"
_BEST_EFFORT_XATTRS = ("security.", "trusted.")


def _remove_at(name: str, dir_fd: int) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        _empty_dir(name, dir_fd)
        os.rmdir(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _empty_dir(name: str, dir_fd: int) -> None:
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            _remove_at(child, fd)
    finally:
        os.close(fd)


def _copy_data(src: int, dst: int) -> None:
    try:
        while os.copy_file_range(src, dst, 1 << 30):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while chunk := os.read(src, 1 << 20):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]


class _LayerCopier:
    """Applies one layer directory onto the merged tree."""

    def __init__(self, key: str, root: int) -> None:
        self.key = key
        self.root = root
        # Hardlinked files stay hardlinked: first copy's path per source inode.
        self.links: dict[tuple[int, int], tuple[str, ...]] = {}

    def apply_dir(self, src: int, dst: int, path: tuple[str, ...] = ()) -> None:
        for name in os.listdir(src):
            st = os.stat(name, dir_fd=src, follow_symlinks=False)
            if whiteout.is_whiteout(st):
                _remove_at(name, dst)
            elif stat.S_ISDIR(st.st_mode):
                self._dir(name, src, dst, (*path, name))
            else:
                self._non_dir(name, st, src, dst, (*path, name))

    def _open_dir(self, path: tuple[str, ...]) -> int:
        fd = os.dup(self.root)
        for comp in path:
            try:
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            finally:
                os.close(fd)
            fd = nfd
        return fd

    def _dir(self, name: str, src: int, dst: int, path: tuple[str, ...]) -> None:
        sfd = os.open(name, _DIR_FLAGS, dir_fd=src)
        try:
            try:
                existing = os.stat(name, dir_fd=dst, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                os.unlink(name, dir_fd=dst)
                existing = None
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=dst)
            elif whiteout.is_opaque(sfd):
                _empty_dir(name, dst)
            dfd = os.open(name, _DIR_FLAGS, dir_fd=dst)
            try:
                self.apply_dir(sfd, dfd, path)
                self.copy_meta(sfd, dfd, name)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)

    def _non_dir(
        self, name: str, st: os.stat_result, src: int, dst: int, path: tuple[str, ...]
    ) -> None:
        _remove_at(name, dst)
        mode = st.st_mode
        if stat.S_ISREG(mode):
            ident = (st.st_dev, st.st_ino)
            first = self.links.get(ident)
            if first is not None:
                lfd = self._open_dir(first[:-1])
                try:
                    os.link(first[-1], name, src_dir_fd=lfd, dst_dir_fd=dst, follow_symlinks=False)
                finally:
                    os.close(lfd)
                return
            sfd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
            try:
                dfd = os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=dst,
                )
                try:
                    _copy_data(sfd, dfd)
                    self.copy_meta(sfd, dfd, name)
                finally:
                    os.close(dfd)
            finally:
                os.close(sfd)
            if st.st_nlink > 1:
                self.links[ident] = path
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
            self._chown(name, st, dst, follow=False)
            ns = st.st_mtime_ns
            os.utime(name, ns=(st.st_atime_ns, ns), dir_fd=dst, follow_symlinks=False)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(name, 0o600, dir_fd=dst)
            self._chown(name, st, dst, follow=False)
            os.chmod(name, stat.S_IMODE(mode), dir_fd=dst)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst)
        else:
            log.warning("vfs_special_file_skipped", key=self.key, name=name, mode=oct(mode))

    def _chown(
        self, target: str | int, st: os.stat_result, dir_fd: int | None, follow: bool
    ) -> None:
        try:
            if isinstance(target, int):
                os.fchown(target, st.st_uid, st.st_gid)
            else:
                os.chown(target, st.st_uid, st.st_gid, dir_fd=dir_fd, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EINVAL):
                raise
            raise FailedPrecondition(
                f"vfs cannot copy owner {st.st_uid}:{st.st_gid}: {exc.strerror}; snapshots "
                "must be made as root of the daemon's user namespace"
            ) from None

    def copy_meta(self, sfd: int, dfd: int, name: str) -> None:
        st = os.fstat(sfd)
        self._chown(dfd, st, None, follow=True)
        os.fchmod(dfd, stat.S_IMODE(st.st_mode))
        for attr in os.listxattr(sfd):
            if whiteout.is_reserved_xattr(attr):
                continue  # overlay bookkeeping (opaque markers) is meaningless here
            try:
                os.setxattr(dfd, attr, os.getxattr(sfd, attr))
            except OSError:
                if not attr.startswith(_BEST_EFFORT_XATTRS):
                    raise
                log.warning("vfs_xattr_skipped", key=self.key, name=name, xattr=attr)
        os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))


class VfsSnapshotter:
    name = "vfs"

    def __init__(self, root: Path) -> None:
        self.base = root / self.name

    def merged_dir(self, key: str) -> Path:
        """The snapshot's whole tree (vfs keeps no separate layer of changes)."""
        return self._merged(key)

    def _merged(self, key: str) -> Path:
        check_key(key)
        return self.base / key / "merged"

    def mount(self, key: str, lowers: list[Path]) -> Path:
        merged = self._merged(key)
        done = merged.parent / _COMPLETE
        if done.exists():
            return merged
        layers = check_lowers(lowers, for_options=False)
        # A copy interrupted by a crash is redone from scratch.
        remove_tree(merged.parent)
        merged.mkdir(parents=True)
        root = os.open(merged, _DIR_FLAGS)
        try:
            for layer in reversed(layers):
                copier = _LayerCopier(key, root)
                src = os.open(layer, _DIR_FLAGS)
                try:
                    copier.apply_dir(src, root)
                    copier.copy_meta(src, root, ".")
                finally:
                    os.close(src)
        except BaseException:
            os.close(root)
            remove_tree(merged.parent)
            raise
        os.close(root)
        done.touch()
        log.info("snapshot_mounted", driver=self.name, key=key, layers=len(layers))
        return merged

    def unmount(self, key: str) -> None:
        self._merged(key)  # nothing is mounted; only validate the key

    def remove(self, key: str) -> None:
        remove_tree(self._merged(key).parent)

    def usage(self, key: str) -> DiskUsage:
        return tree_usage(self._merged(key))

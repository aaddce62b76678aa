"""Docker's copy-up: an empty volume mounted over an image directory gets its files.

The first time an empty volume is mounted where the image has a directory,
that directory's contents, owners, modes and times are copied into the volume,
and the volume's root takes the directory's owner and mode (so a non-root user
the image gave that directory can write to the fresh volume).

Both sides are untrusted: the image's tree is read without following any link,
and the volume (which other containers may be writing to) is written through
directory descriptors with O_NOFOLLOW, so nothing lands outside it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

import structlog

from runtimed.core.copy import resolve_in_root

log = structlog.get_logger(__name__)

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1024 * 1024


def copy_up(rootfs: Path, target: str, volume_dir: Path) -> bool:
    """Copy the image's `target` directory into `volume_dir` if the volume is empty.

    Returns True when the image had a directory there and the volume took it (its files,
    or only its owner and mode when it was empty).
    """
    source = resolve_in_root(rootfs, target)
    try:
        src_fd = os.open(source, _DIR)
    except (FileNotFoundError, NotADirectoryError):
        return False  # nothing there in the image (or a file, which a volume cannot cover)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False
        raise
    try:
        dst_fd = os.open(volume_dir, _DIR)
        try:
            if os.listdir(dst_fd):
                return False
            _Copier().copy_dir(src_fd, dst_fd)
            _meta_fd(dst_fd, os.fstat(src_fd))
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    log.info("volume_copied_up", target=target, volume_dir=str(volume_dir))
    return True


def _owner(target: int | str, st: os.stat_result, dir_fd: int | None = None) -> None:
    try:
        if isinstance(target, int):
            os.fchown(target, st.st_uid, st.st_gid)
        else:
            os.chown(target, st.st_uid, st.st_gid, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EINVAL):
            raise
        log.warning("volume_copy_owner_kept", reason=exc.strerror)


def _meta_fd(fd: int, st: os.stat_result) -> None:
    """Owner, mode and times of `st` onto an open file or directory."""
    _owner(fd, st)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _meta_name(dst: int, name: str, st: os.stat_result) -> None:
    """The same for what cannot be opened (links, fifos), never following a link."""
    _owner(name, st, dst)
    if not stat.S_ISLNK(st.st_mode):
        with contextlib.suppress(NotImplementedError, OSError):
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dst, follow_symlinks=False)
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)


class _Copier:
    def __init__(self) -> None:
        self.links: dict[tuple[int, int], tuple[int, str]] = {}
        self.held: list[int] = []

    def copy_dir(self, src: int, dst: int) -> None:
        try:
            self._walk(src, dst)
        finally:
            for fd in self.held:
                os.close(fd)

    def _walk(self, src: int, dst: int) -> None:
        for entry in sorted(os.listdir(src)):
            st = os.stat(entry, dir_fd=src, follow_symlinks=False)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(entry, 0o700, dir_fd=dst)
                child_src = os.open(entry, _DIR, dir_fd=src)
                try:
                    child_dst = os.open(entry, _DIR, dir_fd=dst)
                    try:
                        self._walk(child_src, child_dst)
                        _meta_fd(child_dst, st)
                    finally:
                        os.close(child_dst)
                finally:
                    os.close(child_src)
                continue
            if st.st_nlink > 1 and self._link(st, entry, dst):
                continue
            if stat.S_ISREG(mode):
                self._file(src, dst, entry, st)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(entry, dir_fd=src), entry, dir_fd=dst)
                _meta_name(dst, entry, st)
            elif stat.S_ISFIFO(mode):
                os.mkfifo(entry, 0o600, dir_fd=dst)
                _meta_name(dst, entry, st)
            else:
                # Devices cannot be made in a user namespace; sockets mean nothing copied.
                log.info("volume_copy_skipped", name=entry, mode=oct(mode))
                continue
            if st.st_nlink > 1:
                holder = os.dup(dst)
                self.held.append(holder)
                self.links[(st.st_dev, st.st_ino)] = (holder, entry)

    def _link(self, st: os.stat_result, name: str, dst: int) -> bool:
        first = self.links.get((st.st_dev, st.st_ino))
        if first is None:
            return False
        holder, first_name = first
        try:
            os.link(first_name, name, src_dir_fd=holder, dst_dir_fd=dst, follow_symlinks=False)
        except OSError:
            return False
        return True

    @staticmethod
    def _file(src: int, dst: int, name: str, st: os.stat_result) -> None:
        in_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
        try:
            out_fd = os.open(
                name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=dst,
            )
            try:
                _copy_data(in_fd, out_fd)
                _meta_fd(out_fd, st)
            finally:
                os.close(out_fd)
        finally:
            os.close(in_fd)


def _copy_data(in_fd: int, out_fd: int) -> None:
    try:
        while os.copy_file_range(in_fd, out_fd, 1 << 30):
            pass
        return
    except OSError:
        pass  # across filesystems (overlay to ext4) the kernel may refuse: copy by hand
    os.lseek(in_fd, 0, os.SEEK_SET)
    os.ftruncate(out_fd, 0)
    os.lseek(out_fd, 0, os.SEEK_SET)
    while chunk := os.read(in_fd, _CHUNK):
        os.write(out_fd, chunk)

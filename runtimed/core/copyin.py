"""Unpacking the tar stream of `cp SRC CTR:DIR` into a container's root, through fds.

Every entry's directory is resolved inside the root by runtimed.core.inroot
(symlinks followed as the container would follow them, never out of its
root); the entry itself is then made with *at() calls relative to that
directory's fd that never follow a symlink: mkdirat, unlinkat, symlinkat,
linkat, openat(O_CREAT|O_EXCL|O_NOFOLLOW), and fchmod/futimens on what was
opened. A container swapping names meanwhile can only redirect a write to
another place inside its own root. Errors name container paths only.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Callable
from typing import IO

from runtimed.core.inroot import closing, open_in_root
from runtimed.errors import FailedPrecondition, InvalidArgument, RuntimedError

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FINISH_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_CHUNK = 1 << 20
# What the archive or the container's tree got wrong, rather than the host.
_REQUEST_ERRNOS = {
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ELOOP,
    errno.ENAMETOOLONG,
    errno.ENOTEMPTY,
    errno.EXDEV,
}


def extract(
    archive: IO[bytes],
    root_fd: int,
    base: str,
    container: str,
    *,
    owners: bool = False,
    record: Callable[[int, bytes], None] | None = None,
    plain: bool = False,
) -> None:
    """Unpack `archive` into directory `base` of the root `root_fd` (container `container`).

    `owners`: entries get the archive's uid/gid (the builder's COPY and ADD);
    `record(fd, sha256)`: called for each regular file once written (a build context's
    files are hashed as they arrive, so the build's cache need not read them again).
    `plain`: `archive` is known to be an uncompressed tar, read front to back only (its
    seek() need only go forward), so no compression is probed for.
    """
    try:
        tar = tarfile.open(fileobj=archive, mode="r:" if plain else "r:*")  # noqa: SIM115
    except tarfile.TarError as exc:
        raise InvalidArgument(f"copy: not a valid tar archive: {exc}") from exc
    unpacker = _Unpacker(root_fd, base, container, owners=owners, record=record)
    try:
        with tar:
            for member in tar:
                unpacker.add(tar, member)
            unpacker.finish()
    except tarfile.TarError as exc:
        raise InvalidArgument(f"copy: not a valid tar archive: {exc}") from exc
    finally:
        unpacker.close()


def _ns(member: tarfile.TarInfo) -> tuple[int, int]:
    ns = round(float(member.mtime) * 1_000_000_000)
    return ns, ns


class _Unpacker:
    def __init__(
        self,
        root_fd: int,
        base: str,
        container: str,
        *,
        owners: bool = False,
        record: Callable[[int, bytes], None] | None = None,
    ) -> None:
        self.root_fd = root_fd
        self.owners = owners
        self.record = record
        self.base = posixpath.normpath("/" + base.lstrip("/"))
        self.container = container
        # Modes and times of directories, set last: their contents change their mtime.
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []
        # Most entries share the previous entry's directory.
        self._cached: tuple[str, int] | None = None

    def close(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def _fail(self, exc: OSError, what: str) -> RuntimedError:
        where = f"{what} in container {self.container}"
        if exc.errno in _REQUEST_ERRNOS:
            return InvalidArgument(f"copy: cannot write {where}: {exc.strerror}")
        return FailedPrecondition(f"copy: cannot write {where}: {exc.strerror}")

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = posixpath.normpath(member.name)
        if name.startswith(("/", "../")) or name == "..":
            raise InvalidArgument(f"copy: archive entry {member.name!r} escapes the target")
        if name == ".":
            return  # the target directory itself, which exists
        inside = posixpath.join(self.base, name)
        try:
            parent = self._dir(posixpath.dirname(inside))
            self._add_at(tar, member, inside, parent, posixpath.basename(inside))
        except OSError as exc:
            raise self._fail(exc, inside) from None

    # -- directories -----------------------------------------------------------

    def _dir(self, path: str) -> int:
        """The fd of directory `path` (followed inside the root), made if missing."""
        if self._cached is not None and self._cached[0] == path:
            return self._cached[1]
        fd = self._ensure(path)
        self.close()
        self._cached = (path, fd)
        return fd

    def _ensure(self, path: str) -> int:
        try:
            return open_in_root(self.root_fd, path, _DIR_FLAGS)
        except FileNotFoundError:
            pass
        parent = posixpath.dirname(path)
        if parent == path:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        # Made meanwhile, or a symlink: either way resolved again below.
        with closing(self._ensure(parent)) as parent_fd, contextlib.suppress(FileExistsError):
            os.mkdir(posixpath.basename(path), 0o755, dir_fd=parent_fd)
        return open_in_root(self.root_fd, path, _DIR_FLAGS)

    # -- entries ---------------------------------------------------------------

    def _clear(self, member: tarfile.TarInfo, inside: str, parent: int, leaf: str) -> bool:
        """Make room for `member` at `leaf`; True when a directory there is kept."""
        try:
            st = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(leaf, dir_fd=parent)
            return False
        if member.isdir():
            return True
        raise InvalidArgument(
            f"copy: cannot overwrite directory {inside} in container {self.container} "
            "with a non-directory"
        )

    def _add_at(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, inside: str, parent: int, leaf: str
    ) -> None:
        if member.isdir():
            if not self._clear(member, inside, parent, leaf):
                os.mkdir(leaf, 0o700, dir_fd=parent)
            self.dirs.append((inside, member))
        elif member.isreg():
            self._clear(member, inside, parent, leaf)
            self._regular(tar, member, parent, leaf)
        elif member.issym():
            self._clear(member, inside, parent, leaf)
            os.symlink(member.linkname, leaf, dir_fd=parent)
            if self.owners:
                os.chown(leaf, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
            os.utime(leaf, ns=_ns(member), dir_fd=parent, follow_symlinks=False)
        elif member.islnk():
            self._hardlink(member, inside, parent, leaf)
        # Devices and fifos are not copied: rootless cannot make devices.

    def _regular(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, parent: int, leaf: str
    ) -> None:
        source = tar.extractfile(member)
        assert source is not None
        with os.fdopen(os.open(leaf, _FILE_FLAGS, 0o600, dir_fd=parent), "wb") as out:
            if self.record is None:
                shutil.copyfileobj(source, out, _CHUNK)
            else:
                digest = hashlib.sha256()
                while chunk := source.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
            out.flush()
            if self.owners:
                os.fchown(out.fileno(), member.uid, member.gid)
            os.fchmod(out.fileno(), member.mode & 0o7777)
            os.utime(out.fileno(), ns=_ns(member))
            if self.record is not None:
                self.record(out.fileno(), digest.digest())

    def _hardlink(self, member: tarfile.TarInfo, inside: str, parent: int, leaf: str) -> None:
        linkname = posixpath.normpath(member.linkname)
        if linkname.startswith(("/", "../")) or linkname == "..":
            raise InvalidArgument(
                f"copy: archive entry {member.name!r} is a hard link to {member.linkname!r}, "
                "outside the copied files"
            )
        target = posixpath.join(self.base, linkname)
        if target == inside:
            return  # a link to itself changes nothing
        missing = InvalidArgument(
            f"copy: cannot link {inside} to {target} in container {self.container}: "
            f"{target} does not exist"
        )
        try:
            source_dir = open_in_root(self.root_fd, posixpath.dirname(target), _DIR_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            raise missing from None
        with closing(source_dir):
            self._clear(member, inside, parent, leaf)
            try:
                os.link(
                    posixpath.basename(target),
                    leaf,
                    src_dir_fd=source_dir,
                    dst_dir_fd=parent,
                    follow_symlinks=False,
                )
            except FileNotFoundError:
                raise missing from None

    def finish(self) -> None:
        """Directory modes and times, deepest first, once their contents are written."""
        self.close()
        for inside, member in sorted(self.dirs, key=lambda d: d[0].count("/"), reverse=True):
            try:
                fd = open_in_root(self.root_fd, inside, _FINISH_FLAGS)
            except OSError:
                continue  # replaced by something else since: nothing of ours to finish
            with closing(fd):
                try:
                    if self.owners:
                        os.fchown(fd, member.uid, member.gid)
                    os.fchmod(fd, member.mode & 0o7777)
                    os.utime(fd, ns=_ns(member))
                except OSError as exc:
                    raise self._fail(exc, inside) from None

"""The tar stream of `cp CTR:PATH`: a tree inside a container's root, read through fds.

The tree is walked from an O_PATH fd that runtimed.core.inroot resolved: each
child is opened by name relative to its directory's fd with O_NOFOLLOW, its
type is read from that fd, and only then is it reopened to read a file or
list a directory. A symlink is stored as a link, never followed; a name the
container swaps mid-walk yields whatever is there now, still inside its root.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from typing import IO

from runtimed.core.inroot import closing, reopen

_CHILD_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def write_tree(path_fd: int, arcname: str, out: IO[bytes]) -> None:
    """A PAX tar of what `path_fd` (O_PATH, from open_in_root) holds, named `arcname`."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _TreeTar(tar).add(path_fd, arcname)


class _TreeTar:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        # First name of each multiply-linked file: later names become hard links to it.
        self.links: dict[tuple[int, int], str] = {}

    def add(self, path_fd: int, arcname: str) -> None:
        st = os.fstat(path_fd)
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = int(st.st_mtime)
        mode = st.st_mode
        if stat.S_ISREG(mode):
            self._file(path_fd, info, st)
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
            self.tar.addfile(info)
            self._children(path_fd, arcname)
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink("", dir_fd=path_fd)  # the link this fd holds
            self.tar.addfile(info)
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = (
                tarfile.FIFOTYPE
                if stat.S_ISFIFO(mode)
                else tarfile.CHRTYPE
                if stat.S_ISCHR(mode)
                else tarfile.BLKTYPE
            )
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tar.addfile(info)
        # Sockets have no tar form; tar skips them too.

    def _file(self, path_fd: int, info: tarfile.TarInfo, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1:
            first = self.links.get(key)
            if first is not None:
                info.type = tarfile.LNKTYPE
                info.linkname = first
                self.tar.addfile(info)
                return
            self.links[key] = info.name
        with os.fdopen(reopen(path_fd, os.O_RDONLY), "rb") as f:
            # The size of what is read now; a file that shrinks mid-read fails the copy.
            info.size = os.fstat(f.fileno()).st_size
            self.tar.addfile(info, f)

    def _children(self, path_fd: int, arcname: str) -> None:
        with closing(reopen(path_fd, os.O_RDONLY | os.O_DIRECTORY)) as dir_fd:
            for name in sorted(os.listdir(dir_fd)):
                try:
                    child = os.open(name, _CHILD_FLAGS, dir_fd=dir_fd)
                except FileNotFoundError:
                    continue  # removed since the listing
                with closing(child):
                    self.add(child, posixpath.join(arcname, name))

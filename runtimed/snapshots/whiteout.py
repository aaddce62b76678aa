"""The overlayfs on-disk format shared by layer unpacking and every snapshotter.

An unpacked layer is an overlay "upper" directory: a deleted path is a 0:0
character device, a directory hiding everything below it carries an opaque
xattr. Kernel overlay reads `trusted.overlay.opaque` (real root) or
`user.overlay.opaque` (mounted with `userxattr`, i.e. in a user namespace);
fuse-overlayfs 1.10 reads trusted, then user.overlay, then its own
`user.fuseoverlayfs.opaque` (older releases read only trusted and their own).
Writing all the names we are allowed to makes one layer usable by every driver.
"""

from __future__ import annotations

import errno
import os
import stat

TRUSTED_OPAQUE = "trusted.overlay.opaque"
USER_OPAQUE_XATTRS = ("user.overlay.opaque", "user.fuseoverlayfs.opaque")
OPAQUE_XATTRS = (TRUSTED_OPAQUE, *USER_OPAQUE_XATTRS)

# Xattrs that steer overlayfs or fuse-overlayfs (redirects, metacopy, faked
# owner/mode via user.containers.override_stat). A layer must never set them.
RESERVED_XATTR_PREFIXES = (
    "trusted.overlay.",
    "user.overlay.",
    "user.fuseoverlayfs.",
    "user.containers.",
)

OCI_WHITEOUT_PREFIX = ".wh."
OCI_OPAQUE_MARKER = ".wh..wh..opq"


def is_reserved_xattr(name: str) -> bool:
    return name.startswith(RESERVED_XATTR_PREFIXES)


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def make_whiteout(name: str, dir_fd: int) -> None:
    """Create the 0:0 character device that hides `name` in lower layers."""
    os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dir_fd)


def mark_opaque(fd: int) -> None:
    """Mark the open directory `fd` opaque for kernel overlay and fuse-overlayfs."""
    for name in USER_OPAQUE_XATTRS:
        os.setxattr(fd, name, b"y")
    try:
        os.setxattr(fd, TRUSTED_OPAQUE, b"y")
    except OSError as exc:
        # Only real root may write trusted.*; in a user namespace the user.*
        # names above are the ones the mount will read.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP):
            raise


def is_opaque(fd: int) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(fd, name) == b"y":
                return True
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                raise
    return False

"""Mount propagation and recursive read-only, as far as this kernel and namespace allow.

The daemon's mount namespace is private (nothing leaks to the host), so for a
bind with shared or slave propagation to mean anything, its source must sit
on a shared mount *in our namespace*: we bind the source onto itself and make
that shared, once per source, as kubelet's hosts do for Bidirectional mounts.
Mounts a container makes under an rshared bind then appear in our namespace
and in every rslave bind of the same source.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
from pathlib import Path

import structlog

from runtimed.errors import FailedPrecondition
from runtimed.snapshots import _mount

log = structlog.get_logger(__name__)

MS_BIND, MS_REC, MS_SHARED = 4096, 16384, 1 << 20
_SYS_MOUNT_SETATTR = 442  # the same on x86_64 and aarch64 (the unified syscall table)
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


@functools.cache
def rro_supported() -> bool:
    """mount_setattr(2) exists (Linux 5.12+): crun's `rro` option can work."""
    ret = _libc.syscall(_SYS_MOUNT_SETATTR, -1, b"", 0, None, 0)
    return not (ret < 0 and ctypes.get_errno() == errno.ENOSYS)


def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, optional fields) of every mount in our namespace."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ")
            if len(fields) < 7:
                continue
            optional = fields[6 : fields.index("-")] if "-" in fields else []
            out.append((_mount._unescape(fields[4]), " ".join(optional)))
    return out


def is_shared_mount(path: str) -> bool:
    for point, optional in _mountinfo():
        if point == path:
            return "shared:" in optional
    return False


def ensure_shared(source: str) -> None:
    """Make `source` a shared mount in our namespace (a self-bind of it, if need be)."""
    real = os.path.realpath(source)
    if not os.path.isdir(real) or is_shared_mount(real):
        return
    try:
        if real not in {p for p, _ in _mountinfo()}:
            _mount.mount(real, Path(real), "", "", MS_BIND | MS_REC)
        _mount.mount("", Path(real), "", "", MS_SHARED | MS_REC)
    except OSError as exc:
        raise FailedPrecondition(
            f"cannot make {real} a shared mount for shared/slave propagation: {exc.strerror or exc}"
        ) from None
    log.info("propagation_source_shared", path=real)

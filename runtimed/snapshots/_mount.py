"""mount(2), umount2(2) and the fsopen(2) family through ctypes.

We call the syscalls rather than the `mount` binary: no process per
container start, the real errno to explain failures, and the new mount API
(fsopen/fsconfig/fsmount/move_mount, Linux 5.2+) for overlay's `lowerdir+`
option (Linux 6.5+), which adds one lower layer per call and so lifts the
one-page limit that mount(2) puts on the whole option string.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long

MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# The fsopen family got the same numbers on every architecture but alpha.
_SYS_MOVE_MOUNT, _SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 429, 430, 431, 432
_FSOPEN_CLOEXEC = 1
_FSCONFIG_SET_FLAG, _FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 0, 1, 6
_FSMOUNT_CLOEXEC = 1
_MOVE_MOUNT_F_EMPTY_PATH = 4
_AT_FDCWD = -100


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def mount(source: str, target: Path, fstype: str, data: str, flags: int = 0) -> None:
    _check(
        _libc.mount(source.encode(), os.fsencode(target), fstype.encode(), flags, data.encode()),
        f"mount {fstype} on {target}",
    )


def umount(target: Path, flags: int = UMOUNT_NOFOLLOW) -> None:
    _check(_libc.umount2(os.fsencode(target), flags), f"umount {target}")


def _syscall(*args: object) -> int:
    return int(_libc.syscall(*args))


def mount_fs_context(
    fstype: str, target: Path, strings: list[tuple[str, str]], flags: list[str]
) -> None:
    """Mount with the new API: each option is set on its own, in order."""
    fd = _check(_syscall(_SYS_FSOPEN, fstype.encode(), _FSOPEN_CLOEXEC), f"fsopen {fstype}")
    try:
        for key, value in strings:
            _check(
                _syscall(
                    _SYS_FSCONFIG, fd, _FSCONFIG_SET_STRING, key.encode(), os.fsencode(value), 0
                ),
                f"fsconfig {key}={value}",
            )
        for key in flags:
            _check(
                _syscall(_SYS_FSCONFIG, fd, _FSCONFIG_SET_FLAG, key.encode(), None, 0),
                f"fsconfig {key}",
            )
        _check(_syscall(_SYS_FSCONFIG, fd, _FSCONFIG_CMD_CREATE, None, None, 0), "fsconfig create")
        mfd = _check(_syscall(_SYS_FSMOUNT, fd, _FSMOUNT_CLOEXEC, 0), "fsmount")
        try:
            _check(
                _syscall(
                    _SYS_MOVE_MOUNT,
                    mfd,
                    b"",
                    _AT_FDCWD,
                    os.fsencode(target),
                    _MOVE_MOUNT_F_EMPTY_PATH,
                ),
                f"move_mount to {target}",
            )
        finally:
            os.close(mfd)
    finally:
        os.close(fd)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and i + 4 <= len(field):
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return [_unescape(line.split(" ", 5)[4]) for line in f if line.strip()]


def is_mounted(path: Path) -> bool:
    return os.path.realpath(path) in mount_points()

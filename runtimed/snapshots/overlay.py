"""Native kernel overlayfs snapshots (the default inside the daemon's user namespace)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import structlog

from runtimed.errors import FailedPrecondition
from runtimed.rootless.userns import is_rootless
from runtimed.snapshots import _mount
from runtimed.snapshots.base import (
    DiskUsage,
    check_key,
    check_lowers,
    copy_root_attrs,
    remove_tree,
    tree_usage,
)

log = structlog.get_logger(__name__)

# mount(2) copies at most one page of option data.
_MOUNT_DATA_MAX = os.sysconf("SC_PAGE_SIZE") - 1


class LayeredMount:
    """Life cycle shared by the mount-based snapshotters.

    Layout: <root>/<name>/<key>/{upper,work,merged}.
    """

    name = "layered"

    def __init__(self, root: Path) -> None:
        self.base = root / self.name

    def _dirs(self, key: str) -> tuple[Path, Path, Path]:
        check_key(key)
        snap = self.base / key
        return snap / "upper", snap / "work", snap / "merged"

    def upper_dir(self, key: str) -> Path:
        """What the snapshot wrote on top of its layers (overlay's upper directory)."""
        return self._dirs(key)[0]

    def mount(self, key: str, lowers: list[Path]) -> Path:
        upper, work, merged = self._dirs(key)
        if _mount.is_mounted(merged):
            return merged
        layers = check_lowers(lowers, for_options=True)
        if not layers:
            # overlay needs a lower layer; an image with none gets an empty one.
            empty = upper.parent / "empty"
            empty.mkdir(parents=True, exist_ok=True)
            layers = [empty]
        fresh = not upper.exists()
        for d in (upper, work, merged):
            d.mkdir(parents=True, exist_ok=True)
        if fresh:
            copy_root_attrs(layers[0], upper)
        self._mount(layers, upper, work, merged)
        log.info("snapshot_mounted", driver=self.name, key=key, layers=len(layers))
        return merged

    def _mount(self, lowers: list[Path], upper: Path, work: Path, merged: Path) -> None:
        raise NotImplementedError

    def unmount(self, key: str) -> None:
        _, _, merged = self._dirs(key)
        if not _mount.is_mounted(merged):
            return
        try:
            _mount.umount(merged)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                # A straggler holds it open; detach now, the kernel frees it later.
                log.warning("snapshot_busy_detached", driver=self.name, key=key)
                _mount.umount(merged, _mount.MNT_DETACH | _mount.UMOUNT_NOFOLLOW)
            elif exc.errno == errno.EPERM:
                self._unprivileged_unmount(merged, exc)
            elif exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise
        log.info("snapshot_unmounted", driver=self.name, key=key)

    def _unprivileged_unmount(self, merged: Path, exc: OSError) -> None:
        raise FailedPrecondition(
            f"cannot unmount {merged}: {exc.strerror}; snapshots must be managed from the "
            "daemon's user and mount namespace"
        )

    def remove(self, key: str) -> None:
        self.unmount(key)
        remove_tree(self.base / key)

    def usage(self, key: str) -> DiskUsage:
        upper, _, _ = self._dirs(key)
        return tree_usage(upper)


class OverlaySnapshotter(LayeredMount):
    name = "overlay"

    def _mount(self, lowers: list[Path], upper: Path, work: Path, merged: Path) -> None:
        # In a user namespace overlay must keep its bookkeeping in user.overlay.*
        # xattrs (trusted.* is out of reach); unpack writes both.
        flags = ["userxattr"] if is_rootless() else []
        legacy = ",".join(
            [f"lowerdir={':'.join(map(str, lowers))}", f"upperdir={upper}", f"workdir={work}"]
            + flags
        )
        try:
            if len(os.fsencode(legacy)) <= _MOUNT_DATA_MAX:
                _mount.mount("overlay", merged, "overlay", legacy)
            else:
                strings = [("source", "overlay")]
                strings += [("lowerdir+", str(p)) for p in lowers]
                strings += [("upperdir", str(upper)), ("workdir", str(work))]
                _mount.mount_fs_context("overlay", merged, strings, flags)
        except OSError as exc:
            raise FailedPrecondition(self._explain(exc, lowers, len(legacy))) from None

    @staticmethod
    def _explain(exc: OSError, lowers: list[Path], length: int) -> str:
        if exc.errno == errno.EPERM:
            return (
                f"native overlay mount refused ({exc}): it needs root in the daemon's user "
                "namespace or real root; start runtimed normally (it enters its own user "
                "namespace) or choose the fuse-overlayfs or vfs storage driver"
            )
        if length > _MOUNT_DATA_MAX and exc.errno in (errno.ENOSYS, errno.EINVAL):
            return (
                f"native overlay mount failed ({exc}): {len(lowers)} layers need a "
                f"{length}-byte lowerdir option, over the kernel's {_MOUNT_DATA_MAX}-byte "
                "limit, and this kernel lacks overlay's lowerdir+ option (Linux 6.5+); use "
                "the fuse-overlayfs or vfs storage driver for this image"
            )
        return f"native overlay mount failed ({exc}); try the fuse-overlayfs or vfs storage driver"

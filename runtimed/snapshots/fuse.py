"""fuse-overlayfs snapshots, for kernels or setups where native overlay is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from runtimed.errors import FailedPrecondition
from runtimed.snapshots import _mount
from runtimed.snapshots.overlay import LayeredMount

FUSE_OVERLAYFS = "/usr/bin/fuse-overlayfs"
_TIMEOUT = 60.0


def fuse_unusable_reason(binary: str = FUSE_OVERLAYFS) -> str | None:
    """Why fuse-overlayfs cannot work here, or None if it can."""
    if not (os.access(binary, os.X_OK) or shutil.which(binary)):
        return f"{binary} is not installed (Debian: apt-get install fuse-overlayfs)"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        return f"/dev/fuse cannot be opened ({exc.strerror}); it must be mode 0666"
    return None


class FuseOverlaySnapshotter(LayeredMount):
    name = "fuse-overlayfs"

    def __init__(self, root: Path, binary: str = FUSE_OVERLAYFS) -> None:
        super().__init__(root)
        self.binary = binary

    def _mount(self, lowers: list[Path], upper: Path, work: Path, merged: Path) -> None:
        reason = fuse_unusable_reason(self.binary)
        if reason:
            raise FailedPrecondition(f"fuse-overlayfs storage driver unavailable: {reason}")
        opts = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
        # fuse-overlayfs forks into the background once the mount is live.
        proc = subprocess.run(
            [self.binary, "-o", opts, str(merged)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0 or not _mount.is_mounted(merged):
            detail = proc.stderr.strip() or f"exit status {proc.returncode}"
            raise FailedPrecondition(
                f"fuse-overlayfs could not mount {merged}: {detail}; it needs root in the "
                "daemon's user namespace (or fusermount3) and a usable /dev/fuse"
            )

    def _unprivileged_unmount(self, merged: Path, exc: OSError) -> None:
        # Mounted through the setuid fusermount3 helper: only it may unmount.
        proc = subprocess.run(
            ["fusermount3", "-u", str(merged)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0:
            raise FailedPrecondition(
                f"cannot unmount {merged}: {exc.strerror}; fusermount3 said: {proc.stderr.strip()}"
            )

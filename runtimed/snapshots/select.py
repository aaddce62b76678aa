"""Choosing a snapshotter by name, or by probing what this host allows."""

from __future__ import annotations

import tempfile
from pathlib import Path

import structlog

from runtimed.errors import FailedPrecondition, InvalidArgument
from runtimed.snapshots import _mount
from runtimed.snapshots.base import Snapshotter, remove_tree
from runtimed.snapshots.fuse import FuseOverlaySnapshotter, fuse_unusable_reason
from runtimed.snapshots.overlay import OverlaySnapshotter
from runtimed.snapshots.vfs import VfsSnapshotter

log = structlog.get_logger(__name__)

NAMES = ("overlay", "fuse-overlayfs", "vfs", "auto")


def probe_native_overlay(root: Path) -> str | None:
    """Mount a tiny overlay under `root`; None if it works, else why not."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".probe-", dir=root))
    snap = OverlaySnapshotter(tmp)
    try:
        lower = tmp / "lower"
        lower.mkdir()
        (lower / "probe").write_text("ok")
        try:
            merged = snap.mount("probe", [lower])
        except FailedPrecondition as exc:
            return exc.message
        try:
            if (merged / "probe").read_text() != "ok":
                return "an overlay mount did not show its lower layer"
        finally:
            snap.unmount("probe")
        return None
    finally:
        if not _mount.is_mounted(tmp / "overlay" / "probe" / "merged"):
            remove_tree(tmp)


def select_snapshotter(name: str, root: Path) -> Snapshotter:
    """The snapshotter called `name` keeping its state under `root`/<name>."""
    if name == "overlay":
        return OverlaySnapshotter(root)
    if name == "fuse-overlayfs":
        reason = fuse_unusable_reason()
        if reason:
            raise FailedPrecondition(f"fuse-overlayfs storage driver unavailable: {reason}")
        return FuseOverlaySnapshotter(root)
    if name == "vfs":
        return VfsSnapshotter(root)
    if name != "auto":
        raise InvalidArgument(f"unknown storage driver {name!r}: choose one of {', '.join(NAMES)}")
    overlay_reason = probe_native_overlay(root)
    if overlay_reason is None:
        log.info("snapshotter_selected", driver="overlay", reason="native overlay mount works")
        return OverlaySnapshotter(root)
    fuse_reason = fuse_unusable_reason()
    if fuse_reason is None:
        log.info(
            "snapshotter_selected",
            driver="fuse-overlayfs",
            reason=f"native overlay unusable: {overlay_reason}",
        )
        return FuseOverlaySnapshotter(root)
    log.warning(
        "snapshotter_selected",
        driver="vfs",
        reason=f"native overlay unusable: {overlay_reason}; fuse-overlayfs unusable: {fuse_reason}",
    )
    return VfsSnapshotter(root)

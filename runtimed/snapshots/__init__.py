"""Writable container root filesystems built from unpacked layers."""

from runtimed.snapshots.base import DiskUsage, Snapshotter
from runtimed.snapshots.fuse import FuseOverlaySnapshotter
from runtimed.snapshots.overlay import OverlaySnapshotter
from runtimed.snapshots.select import select_snapshotter
from runtimed.snapshots.vfs import VfsSnapshotter

__all__ = [
    "DiskUsage",
    "FuseOverlaySnapshotter",
    "OverlaySnapshotter",
    "Snapshotter",
    "VfsSnapshotter",
    "select_snapshotter",
]

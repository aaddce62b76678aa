"""Snapshotters: the merged root honours whiteouts and opaque dirs, writes stay
in the snapshot, and unmount/remove leave neither mounts nor directories."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from runtimed.errors import FailedPrecondition, InvalidArgument
from runtimed.images.unpack import unpack_layer
from runtimed.snapshots import (
    FuseOverlaySnapshotter,
    OverlaySnapshotter,
    Snapshotter,
    VfsSnapshotter,
    select_snapshotter,
)
from runtimed.snapshots._mount import mount_points
from runtimed.snapshots.fuse import fuse_unusable_reason
from tests.unit._userns import real_root, run_scenario, skip_scenario
from tests.unit.test_unpack import d, f, hard, sym, tar

DRIVERS: dict[str, Callable[[Path], Snapshotter]] = {
    "overlay": OverlaySnapshotter,
    "fuse-overlayfs": FuseOverlaySnapshotter,
    "vfs": VfsSnapshotter,
}


def _unpack(base: Path, name: str, raw: bytes) -> Path:
    blob, dest = base / f"{name}.tar", base / "layers" / name
    blob.write_bytes(raw)
    dest.mkdir(parents=True)
    unpack_layer(blob, dest)
    return dest


def _two_layers(base: Path) -> list[Path]:
    """Top-most first: the upper one deletes `gone` and makes `dir` opaque."""
    lower = _unpack(
        base,
        "lower",
        tar(
            f("keep", b"lower keep"),
            f("gone", b"g"),
            d("dir/"),
            f("dir/old", b"o"),
            f("dir/also", b"a"),
            d("data/"),
            f("data/x", b"x"),
            sym("link", "keep"),
            f("owned", b"o", uid=1000, gid=1000),
            f("bin/busybox", b"bb", mode=0o755),
            hard("bin/true", "bin/busybox"),
        ),
    )
    upper = _unpack(
        base,
        "upper",
        tar(
            d("./", mode=0o711),
            f(".wh.gone"),
            d("dir/"),
            f("dir/.wh..wh..opq"),
            f("dir/new", b"n"),
            f("added", b"a"),
        ),
    )
    return [upper, lower]


def _mounts_under(path: Path) -> list[str]:
    prefix = os.path.realpath(path) + "/"
    return [m for m in mount_points() if m.startswith(prefix)]


def scenario_driver(tmp: str, driver: str) -> None:
    base = Path(tmp)
    if driver == "fuse-overlayfs" and (reason := fuse_unusable_reason()):
        skip_scenario(reason)
    layers = _two_layers(base)
    if real_root() and driver != "overlay":
        # Serve the layer as a user namespace would have unpacked it: only the
        # user.* opaque markers (kernel overlay reads them only with userxattr).
        os.removexattr(layers[0] / "dir", "trusted.overlay.opaque")
    root = base / "snapshots"
    snap: Snapshotter = DRIVERS[driver](root)
    mounted = driver != "vfs"

    merged = snap.mount("c1", layers)

    assert sorted(os.listdir(merged)) == ["added", "bin", "data", "dir", "keep", "link", "owned"]
    assert os.listdir(merged / "dir") == ["new"]
    assert (merged / "keep").read_text() == "lower keep"
    assert (merged / "link").read_text() == "lower keep"
    assert (merged / "owned").stat().st_uid == 1000
    assert os.path.samefile(merged / "bin/true", merged / "bin/busybox")
    assert stat.S_IMODE(merged.stat().st_mode) == 0o711  # the image's root, not ours
    assert snap.mount("c1", layers) == merged  # idempotent
    assert _mounts_under(root) == ([str(merged)] if mounted else [])
    if driver == "overlay" and not real_root():
        info = Path("/proc/self/mountinfo").read_text().splitlines()
        opts = next(line for line in info if f" {merged} " in line)
        assert "userxattr" in opts, opts

    (merged / "written").write_text("w")
    (merged / "keep").write_text("changed")
    os.unlink(merged / "data/x")

    upper, lower = layers
    assert (lower / "keep").read_text() == "lower keep"
    assert (lower / "data/x").exists()
    assert not (upper / "written").exists() and not (lower / "written").exists()
    if mounted:
        diff = root / driver / "c1" / "upper"
        assert (diff / "written").read_text() == "w"
        assert (diff / "keep").read_text() == "changed"
        st = (diff / "data/x").lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        # written, keep, data/ (copied up) and the whiteout data/x
        usage = snap.usage("c1")
        assert (usage.bytes, usage.inodes) == (len("w") + len("changed"), 4)
        assert usage.allocated >= 2 * 512  # a block for each file, at least
    else:
        # added, bin/busybox (+ its hardlink), dir/new, keep, link -> "keep", owned, written;
        # inodes: those 7, bin/, data/ (its x deleted) and dir/
        usage = snap.usage("c1")
        assert (usage.bytes, usage.inodes) == (1 + 2 + 1 + len("changed") + len("keep") + 1 + 1, 10)
        assert usage.allocated >= 7 * 512

    snap.unmount("c1")
    snap.unmount("c1")
    assert _mounts_under(root) == []
    if mounted:
        assert os.listdir(merged) == []
        assert (snap.mount("c1", layers) / "written").read_text() == "w"  # upper survives

    snap.remove("c1")
    snap.remove("c1")
    assert _mounts_under(root) == []
    assert not (root / driver / "c1").exists()
    assert (lower / "keep").read_text() == "lower keep"  # removal never reached a layer


@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_driver_merges_layers_and_cleans_up(tmp_path: Path, driver: str) -> None:
    if driver == "fuse-overlayfs" and (reason := fuse_unusable_reason()):
        pytest.skip(f"fuse-overlayfs unusable as this user: {reason}")
    run_scenario(__file__, "scenario_driver", str(tmp_path), driver)


def scenario_many_layers(tmp: str) -> None:
    """More lowerdirs than fit in one page of mount options."""
    base = Path(tmp)
    layers = []
    for i in range(40):
        layers.append(_unpack(base, f"layer{i:02d}-" + "x" * 110, tar(f(f"file{i}", b"%d" % i))))
    root = base / "snapshots"
    assert sum(len(str(p)) + 1 for p in layers) > os.sysconf("SC_PAGE_SIZE")
    snap = OverlaySnapshotter(root)
    merged = snap.mount("big", list(reversed(layers)))
    assert sorted(os.listdir(merged)) == sorted(f"file{i}" for i in range(40))
    snap.remove("big")
    assert _mounts_under(root) == []

    chosen = select_snapshotter("auto", root)
    assert chosen.name == "overlay"
    assert os.listdir(root) == ["overlay"] and os.listdir(root / "overlay") == []


def test_overlay_mounts_more_layers_than_a_page_holds(tmp_path: Path) -> None:
    run_scenario(__file__, "scenario_many_layers", str(tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="real root may mount overlay")
def test_overlay_outside_a_user_namespace_is_a_clear_failed_precondition(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    with pytest.raises(FailedPrecondition, match="user namespace"):
        OverlaySnapshotter(tmp_path / "snaps").mount("c1", [layer])
    assert _mounts_under(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="real root may mount overlay")
def test_auto_falls_back_without_overlay_and_leaves_no_probe(tmp_path: Path) -> None:
    expected = "vfs" if fuse_unusable_reason() else "fuse-overlayfs"
    assert select_snapshotter("auto", tmp_path).name == expected
    assert [n for n in os.listdir(tmp_path) if n.startswith(".probe")] == []


def test_unknown_driver_and_bad_keys_are_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="overlay, fuse-overlayfs, vfs, auto"):
        select_snapshotter("aufs", tmp_path)
    for key in ("../escape", "", "a/b", ".hidden"):
        with pytest.raises(InvalidArgument, match="snapshot key"):
            VfsSnapshotter(tmp_path).mount(key, [])
    assert os.listdir(tmp_path) == []

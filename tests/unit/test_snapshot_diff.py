"""Container diffs: docker diff's list, and a layer tar that reproduces the container's tree
on top of its image, for the overlay (upper dir) and vfs (tree comparison) drivers."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from runtimed.images.unpack import unpack_layer
from runtimed.snapshots import OverlaySnapshotter, Snapshotter, VfsSnapshotter, diff
from tests.unit._userns import run_scenario
from tests.unit.test_snapshots import _two_layers

DRIVERS = {"overlay": OverlaySnapshotter, "vfs": VfsSnapshotter}


def _tree(root: Path) -> dict[str, tuple[int, int, int, bytes | str | None]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                content: bytes | str | None = path.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            else:
                content = None
            out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, content)
    return out


def scenario_round_trip(tmp: str, driver: str) -> None:
    base = Path(tmp)
    layers = _two_layers(base)
    snap: Snapshotter = DRIVERS[driver](base / "snapshots")
    merged = snap.mount("c1", layers)
    # What a container does: add, change, delete, replace a directory, chmod, chown.
    (merged / "keep").write_text("changed")
    os.unlink(merged / "link")
    shutil.rmtree(merged / "data")
    (merged / "data").mkdir()
    (merged / "data" / "fresh").write_text("fresh")
    (merged / "newdir" / "deep").mkdir(parents=True)
    (merged / "newdir" / "deep" / "f").write_text("f")
    os.link(merged / "newdir" / "deep" / "f", merged / "newdir" / "hard")
    os.chmod(merged / "owned", 0o600)
    os.chown(merged / "added", 1000, 1000)
    os.mkdir(merged / "proc")  # a mount point the runtime made: not a change
    ignore = frozenset({("proc",)})

    listed = diff.changes(snap, "c1", layers, ignore)
    text = [f"{c.kind} {c.path}" for c in listed]
    if driver == "overlay":
        assert text == [
            "C /added",
            "D /data",
            "A /data/fresh",
            "C /keep",
            "D /link",
            "A /newdir",
            "A /newdir/deep",
            "A /newdir/deep/f",
            "A /newdir/hard",
            "C /owned",
        ], text
    else:
        assert text == [
            "C /added",
            "C /data",
            "A /data/fresh",
            "D /data/x",
            "C /keep",
            "D /link",
            "A /newdir",
            "A /newdir/deep",
            "A /newdir/deep/f",
            "A /newdir/hard",
            "C /owned",
        ], text

    blob = base / "layer.tar"
    with blob.open("wb") as out:
        count = diff.write_diff_tar(snap, "c1", layers, ignore, out)
    assert count > 0
    new_layer = base / "layers" / "committed"
    new_layer.mkdir()
    unpack_layer(blob, new_layer)
    expected = _tree(merged)
    del expected["proc"]
    again = OverlaySnapshotter(base / "check").mount("c2", [new_layer, *layers])
    got = _tree(again)
    # Directory mtimes move with every change below them; everything else must match.
    assert {k: v for k, v in got.items()} == expected
    assert os.path.samefile(again / "newdir" / "hard", again / "newdir" / "deep" / "f")
    OverlaySnapshotter(base / "check").remove("c2")

    export = base / "export.tar"
    with export.open("wb") as out:
        diff.write_tree_tar(merged, out)
    flat = base / "flat"
    flat.mkdir()
    unpack_layer(export, flat)
    assert _tree(flat) == _tree(merged)
    snap.remove("c1")


@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_diff_round_trips_through_a_layer(tmp_path: Path, driver: str) -> None:
    run_scenario(__file__, "scenario_round_trip", str(tmp_path), driver)


@pytest.mark.parametrize("now", [b"", b"x" * 50, b"y" * 150, b"z" * (3 << 20)])
def test_a_file_that_changed_size_is_cut_or_zero_padded_to_its_header(
    tmp_path: Path, now: bytes
) -> None:
    size = 100
    path = tmp_path / "f"
    path.write_bytes(now)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|") as tar, path.open("rb", buffering=0) as f:
        tar.copybufsize = 16  # type: ignore[attr-defined]  # many reads, some short
        info = tarfile.TarInfo("f")
        info.size = size
        tar.addfile(info, diff.ExactReader(f.fileno(), size))  # type: ignore[arg-type]
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        member = tar.extractfile("f")
        assert member is not None
        assert member.read() == now[:size].ljust(size, b"\0")

"""Copy-up: an image directory's files, links, modes and owners land in an empty volume,
nothing is followed out of either side, and a volume with data is left alone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from runtimed.volumes.copyup import copy_up
from tests.unit._userns import run_scenario


def _image(root: Path) -> None:
    data = root / "srv" / "data"
    (data / "sub").mkdir(parents=True)
    (data / "file").write_text("payload")
    os.chmod(data / "file", 0o640)
    (data / "sub" / "deep").write_text("deep")
    os.link(data / "file", data / "hard")
    os.symlink("/etc/passwd", data / "abs-link")  # must stay a link, not become host data
    os.mkfifo(data / "pipe")
    os.chmod(data, 0o750)
    os.utime(data / "file", (1_000_000, 1_000_000))
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("image passwd\n")
    os.symlink("../../../../../etc", root / "escape")


def test_copy_up_copies_tree_links_and_modes(tmp_path: Path) -> None:
    root, volume = tmp_path / "rootfs", tmp_path / "vol"
    _image(root)
    volume.mkdir()
    assert copy_up(root, "/srv/data", volume)
    assert (volume / "file").read_text() == "payload"
    assert stat.S_IMODE((volume / "file").stat().st_mode) == 0o640
    assert (volume / "file").stat().st_mtime == 1_000_000
    assert (volume / "sub" / "deep").read_text() == "deep"
    assert (volume / "hard").stat().st_ino == (volume / "file").stat().st_ino
    assert os.readlink(volume / "abs-link") == "/etc/passwd"
    assert stat.S_ISFIFO((volume / "pipe").lstat().st_mode)
    # The volume's root takes the image directory's mode.
    assert stat.S_IMODE(volume.stat().st_mode) == 0o750


def test_copy_up_leaves_data_and_missing_paths_alone(tmp_path: Path) -> None:
    root, volume = tmp_path / "rootfs", tmp_path / "vol"
    _image(root)
    volume.mkdir()
    (volume / "mine").write_text("keep")
    assert not copy_up(root, "/srv/data", volume)
    assert sorted(os.listdir(volume)) == ["mine"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not copy_up(root, "/no/such/dir", empty)
    assert not copy_up(root, "/srv/data/file", empty)  # a file: nothing to copy into a dir
    assert os.listdir(empty) == []


def test_copy_up_resolves_links_inside_the_image(tmp_path: Path) -> None:
    root, volume = tmp_path / "rootfs", tmp_path / "vol"
    _image(root)
    volume.mkdir()
    # /escape -> ../../../../../etc resolves to the image's /etc, never the host's.
    assert copy_up(root, "/escape", volume)
    assert (volume / "passwd").read_text() == "image passwd\n"


def scenario_owners(scratch: str) -> None:
    root, volume = Path(scratch) / "rootfs", Path(scratch) / "vol"
    home = root / "home" / "app"
    (home / ".config").mkdir(parents=True)
    (home / ".config" / "rc").write_text("x")
    for path in (home, home / ".config", home / ".config" / "rc"):
        os.chown(path, 1000, 1000)
    os.symlink("rc", home / ".config" / "link")
    os.chown(home / ".config" / "link", 1001, 1001, follow_symlinks=False)
    os.chmod(home, 0o700)
    volume.mkdir()
    assert copy_up(root, "/home/app", volume)
    assert (volume.stat().st_uid, volume.stat().st_gid) == (1000, 1000)
    assert stat.S_IMODE(volume.stat().st_mode) == 0o700
    assert (volume / ".config" / "rc").stat().st_uid == 1000
    assert (volume / ".config").stat().st_gid == 1000
    assert (volume / ".config" / "link").lstat().st_uid == 1001


def test_copy_up_keeps_owners(tmp_path: Path) -> None:
    # Real root owns every id already; anyone else needs a subordinate range to chown.
    run_scenario(__file__, "scenario_owners", str(tmp_path), userns=os.geteuid() != 0)

"""Layer unpacking: formats, metadata, overlay whiteouts, and hostile tarballs."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from runtimed.errors import DataLoss, FailedPrecondition, InvalidArgument
from runtimed.images.unpack import unpack_layer
from tests.unit._userns import real_root, run_scenario

MTIME = 1_600_000_000
Member = tuple[tarfile.TarInfo, bytes | None]


def _info(name: str, kind: bytes, *, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = MTIME
    return info


def f(
    name: str,
    data: bytes = b"",
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    xattrs: dict[str, str] | None = None,
) -> Member:
    info = _info(name, tarfile.REGTYPE, mode=mode, uid=uid, gid=gid)
    info.size = len(data)
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    return info, data


def d(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0, **kw: dict[str, str]) -> Member:
    info = _info(name, tarfile.DIRTYPE, mode=mode, uid=uid, gid=gid)
    if kw.get("xattrs"):
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in kw["xattrs"].items()}
    return info, None


def sym(name: str, target: str, uid: int = 0, gid: int = 0) -> Member:
    info = _info(name, tarfile.SYMTYPE, mode=0o777, uid=uid, gid=gid)
    info.linkname = target
    return info, None


def hard(name: str, target: str) -> Member:
    info = _info(name, tarfile.LNKTYPE, mode=0o644)
    info.linkname = target
    return info, None


def dev(name: str, kind: bytes, major: int, minor: int) -> Member:
    info = _info(name, kind, mode=0o666)
    info.devmajor, info.devminor = major, minor
    return info, None


def tar(*members: Member) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def compress(raw: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(raw)
    if how == "zstd":
        # Two frames, split mid-stream, as parallel compressors write them.
        cctx = zstandard.ZstdCompressor()
        half = len(raw) // 2
        return cctx.compress(raw[:half]) + cctx.compress(raw[half:])
    return raw


def diff_id(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@pytest.fixture
def env(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(blob path, empty dest, sentinel dir next to dest that must stay untouched)."""
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("untouched")
    return tmp_path / "layer.blob", dest, outside


def _outside_untouched(outside: Path) -> None:
    assert sorted(os.listdir(outside)) == ["sentinel"]
    assert (outside / "sentinel").read_text() == "untouched"
    assert (outside / "sentinel").stat().st_nlink == 1


BIG = os.urandom(3 << 20)  # crosses the 1 MiB copy chunks


def _image_like_layer() -> bytes:
    return tar(
        d("./"),
        d("./bin/"),
        f("./bin/busybox", BIG, mode=0o755),
        sym("./bin/sh", "busybox"),
        sym("./bin/ls", "/bin/busybox"),
        hard("./bin/true", "./bin/busybox"),
        d("./etc/", mode=0o751),
        f("./etc/hostname", b"box\n", mode=0o640),
        f("./usr/bin/su", b"su", mode=0o4755),  # parent dirs implied
        d("./locked/", mode=0o500),
        f("./locked/key", b"k", mode=0o400),
        dev("./fifo", tarfile.FIFOTYPE, 0, 0),
    )


@pytest.mark.parametrize("how", ["tar", "gzip", "zstd"])
def test_unpacks_files_dirs_links_with_metadata(env: tuple[Path, Path, Path], how: str) -> None:
    blob, dest, _ = env
    raw = _image_like_layer()
    blob.write_bytes(compress(raw, how))

    result = unpack_layer(blob, dest, expected_diff_id=diff_id(raw), preserve_owner=False)

    assert result.diff_id == diff_id(raw)
    assert result.size == len(BIG) + len(b"box\n") + len(b"su") + len(b"k")
    assert result.skipped == []
    assert (dest / "bin/busybox").read_bytes() == BIG
    assert os.readlink(dest / "bin/sh") == "busybox"
    assert os.readlink(dest / "bin/ls") == "/bin/busybox"
    assert os.path.samefile(dest / "bin/true", dest / "bin/busybox")
    assert (dest / "etc/hostname").read_text() == "box\n"
    assert stat.S_IMODE((dest / "etc/hostname").stat().st_mode) == 0o640
    assert stat.S_IMODE((dest / "etc").stat().st_mode) == 0o751
    assert stat.S_IMODE((dest / "usr/bin/su").stat().st_mode) == 0o4755
    assert stat.S_IMODE((dest / "locked").stat().st_mode) == 0o500
    assert (dest / "locked/key").read_text() == "k"
    assert stat.S_ISFIFO((dest / "fifo").lstat().st_mode)
    for p in ("bin/busybox", "etc", "bin", "locked", "."):
        assert (dest / p).stat().st_mtime == MTIME, p
    assert (dest / "bin/sh").lstat().st_mtime == MTIME


def test_later_entries_replace_earlier_ones(env: tuple[Path, Path, Path]) -> None:
    blob, dest, outside = env
    blob.write_bytes(
        tar(
            f("a", b"file first"),
            d("a/"),
            f("a/x", b"in dir"),
            d("b/"),
            f("b/y", b"gone with b"),
            f("b", b"file now"),
            sym("c", str(outside / "sentinel")),
            f("c", b"replaced the link, did not follow it"),
        )
    )
    unpack_layer(blob, dest, preserve_owner=False)
    assert (dest / "a/x").read_text() == "in dir"
    assert (dest / "b").read_text() == "file now"
    assert not (dest / "c").is_symlink()
    assert (dest / "c").read_text() == "replaced the link, did not follow it"
    _outside_untouched(outside)


def test_pax_xattrs_are_applied_but_overlay_ones_refused(env: tuple[Path, Path, Path]) -> None:
    blob, dest, _ = env
    blob.write_bytes(
        tar(
            f("f", b"x", xattrs={"user.comment": "hello"}),
            d("d/", xattrs={"user.overlay.opaque": "y", "user.fuseoverlayfs.opaque": "y"}),
            f("g", b"x", xattrs={"user.containers.override_stat": "0:0:04755"}),
        )
    )
    unpack_layer(blob, dest, preserve_owner=False)
    assert os.getxattr(dest / "f", "user.comment") == b"hello"
    assert os.listxattr(dest / "d") == []
    assert os.listxattr(dest / "g") == []


HOSTILE: dict[str, list[Member]] = {
    "absolute path": [f("/OUTSIDE/evil", b"x")],
    "dotdot": [f("../outside/evil", b"x")],
    "dotdot after a dir": [d("a/"), f("a/../../outside/evil", b"x")],
    "write through absolute dir symlink": [sym("a", "/OUTSIDE"), f("a/evil", b"x")],
    "write through nested dir symlink": [d("x/"), sym("x/a", "/OUTSIDE"), f("x/a/b/evil", b"x")],
    "relative symlink escaping": [d("usr/"), sym("usr/etc", "../../etc")],
    "hardlink dotdot": [hard("passwd", "../../etc/passwd")],
    "hardlink absolute": [hard("passwd", "/etc/passwd")],
    "hardlink to missing": [hard("passwd", "etc/passwd")],
    "hardlink through symlink": [sym("a", "/OUTSIDE"), hard("stolen", "a/sentinel")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layer_is_refused_and_nothing_is_kept(
    env: tuple[Path, Path, Path], case: str
) -> None:
    blob, dest, outside = env
    members = []
    for info, data in HOSTILE[case]:
        info.name = info.name.replace("/OUTSIDE", str(outside))
        info.linkname = info.linkname.replace("/OUTSIDE", str(outside))
        members.append((info, data))
    blob.write_bytes(gzip.compress(tar(f("harmless", b"written first"), *members)))

    with pytest.raises(InvalidArgument, match="layer is unsafe: entry '.*'"):
        unpack_layer(blob, dest, preserve_owner=False)

    assert os.listdir(dest) == []
    _outside_untouched(outside)


def test_device_nodes_are_skipped_not_created(env: tuple[Path, Path, Path]) -> None:
    blob, dest, _ = env
    blob.write_bytes(
        tar(
            d("dev/"),
            dev("dev/null", tarfile.CHRTYPE, 1, 3),
            dev("dev/sda", tarfile.BLKTYPE, 8, 0),
            f("dev/README", b"r"),
        )
    )
    result = unpack_layer(blob, dest, preserve_owner=False)
    assert sorted(os.listdir(dest / "dev")) == ["README"]
    assert result.skipped == ["dev/null (character device 1:3)", "dev/sda (block device 8:0)"]


def test_diff_id_mismatch_is_data_loss_and_empties_dest(env: tuple[Path, Path, Path]) -> None:
    blob, dest, _ = env
    raw = tar(d("etc/"), f("etc/a", b"a"))
    blob.write_bytes(gzip.compress(raw))
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DataLoss) as err:
        unpack_layer(blob, dest, expected_diff_id=wrong, preserve_owner=False)
    assert diff_id(raw) in err.value.message and wrong in err.value.message
    assert os.listdir(dest) == []


def test_corrupt_blob_is_invalid_and_empties_dest(env: tuple[Path, Path, Path]) -> None:
    blob, dest, _ = env
    good = gzip.compress(tar(f("a", b"a" * 10000), f("b", os.urandom(50000))))
    blob.write_bytes(good[: len(good) // 2])
    with pytest.raises(InvalidArgument, match="not a valid gzip"):
        unpack_layer(blob, dest, preserve_owner=False)
    assert os.listdir(dest) == []


# -- scenarios that need root of a user namespace ----------------------------


def scenario_whiteouts(tmp: str) -> None:
    base = Path(tmp)
    blob, dest = base / "blob", base / "dest"
    dest.mkdir()
    blob.write_bytes(
        tar(
            f(".wh.gone"),
            d("etc/"),
            f("etc/.wh.passwd"),
            d("opq/"),
            f("opq/.wh..wh..opq"),
            f("opq/new", b"n"),
            f("implied/.wh.x"),  # parent dir not in the tar
        )
    )
    unpack_layer(blob, dest)
    for wh in ("gone", "etc/passwd", "implied/x"):
        st = (dest / wh).lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, wh
    names = [n for _, _, files in os.walk(dest) for n in files]
    assert not [n for n in names if n.startswith(".wh.")], names
    assert (dest / "opq/new").read_text() == "n"
    assert os.getxattr(dest / "opq", "user.overlay.opaque") == b"y"
    assert os.getxattr(dest / "opq", "user.fuseoverlayfs.opaque") == b"y"
    if real_root():
        assert os.getxattr(dest / "opq", "trusted.overlay.opaque") == b"y"
    assert "user.overlay.opaque" not in os.listxattr(dest / "etc")


def test_whiteouts_become_char_devices_and_opaque_xattrs(tmp_path: Path) -> None:
    run_scenario(__file__, "scenario_whiteouts", str(tmp_path))


def scenario_owners(tmp: str) -> None:
    base = Path(tmp)
    blob, dest = base / "blob", base / "dest"
    dest.mkdir()
    blob.write_bytes(
        tar(
            d("home/", uid=1000, gid=1000, mode=0o700),
            f("home/file", b"x", uid=1000, gid=100),
            sym("home/link", "file", uid=1234, gid=2345),
            f("sbin/suid", b"s", uid=0, gid=0, mode=0o4755),
            f("sbin/sgid", b"s", uid=0, gid=42, mode=0o2755),
        )
    )
    unpack_layer(blob, dest)
    owner = lambda p: (p.lstat().st_uid, p.lstat().st_gid)  # noqa: E731
    assert owner(dest / "home") == (1000, 1000)
    assert owner(dest / "home/file") == (1000, 100)
    assert owner(dest / "home/link") == (1234, 2345)
    assert stat.S_IMODE((dest / "sbin/suid").stat().st_mode) == 0o4755
    assert stat.S_IMODE((dest / "sbin/sgid").stat().st_mode) == 0o2755


def test_owners_are_preserved_as_namespace_root(tmp_path: Path) -> None:
    run_scenario(__file__, "scenario_owners", str(tmp_path))


def scenario_unmapped_owner(tmp: str) -> None:
    base = Path(tmp)
    blob, dest = base / "blob", base / "dest"
    dest.mkdir()
    blob.write_bytes(tar(f("ok", b"x"), f("far", b"y", uid=3_000_000_000)))
    try:
        unpack_layer(blob, dest)
    except FailedPrecondition as exc:
        assert "/etc/subuid" in exc.message and "'far'" in exc.message, exc.message
    else:
        raise AssertionError("an unmapped owner was accepted")
    assert os.listdir(dest) == []


def test_owner_outside_the_id_mapping_names_subuid(tmp_path: Path) -> None:
    run_scenario(__file__, "scenario_unmapped_owner", str(tmp_path), userns=True)

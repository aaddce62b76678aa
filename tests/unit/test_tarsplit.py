"""Layer framing: an unpacked layer gives back its tar stream byte for byte."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from runtimed.errors import DataLoss
from runtimed.images import tarsplit
from runtimed.images.unpack import unpack_layer
from tests.support.oci import Dir, File, Hardlink, Symlink, build_tar, compress


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _roundtrip(tmp_path: Path, raw: bytes, blob: bytes) -> bytes:
    dest = tmp_path / "diff"
    dest.mkdir()
    framing = tmp_path / tarsplit.FRAMING_NAME
    src = tmp_path / "blob"
    src.write_bytes(blob)
    result = unpack_layer(src, dest, preserve_owner=False, framing=framing)
    assert result.diff_id == _digest(raw)
    assert result.tar_size == len(raw)
    assert tarsplit.tar_size(framing) == len(raw)
    return b"".join(tarsplit.rebuild(dest, framing, result.diff_id))


ENTRIES = [
    Dir("etc"),
    File("etc/passwd", b"root:x:0:0::/root:/bin/sh\n" * 100, mode=0o600),
    File("etc/empty"),
    File("big", bytes(range(256)) * 9000),  # crosses tarfile's read-ahead many times
    Symlink("etc/link", "passwd"),
    Hardlink("etc/hard", "etc/passwd"),
    Dir("deep/er/still"),
    File("deep/er/still/x", b"x" * 513),
]


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_rebuilds_the_exact_stream(tmp_path: Path, compression: str) -> None:
    raw = build_tar(ENTRIES)
    assert _roundtrip(tmp_path, raw, compress(raw, compression)) == raw  # type: ignore[arg-type]


def test_keeps_odd_framing_long_names_pax_and_trailing_blocks(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("d/" + "n" * 150)  # a GNU long-name record
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    raw = buf.getvalue() + b"\0" * 4096  # extra zero blocks after the end
    assert _roundtrip(tmp_path, raw, raw) == raw


def test_changed_file_is_detected_on_rebuild(tmp_path: Path) -> None:
    raw = build_tar(ENTRIES)
    dest = tmp_path / "diff"
    dest.mkdir()
    framing = tmp_path / tarsplit.FRAMING_NAME
    (tmp_path / "blob").write_bytes(raw)
    result = unpack_layer(tmp_path / "blob", dest, preserve_owner=False, framing=framing)
    (dest / "big").write_bytes(b"y" * (256 * 9000))
    with pytest.raises(DataLoss, match="rebuilt to"):
        b"".join(tarsplit.rebuild(dest, framing, result.diff_id))
    (dest / "big").unlink()
    with pytest.raises(DataLoss, match="missing"):
        b"".join(tarsplit.rebuild(dest, framing, result.diff_id))


def test_path_written_twice_keeps_no_framing(tmp_path: Path) -> None:
    raw = build_tar([File("a", b"first"), File("a", b"second!")], sort=False)
    dest = tmp_path / "diff"
    dest.mkdir()
    framing = tmp_path / tarsplit.FRAMING_NAME
    (tmp_path / "blob").write_bytes(raw)
    unpack_layer(tmp_path / "blob", dest, preserve_owner=False, framing=framing)
    assert (dest / "a").read_bytes() == b"second!"
    assert not framing.exists()

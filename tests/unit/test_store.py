"""Content store verification and the metadata rules images and layers follow."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtimed.errors import DataLoss, FailedPrecondition
from runtimed.images.layers import chain_ids
from runtimed.store.content import ContentStore, sha256_digest
from runtimed.store.metadata import LayerRecord, MetadataStore


def test_commit_refuses_wrong_bytes_and_keeps_nothing(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    tmp = store.new_ingest()
    tmp.write_bytes(b"hello")
    wrong = sha256_digest(b"other")
    with pytest.raises(DataLoss):
        store.commit(wrong, tmp)
    assert not store.has(wrong) and not tmp.exists()
    tmp = store.new_ingest()
    tmp.write_bytes(b"hello")
    good = sha256_digest(b"hello")
    store.commit(good, tmp)
    assert store.read_bytes(good) == b"hello"


def test_leftover_ingest_files_are_dropped_at_start(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    store.new_ingest().write_bytes(b"half a download")
    assert list(ContentStore(tmp_path).ingest_dir.iterdir()) == []


def test_chain_ids_follow_the_oci_rule() -> None:
    a, b = sha256_digest(b"a"), sha256_digest(b"b")
    chain = chain_ids([a, b])
    assert chain[0] == a
    assert chain[1] == sha256_digest(f"{a} {b}".encode())


def _layer(chain: str, parent: str | None) -> LayerRecord:
    return LayerRecord(chain, chain, parent, None, 0, 10)


def test_layers_stay_while_an_image_uses_them(tmp_path: Path) -> None:
    db = MetadataStore(tmp_path / "m.db")
    base, top = sha256_digest(b"base"), sha256_digest(b"top")
    db.add_layer(_layer(base, None))
    db.add_layer(_layer(top, base))
    img = sha256_digest(b"config")
    db.put_image(
        image_id=img,
        manifest_digest=None,
        manifest_media_type=None,
        created=None,
        size=20,
        chain_ids=[base, top],
        names=[("docker.io/library/x:1", "tag")],
    )
    assert db.unused_layers() == []
    db.delete_image(img)
    assert [layer.chain_id for layer in db.unused_layers()] == [top]  # top first
    db.delete_layer(top)
    assert [layer.chain_id for layer in db.unused_layers()] == [base]


def test_tag_moves_to_the_newer_image(tmp_path: Path) -> None:
    db = MetadataStore(tmp_path / "m.db")
    common = {
        "manifest_digest": None,
        "manifest_media_type": None,
        "created": None,
        "size": 0,
        "chain_ids": [],
    }
    old, new = sha256_digest(b"old"), sha256_digest(b"new")
    db.put_image(image_id=old, names=[("r:1", "tag")], **common)
    moved = db.put_image(image_id=new, names=[("r:1", "tag")], **common)
    assert moved == ["r:1"]
    assert db.get_image(old).tags == () and db.get_image(new).tags == ("r:1",)


def test_failed_transaction_changes_nothing(tmp_path: Path) -> None:
    db = MetadataStore(tmp_path / "m.db")
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.execute("INSERT INTO meta(key, value) VALUES('x', 'y')")
        raise RuntimeError("crash mid-way")
    with db.transaction() as tx:
        assert tx.execute("SELECT * FROM meta WHERE key='x'").fetchone() is None


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = MetadataStore(tmp_path / "m.db")
    with db.transaction() as tx:
        tx.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.close()
    with pytest.raises(FailedPrecondition, match="upgrade runtimed"):
        MetadataStore(tmp_path / "m.db")

"""SQLite metadata: images, their names and the layers they share.

Every change is one transaction (`with db.transaction() as tx:`), so a crash
leaves either the old state or the new one. Layers are keyed by chain id (the
digest of the stack below and including them), images by their config digest
(docker's image id). Reference counts are never stored: a layer is in use
while some image lists it, which a query answers.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from runtimed.errors import FailedPrecondition
from runtimed.store.sqlite import Database

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layers (
    chain_id TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    parent TEXT REFERENCES layers(chain_id),
    blob_digest TEXT,
    blob_size INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT,
    manifest_media_type TEXT,
    created TEXT,
    size INTEGER NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    chain_id TEXT NOT NULL REFERENCES layers(chain_id),
    PRIMARY KEY (image_id, position)
);
CREATE TABLE IF NOT EXISTS image_names (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('tag', 'digest')),
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    added_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS image_names_by_image ON image_names(image_id);
-- The image a committed (or built) one was made from, as docker records it: a parent
-- with children is only untagged by rmi, and an untagged parent goes with its last child.
CREATE TABLE IF NOT EXISTS image_parents (
    image_id TEXT PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    parent TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS image_parents_by_parent ON image_parents(parent);
-- Sandboxes (CRI pods, and the implicit one of each docker-style container) and
-- containers: immutable config and mutable state kept apart, as JSON documents.
CREATE TABLE IF NOT EXISTS sandboxes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),
    image_id TEXT NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS containers_by_image ON containers(image_id);
CREATE INDEX IF NOT EXISTS image_layers_by_chain ON image_layers(chain_id);
-- Where a blob is known to exist remotely (pulled from or pushed to), so a push
-- to another repository of the same registry can mount it instead of uploading.
CREATE TABLE IF NOT EXISTS blob_sources (
    digest TEXT NOT NULL,
    registry TEXT NOT NULL,
    repository TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (digest, registry, repository)
);
"""


@dataclass(frozen=True)
class LayerRecord:
    chain_id: str
    diff_id: str
    parent: str | None
    blob_digest: str | None
    blob_size: int
    size: int


@dataclass(frozen=True)
class ImageRecord:
    id: str
    manifest_digest: str | None
    manifest_media_type: str | None
    created: str | None
    size: int
    added_at: float
    tags: tuple[str, ...]
    digests: tuple[str, ...]
    chain_ids: tuple[str, ...]


class MetadataStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._database = Database(path, schema=_SCHEMA, named_rows=True, foreign_keys=True)
        self._db = self._database.conn
        self._lock = self._database.lock
        self.fetchall = self._database.fetchall
        self.transaction = self._database.transaction
        self.removal = self._database.removal
        self._check_version()

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row["value"]) > SCHEMA_VERSION:
            raise FailedPrecondition(
                f"metadata in {self.path} has schema {row['value']}, newer than this runtimed "
                f"understands ({SCHEMA_VERSION}): upgrade runtimed"
            )

    def close(self) -> None:
        self._db.close()

    # -- layers --------------------------------------------------------------

    def get_layer(self, chain_id: str) -> LayerRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM layers WHERE chain_id=?", (chain_id,)).fetchone()
        return _layer(row) if row else None

    def add_layer(self, layer: LayerRecord) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT OR IGNORE INTO layers(chain_id, diff_id, parent, blob_digest, blob_size,"
                " size, created_at) VALUES(?,?,?,?,?,?,?)",
                (
                    layer.chain_id,
                    layer.diff_id,
                    layer.parent,
                    layer.blob_digest,
                    layer.blob_size,
                    layer.size,
                    time.time(),
                ),
            )

    def layers(self) -> list[LayerRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM layers").fetchall()
        return [_layer(r) for r in rows]

    def unused_layers(self) -> list[LayerRecord]:
        """Layers no image lists and no other layer stacks on, top-most first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM layers l WHERE NOT EXISTS"
                " (SELECT 1 FROM image_layers il WHERE il.chain_id = l.chain_id)"
                " AND NOT EXISTS (SELECT 1 FROM layers c WHERE c.parent = l.chain_id)"
            ).fetchall()
        return [_layer(r) for r in rows]

    def delete_layer(self, chain_id: str) -> None:
        self.removal(lambda tx: tx.execute("DELETE FROM layers WHERE chain_id=?", (chain_id,)))

    def blob_in_use(self, digest: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM layers WHERE blob_digest=? UNION ALL"
                " SELECT 1 FROM images WHERE id=? OR manifest_digest=? LIMIT 1",
                (digest, digest, digest),
            ).fetchone()
        return row is not None

    # -- images --------------------------------------------------------------

    def put_image(
        self,
        *,
        image_id: str,
        manifest_digest: str | None,
        manifest_media_type: str | None,
        created: str | None,
        size: int,
        chain_ids: list[str],
        names: list[tuple[str, str]],
        parent: str | None = None,
    ) -> list[str]:
        """Record an image and point names at it; returns the names moved off another image.

        `names` are (name, kind) pairs; a tag that named another image moves
        here, leaving that image dangling, as `docker pull` does.
        """
        now = time.time()
        with self.transaction() as tx:
            exists = tx.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone()
            if exists:
                tx.execute(
                    "UPDATE images SET manifest_digest=coalesce(?, manifest_digest),"
                    " manifest_media_type=coalesce(?, manifest_media_type) WHERE id=?",
                    (manifest_digest, manifest_media_type, image_id),
                )
            else:
                tx.execute(
                    "INSERT INTO images(id, manifest_digest, manifest_media_type, created, size,"
                    " added_at) VALUES(?,?,?,?,?,?)",
                    (image_id, manifest_digest, manifest_media_type, created, size, now),
                )
                tx.executemany(
                    "INSERT INTO image_layers(image_id, position, chain_id) VALUES(?,?,?)",
                    [(image_id, i, c) for i, c in enumerate(chain_ids)],
                )
                if parent:
                    tx.execute(
                        "INSERT INTO image_parents(image_id, parent) VALUES(?,?)",
                        (image_id, parent),
                    )
            moved = []
            for name, kind in names:
                row = tx.execute(
                    "SELECT image_id FROM image_names WHERE name=?", (name,)
                ).fetchone()
                if row and row["image_id"] != image_id:
                    moved.append(name)
                tx.execute(
                    "INSERT INTO image_names(name, kind, image_id, added_at) VALUES(?,?,?,?)"
                    " ON CONFLICT(name) DO UPDATE SET image_id=excluded.image_id,"
                    " kind=excluded.kind, added_at=excluded.added_at",
                    (name, kind, image_id, now),
                )
        return moved

    def set_name(self, name: str, kind: str, image_id: str) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO image_names(name, kind, image_id, added_at) VALUES(?,?,?,?)"
                " ON CONFLICT(name) DO UPDATE SET image_id=excluded.image_id,"
                " added_at=excluded.added_at",
                (name, kind, image_id, time.time()),
            )

    def remove_name(self, name: str) -> None:
        self.removal(lambda tx: tx.execute("DELETE FROM image_names WHERE name=?", (name,)))

    def image_for_name(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT image_id FROM image_names WHERE name=?", (name,)
            ).fetchone()
        return row["image_id"] if row else None

    def images_with_prefix(self, hex_prefix: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM images WHERE id LIKE ?", (f"sha256:{hex_prefix}%",)
            ).fetchall()
        return [r["id"] for r in rows]

    def get_image(self, image_id: str) -> ImageRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM images WHERE id=?", (image_id,)).fetchone()
            if row is None:
                return None
            return self._image(row)

    def list_images(self) -> list[ImageRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM images ORDER BY added_at DESC").fetchall()
            return [self._image(r) for r in rows]

    def parent_of(self, image_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT parent FROM image_parents WHERE image_id=?", (image_id,)
            ).fetchone()
        return row["parent"] if row else None

    def children_of(self, image_id: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT image_id FROM image_parents WHERE parent=? ORDER BY image_id", (image_id,)
            ).fetchall()
        return [r["image_id"] for r in rows]

    def delete_image(self, image_id: str) -> None:
        self.removal(lambda tx: tx.execute("DELETE FROM images WHERE id=?", (image_id,)))

    def set_layer_blob(
        self, chain_id: str, digest: str, size: int, *, replacing: str | None = None
    ) -> None:
        """Give a layer that has no stored blob yet (an older import) its compressed blob;
        or, with `replacing`, one for the blob it had named but that is not stored here."""
        with self.transaction() as tx:
            tx.execute(
                "UPDATE layers SET blob_digest=?, blob_size=? WHERE chain_id=? AND"
                " (blob_digest IS NULL OR blob_digest=?)",
                (digest, size, chain_id, replacing),
            )

    # -- remote copies of blobs ------------------------------------------------

    def add_blob_sources(self, registry: str, repository: str, digests: list[str]) -> None:
        """Record that `registry`/`repository` holds these blobs (newest sighting wins)."""
        now = time.time()
        with self.transaction() as tx:
            tx.executemany(
                "INSERT INTO blob_sources(digest, registry, repository, seen_at) VALUES(?,?,?,?)"
                " ON CONFLICT(digest, registry, repository) DO UPDATE SET seen_at=excluded.seen_at",
                [(d, registry, repository, now) for d in digests],
            )

    def blob_sources(self, digest: str, registry: str) -> list[str]:
        """Repositories of `registry` known to hold `digest`, most recently seen first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT repository FROM blob_sources WHERE digest=? AND registry=?"
                " ORDER BY seen_at DESC, repository",
                (digest, registry),
            ).fetchall()
        return [r["repository"] for r in rows]

    def forget_blob_source(self, digest: str, registry: str, repository: str) -> None:
        """The registry no longer has it there (a mount from it failed)."""
        with self.transaction() as tx:
            tx.execute(
                "DELETE FROM blob_sources WHERE digest=? AND registry=? AND repository=?",
                (digest, registry, repository),
            )

    def _image(self, row: sqlite3.Row) -> ImageRecord:
        names = self._db.execute(
            "SELECT name, kind FROM image_names WHERE image_id=? ORDER BY added_at, name",
            (row["id"],),
        ).fetchall()
        chain = self._db.execute(
            "SELECT chain_id FROM image_layers WHERE image_id=? ORDER BY position", (row["id"],)
        ).fetchall()
        return ImageRecord(
            id=row["id"],
            manifest_digest=row["manifest_digest"],
            manifest_media_type=row["manifest_media_type"],
            created=row["created"],
            size=row["size"],
            added_at=row["added_at"],
            tags=tuple(n["name"] for n in names if n["kind"] == "tag"),
            digests=tuple(n["name"] for n in names if n["kind"] == "digest"),
            chain_ids=tuple(c["chain_id"] for c in chain),
        )


def _layer(row: sqlite3.Row) -> LayerRecord:
    return LayerRecord(
        chain_id=row["chain_id"],
        diff_id=row["diff_id"],
        parent=row["parent"],
        blob_digest=row["blob_digest"],
        blob_size=row["blob_size"],
        size=row["size"],
    )

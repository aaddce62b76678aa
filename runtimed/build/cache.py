"""The build cache: which image a build step made, by the step's cache key.

A key hashes what makes a step's result what it is (Docker's classic
builder's rule): the image it starts from, the instruction after variable
substitution, the build args in scope for a RUN, and for COPY/ADD the
checksum of the files read (content, mode, names; owners come from the
instruction). mtimes do not count. A step's image is an ordinary untagged
image whose parent is the step before, so `rmi` of a built image takes its
untagged steps along as docker's does; the rows here go with their images
(ON DELETE CASCADE), in the daemon's SQLite database, so the cache survives
restarts. Step images that are no build's result are hidden from `images`
(shown with `-a`), and `builder prune` removes them.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from runtimed.store.metadata import MetadataStore

_TABLES = (
    "CREATE TABLE IF NOT EXISTS build_cache ("
    " key TEXT PRIMARY KEY,"
    " image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,"
    " created_at REAL NOT NULL,"
    " used_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS build_cache_by_image ON build_cache(image_id)",
    # The images builds handed to their users: shown by `images`, kept by `builder prune`.
    "CREATE TABLE IF NOT EXISTS build_results ("
    " image_id TEXT PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE)",
)


def cache_key(parent: str, instruction: str, extra: dict[str, Any] | None = None) -> str:
    doc = {"parent": parent, "instruction": instruction, **(extra or {})}
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


class BuildCache:
    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata
        with metadata.transaction() as tx:
            for statement in _TABLES:
                tx.execute(statement)

    def lookup(self, key: str) -> str | None:
        rows = self.metadata.fetchall("SELECT image_id FROM build_cache WHERE key=?", (key,))
        if not rows:
            return None
        image_id = rows[0][0]
        if self.metadata.get_image(image_id) is None:
            return None
        with self.metadata.transaction() as tx:
            tx.execute("UPDATE build_cache SET used_at=? WHERE key=?", (time.time(), key))
        return image_id

    def store(self, key: str, image_id: str) -> None:
        now = time.time()
        with self.metadata.transaction() as tx:
            tx.execute(
                "INSERT INTO build_cache(key, image_id, created_at, used_at) VALUES(?,?,?,?)"
                " ON CONFLICT(key) DO UPDATE SET image_id=excluded.image_id,"
                " used_at=excluded.used_at",
                (key, image_id, now, now),
            )

    def mark_result(self, image_id: str) -> None:
        with self.metadata.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO build_results(image_id) VALUES(?)", (image_id,))

    def hidden_images(self) -> set[str]:
        """Step images nobody asked for by name: untagged, in the cache, no build's result."""
        rows = self.metadata.fetchall(
            "SELECT DISTINCT b.image_id FROM build_cache b"
            " WHERE NOT EXISTS (SELECT 1 FROM build_results r WHERE r.image_id = b.image_id)"
            " AND NOT EXISTS (SELECT 1 FROM image_names n WHERE n.image_id = b.image_id)"
        )
        return {r[0] for r in rows}

    def forget(self, image_ids: list[str]) -> None:
        with self.metadata.transaction() as tx:
            tx.executemany("DELETE FROM build_cache WHERE image_id=?", [(i,) for i in image_ids])

    def entries(self) -> int:
        return self.metadata.fetchall("SELECT count(*) FROM build_cache")[0][0]

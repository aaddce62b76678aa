"""Volume records and active volume mounts, in the daemon's metadata database.

Which containers use a volume is not stored here: it is read from the
containers' own records (their mount plans), so it can never disagree with
them. What is stored is what only we know: a volume's driver, labels and
options, and which container holds which driver mount right now (so a
restarted daemon releases them, and a plugin sees each Unmount it is owed).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

from runtimed.errors import AlreadyExists
from runtimed.store.metadata import MetadataStore

_TABLES = (
    """CREATE TABLE IF NOT EXISTS volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL,
        mountpoint TEXT NOT NULL DEFAULT '',
        labels TEXT NOT NULL DEFAULT '{}',
        options TEXT NOT NULL DEFAULT '{}',
        anonymous INTEGER NOT NULL DEFAULT 0,
        needs_copy INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS volume_mounts (
        container_id TEXT NOT NULL,
        volume TEXT NOT NULL,
        driver TEXT NOT NULL,
        mount_id TEXT NOT NULL,
        path TEXT NOT NULL,
        PRIMARY KEY (container_id, volume)
    )""",
)


@dataclass
class VolumeRecord:
    name: str
    driver: str
    created_at: int  # ns since the epoch
    mountpoint: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False
    # Until a container's image files are first copied in (docker's copy-up happens once).
    needs_copy: bool = True


@dataclass(frozen=True)
class ActiveMount:
    container_id: str
    volume: str
    driver: str
    mount_id: str
    path: str


class VolumeRecords:
    def __init__(self, db: MetadataStore) -> None:
        self.db = db
        with db.transaction() as tx:
            for statement in _TABLES:
                tx.execute(statement)

    # -- volumes ---------------------------------------------------------------

    def add(self, record: VolumeRecord) -> None:
        try:
            with self.db.transaction() as tx:
                tx.execute(
                    "INSERT INTO volumes(name, driver, mountpoint, labels, options, anonymous,"
                    " created_at) VALUES(?,?,?,?,?,?,?)",
                    (
                        record.name,
                        record.driver,
                        record.mountpoint,
                        json.dumps(record.labels),
                        json.dumps(record.options),
                        int(record.anonymous),
                        record.created_at,
                    ),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"volume {record.name} already exists") from None

    def get(self, name: str) -> VolumeRecord | None:
        rows = self.db.fetchall("SELECT * FROM volumes WHERE name=?", (name,))
        return _volume(rows[0]) if rows else None

    def list(self) -> list[VolumeRecord]:
        return [_volume(r) for r in self.db.fetchall("SELECT * FROM volumes ORDER BY name")]

    def delete(self, name: str) -> None:
        self.db.removal(lambda tx: tx.execute("DELETE FROM volumes WHERE name=?", (name,)))

    def copied(self, name: str) -> None:
        with self.db.transaction() as tx:
            tx.execute("UPDATE volumes SET needs_copy=0 WHERE name=?", (name,))

    def set_mountpoint(self, name: str, mountpoint: str) -> None:
        with self.db.transaction() as tx:
            tx.execute("UPDATE volumes SET mountpoint=? WHERE name=?", (mountpoint, name))

    def mountpoints(self, names: list[str]) -> dict[str, str]:
        if not names:
            return {}
        marks = ",".join("?" * len(names))
        rows = self.db.fetchall(
            f"SELECT name, mountpoint FROM volumes WHERE name IN ({marks})", tuple(names)
        )
        return {r["name"]: r["mountpoint"] for r in rows}

    # -- active mounts -----------------------------------------------------------

    def add_mount(self, mount: ActiveMount) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO volume_mounts(container_id, volume, driver, mount_id, path)"
                " VALUES(?,?,?,?,?)",
                (mount.container_id, mount.volume, mount.driver, mount.mount_id, mount.path),
            )

    def mounts(self, container_id: str | None = None) -> list[ActiveMount]:
        if container_id is None:
            rows = self.db.fetchall("SELECT * FROM volume_mounts")
        else:
            rows = self.db.fetchall(
                "SELECT * FROM volume_mounts WHERE container_id=?", (container_id,)
            )
        return [_mount(r) for r in rows]

    def mounts_of_volume(self, volume: str) -> list[ActiveMount]:
        rows = self.db.fetchall("SELECT * FROM volume_mounts WHERE volume=?", (volume,))
        return [_mount(r) for r in rows]

    def delete_mount(self, container_id: str, volume: str) -> None:
        self.db.removal(
            lambda tx: tx.execute(
                "DELETE FROM volume_mounts WHERE container_id=? AND volume=?",
                (container_id, volume),
            )
        )


def _volume(row: sqlite3.Row) -> VolumeRecord:
    return VolumeRecord(
        name=row["name"],
        driver=row["driver"],
        created_at=row["created_at"],
        mountpoint=row["mountpoint"],
        labels=json.loads(row["labels"]),
        options=json.loads(row["options"]),
        anonymous=bool(row["anonymous"]),
        needs_copy=bool(row["needs_copy"]),
    )


def _mount(row: sqlite3.Row) -> ActiveMount:
    return ActiveMount(
        container_id=row["container_id"],
        volume=row["volume"],
        driver=row["driver"],
        mount_id=row["mount_id"],
        path=row["path"],
    )

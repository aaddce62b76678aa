"""The on-disk ring of daemon events: the last N events, kept across restarts.

One SQLite table in its own file (events.db), so `events --since` reaches back
past a daemon restart without touching the metadata database. Rows are
numbered (seq) in publish order; the oldest ones are dropped once there are
more than `capacity`, checked every TRIM_EVERY inserts so the trim costs
nothing on the common path.

Durability: WAL with synchronous=NORMAL. A committed event survives the daemon
being killed at any point (the WAL is in the page cache, the next open replays
it); only an OS crash or power loss may drop the last few, which for an event
log is the right trade against an fsync on every container start.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from runtimed.core.events import Event
from runtimed.errors import FailedPrecondition
from runtimed.store.sqlite import Database

SCHEMA_VERSION = 1
DEFAULT_CAPACITY = 10_000
TRIM_EVERY = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns INTEGER NOT NULL,
    type TEXT NOT NULL,
    action TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    attributes TEXT NOT NULL,
    scope TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events(time_ns);
"""


class EventRing:
    def __init__(self, path: Path, *, capacity: int = DEFAULT_CAPACITY) -> None:
        self.path = path
        self.capacity = max(1, capacity)
        self._database = Database(path, schema=_SCHEMA, named_rows=False, foreign_keys=False)
        self._db = self._database.conn
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._check_version()
        self._since_trim = 0
        self._trim()

    def _check_version(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise FailedPrecondition(
                f"the event log {self.path} has schema {version}, newer than this runtimed "
                f"understands ({SCHEMA_VERSION}): upgrade runtimed, or remove the file"
            )
        if version < SCHEMA_VERSION:
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._database.close()

    def append(self, event: Event) -> int:
        """Store one event (its seq is ignored); the sequence number it gets."""
        with self._database.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO events(time_ns, type, action, actor_id, attributes, scope)"
                " VALUES(?,?,?,?,?,?)",
                (
                    event.time_ns,
                    event.type,
                    event.action,
                    event.actor_id,
                    json.dumps(dict(event.attributes)),
                    event.scope,
                ),
            )
            seq = int(cur.lastrowid or 0)
        self._since_trim += 1
        if self._since_trim >= TRIM_EVERY:
            self._trim()
        return seq

    def _trim(self) -> None:
        self._since_trim = 0
        with self._database.transaction() as tx:
            tx.execute(
                "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ?",
                (self.capacity,),
            )

    def last_seq(self) -> int:
        (seq,) = self._database.fetchall("SELECT coalesce(max(seq), 0) FROM events")[0]
        return int(seq)

    def read(
        self,
        *,
        since_ns: int = 0,
        until_ns: int | None = None,
        after_seq: int = 0,
        upto_seq: int | None = None,
    ) -> list[Event]:
        """Events in publish order, within the time and sequence bounds (all inclusive but
        after_seq)."""
        sql = "SELECT * FROM events WHERE seq > ? AND time_ns >= ?"
        params: list[Any] = [after_seq, since_ns]
        if until_ns is not None:
            sql += " AND time_ns <= ?"
            params.append(until_ns)
        if upto_seq is not None:
            sql += " AND seq <= ?"
            params.append(upto_seq)
        rows = self._database.fetchall(sql + " ORDER BY seq", tuple(params))
        return [_event(r) for r in rows]

    def count(self) -> int:
        return int(self._database.fetchall("SELECT count(*) FROM events")[0][0])


def _event(row: sqlite3.Row | tuple[Any, ...]) -> Event:
    seq, time_ns, type_, action, actor_id, attributes, scope = row
    return Event(type_, action, actor_id, json.loads(attributes), time_ns, scope, seq)

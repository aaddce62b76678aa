"""One SQLite connection shared by the daemon's threads, with whole-transaction writes.

WAL and synchronous=FULL: a committed transaction survives a crash; a crash
mid-transaction leaves the state before it (DESIGN: state is crash-safe).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Database:
    def __init__(self, path: Path, *, schema: str, named_rows: bool, foreign_keys: bool) -> None:
        self.lock = threading.RLock()
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if named_rows:
            self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        if foreign_keys:
            self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(schema)

    def close(self) -> None:
        self.conn.close()

    def fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """A read outside any transaction (one statement sees one consistent snapshot)."""
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

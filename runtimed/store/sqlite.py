"""One SQLite connection shared by the daemon's threads, with whole-transaction writes.

WAL and synchronous=FULL: a committed transaction survives a crash; a crash
mid-transaction leaves the state before it (DESIGN: state is crash-safe).

A full disk is ResourceExhausted, and the transaction is rolled back whatever
step failed (a failed COMMIT left open would wedge every later one). A
transaction that frees space (`removal`) that fails for lack of space gives up
the data dir's reserve (store/reserve.py) and runs once more, so `rm` and
`rmi` work on a full disk.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from runtimed.errors import ResourceExhausted, out_of_space
from runtimed.store.reserve import SpaceReserve

T = TypeVar("T")


class Database:
    def __init__(self, path: Path, *, schema: str, named_rows: bool, foreign_keys: bool) -> None:
        self.lock = threading.RLock()
        self.reserve = SpaceReserve(path.parent)
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
            self.reserve.refill()
            with self._transaction() as tx:
                yield tx

    def removal(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in a transaction that frees space (deletes): on a full disk, again with
        the reserve given up. (Under WAL even a DELETE needs room for its log pages.)"""
        with self.lock:
            try:
                with self._transaction() as tx:
                    return work(tx)
            except ResourceExhausted:
                if not self.reserve.release():
                    raise
            with self._transaction() as tx:
                return work(tx)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # SQLite rolls some failures back itself
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            full = out_of_space(exc)
            if full is not None:
                raise full from exc
            raise

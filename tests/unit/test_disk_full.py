"""A full disk in the store: RESOURCE_EXHAUSTED, no wedged connection, states kept for later.

SQLite's max_page_count makes a database "full" (SQLITE_FULL, as a full
filesystem does) without a small filesystem; the integration test
(tests/integration/test_disk_full.py) fills a real one.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import grpc
import pytest

from runtimed.api.errors import _abort
from runtimed.core.model import (
    Container,
    ContainerConfig,
    ContainerState,
    Sandbox,
    SandboxConfig,
    SandboxState,
    Status,
)
from runtimed.errors import NotFound, ResourceExhausted, out_of_space
from runtimed.store import reserve
from runtimed.store.containers import ContainerRecords
from runtimed.store.metadata import MetadataStore
from runtimed.store.reserve import SpaceReserve
from runtimed.store.sqlite import Database

BIG = "x" * 200_000  # far more than one page: a write of it needs new pages


def fill(fetchall) -> None:  # noqa: ANN001 - Database.fetchall or MetadataStore.fetchall
    """No page more than the database has now."""
    pages = fetchall("PRAGMA page_count")[0][0]
    fetchall(f"PRAGMA max_page_count = {pages}")


def make_room(fetchall) -> None:  # noqa: ANN001
    fetchall("PRAGMA max_page_count = 1073741823")


def _table(path: Path) -> Database:
    return Database(
        path,
        schema="CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT)",
        named_rows=False,
        foreign_keys=False,
    )


def test_a_full_database_is_resource_exhausted_and_the_next_transaction_works(
    tmp_path: Path,
) -> None:
    db = _table(tmp_path / "t.db")
    with db.transaction() as tx:
        tx.execute("INSERT INTO t VALUES ('a', 'small')")
    fill(db.fetchall)
    with (
        pytest.raises(ResourceExhausted, match="no space left on device"),
        db.transaction() as tx,
    ):
        tx.execute("INSERT INTO t VALUES ('b', ?)", (BIG,))
    assert not db.conn.in_transaction
    db.removal(lambda tx: tx.execute("DELETE FROM t WHERE k = 'a'"))
    make_room(db.fetchall)
    with db.transaction() as tx:
        tx.execute("INSERT INTO t VALUES ('b', ?)", (BIG,))
    assert db.fetchall("SELECT k FROM t") == [("b",)]


def test_a_removal_on_a_full_disk_gives_up_the_reserve_and_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _table(tmp_path / "t.db")
    with db.transaction():  # the first transaction lays the reserve down
        pass
    assert db.reserve.path.stat().st_size == reserve.RESERVE_SIZE
    fill(db.fetchall)
    release = db.reserve.release

    def release_and_room() -> bool:
        """Stand-in for a full disk: what the reserve held is room again."""
        released = release()
        make_room(db.fetchall)
        return released

    monkeypatch.setattr(db.reserve, "release", release_and_room)
    work = []

    def remove(tx: sqlite3.Connection) -> None:
        work.append(1)
        tx.execute("INSERT INTO t VALUES ('b', ?)", (BIG,))  # needs pages, as a WAL would

    db.removal(remove)
    assert len(work) == 2 and not db.reserve.path.exists()
    assert db.fetchall("SELECT k FROM t") == [("b",)]
    fill(db.fetchall)
    with pytest.raises(ResourceExhausted):  # no reserve left to give
        db.removal(lambda tx: tx.execute("INSERT INTO t VALUES ('c', ?)", (BIG,)))


def _container(cid: str) -> tuple[Container, Sandbox]:
    sandbox = Sandbox(
        id=cid,
        name=f"implicit-{cid}",
        config=SandboxConfig(kind="implicit"),
        state=SandboxState(),
        created_at=1,
    )
    config = ContainerConfig(image="busybox", image_id="sha256:0", spec={}, args=["true"])
    state = ContainerState(status=Status.RUNNING, pid=42)
    return Container(cid, cid, cid, config, state, created_at=1), sandbox


def test_container_states_wait_in_memory_while_the_disk_is_full(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "m.db")
    records = ContainerRecords(store)
    container, sandbox = _container("c1")
    records.add_container(container, sandbox)
    fill(store.fetchall)

    container.state.status = Status.EXITED
    container.state.exit_code = 7
    container.state.message = BIG
    with pytest.raises(ResourceExhausted):
        records.save_state(container)
    assert records.get("c1").state.status == Status.RUNNING and not records.deferred()

    records.save_state(container, defer_if_full=True)
    # Every reader sees the exit; the database does not have it yet.
    assert records.deferred("c1")
    for seen in (records.get("c1"), records.by_name("c1"), records.containers()[0]):
        assert (seen.state.status, seen.state.exit_code) == (Status.EXITED, 7)
    assert ContainerRecords(MetadataStore(tmp_path / "m.db")).get("c1").state.exit_code == 0
    assert not records.flush_deferred()  # still full

    make_room(store.fetchall)
    assert records.flush_deferred() and not records.deferred()
    again = ContainerRecords(MetadataStore(tmp_path / "m.db")).get("c1")
    assert (again.state.status, again.state.exit_code) == (Status.EXITED, 7)


def test_removing_a_container_drops_its_waiting_state(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "m.db")
    records = ContainerRecords(store)
    container, sandbox = _container("c2")
    records.add_container(container, sandbox)
    fill(store.fetchall)
    container.state.message = BIG
    records.save_state(container, defer_if_full=True)
    records.delete(container, with_sandbox=True)
    assert records.get("c2") is None and not records.deferred()


def test_out_of_space_tells_a_full_disk_from_other_errors(tmp_path: Path) -> None:
    full = out_of_space(OSError(errno.ENOSPC, "No space left on device", "/data/x"))
    assert full is not None and full.message == "no space left on device: cannot write /data/x"
    assert full.code == "RESOURCE_EXHAUSTED"
    assert out_of_space(OSError(errno.EACCES, "Permission denied")) is None
    assert out_of_space(NotFound("no such thing")) is None
    assert out_of_space(sqlite3.OperationalError("database is locked")) is None
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.execute("PRAGMA max_page_count = 2")
    with pytest.raises(sqlite3.OperationalError) as raised:
        conn.execute("INSERT INTO t VALUES (?)", (BIG,))
    assert isinstance(out_of_space(raised.value), ResourceExhausted)


class _Context:
    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise grpc.aio.AbortError(f"{code.name}: {details}")


async def test_the_api_edge_answers_enospc_with_resource_exhausted() -> None:
    with pytest.raises(grpc.aio.AbortError) as raised:
        await _abort(_Context(), "CreateContainer", OSError(errno.ENOSPC, "No space left"))  # type: ignore[arg-type]
    assert str(raised.value) == "RESOURCE_EXHAUSTED: no space left on device"


def test_the_reserve_is_taken_back_only_with_room_for_it_and_as_much_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reserve, "REFILL_INTERVAL", 0.0)
    free = {"bytes": 1 << 30}
    res = SpaceReserve(tmp_path, size=1 << 16)
    monkeypatch.setattr(res, "free_bytes", lambda: free["bytes"])
    res.refill()
    assert res.path.stat().st_size == 1 << 16
    assert res.path.stat().st_blocks * 512 >= 1 << 16  # allocated, not a hole
    assert res.release() and not res.path.exists()
    assert not res.release()
    free["bytes"] = (1 << 17) - 1
    res.refill()
    assert not res.path.exists()
    free["bytes"] = 1 << 17
    res.refill()
    assert res.path.exists()
    assert os.listdir(tmp_path) == [reserve.RESERVE_NAME]  # no temporary left behind

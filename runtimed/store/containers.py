"""Persisting sandboxes and containers in the metadata database.

A container's state may be saved `defer_if_full`: when the disk is full it is
kept in memory instead, shown to every reader as if saved, and written by
`flush_deferred()` once there is room. Only states a crash may lose meanwhile
are deferred (see ContainerService._save): an exit is in the shim's exit file
too, which the next daemon start reads; a stop's mark only spares the
container a restart policy's restart at that start.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import threading

from runtimed.errors import AlreadyExists, ResourceExhausted
from runtimed.records import (
    Container,
    ContainerConfig,
    ContainerState,
    Sandbox,
    SandboxConfig,
    SandboxState,
    to_dict,
)
from runtimed.store.metadata import MetadataStore


def _dump(obj: object) -> str:
    return json.dumps(to_dict(obj), separators=(",", ":"))


class ContainerRecords:
    def __init__(self, metadata: MetadataStore) -> None:
        self.db = metadata
        # Container id -> a state newer than its row, which a full disk kept out.
        self._deferred: dict[str, ContainerState] = {}
        self._deferred_lock = threading.Lock()

    # -- sandboxes -------------------------------------------------------------

    def add_sandbox(self, sandbox: Sandbox) -> None:
        try:
            with self.db.transaction() as tx:
                tx.execute(
                    "INSERT INTO sandboxes(id, name, config, state, created_at) VALUES(?,?,?,?,?)",
                    (
                        sandbox.id,
                        sandbox.name,
                        _dump(sandbox.config),
                        _dump(sandbox.state),
                        sandbox.created_at,
                    ),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"pod sandbox name {sandbox.name!r} is already in use") from None

    def sandboxes(self) -> list[Sandbox]:
        rows = self.db.fetchall("SELECT * FROM sandboxes ORDER BY created_at")
        return [_sandbox(r) for r in rows]

    def get_sandbox(self, sandbox_id: str) -> Sandbox | None:
        rows = self.db.fetchall("SELECT * FROM sandboxes WHERE id=?", (sandbox_id,))
        return _sandbox(rows[0]) if rows else None

    def save_sandbox_state(self, sandbox: Sandbox) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE sandboxes SET state=? WHERE id=?", (_dump(sandbox.state), sandbox.id)
            )

    def delete_sandbox(self, sandbox_id: str) -> None:
        self.db.removal(lambda tx: tx.execute("DELETE FROM sandboxes WHERE id=?", (sandbox_id,)))

    # -- containers ------------------------------------------------------------

    def add_container(self, container: Container, implicit_sandbox: Sandbox | None) -> None:
        """Insert a container (and its implicit sandbox) in one transaction."""
        try:
            with self.db.transaction() as tx:
                if implicit_sandbox is not None:
                    s = implicit_sandbox
                    tx.execute(
                        "INSERT INTO sandboxes(id, name, config, state, created_at)"
                        " VALUES(?,?,?,?,?)",
                        (s.id, s.name, _dump(s.config), _dump(s.state), s.created_at),
                    )
                tx.execute(
                    "INSERT INTO containers(id, name, sandbox_id, image_id, config, state,"
                    " created_at) VALUES(?,?,?,?,?,?,?)",
                    (
                        container.id,
                        container.name,
                        container.sandbox_id,
                        container.config.image_id,
                        _dump(container.config),
                        _dump(container.state),
                        container.created_at,
                    ),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(
                f"Conflict. The container name {container.name!r} is already in use. "
                "Remove (or rename) that container to be able to reuse that name."
            ) from None

    def containers(self) -> list[Container]:
        rows = self.db.fetchall("SELECT * FROM containers ORDER BY created_at")
        return [self._container(r) for r in rows]

    def get(self, container_id: str) -> Container | None:
        rows = self.db.fetchall("SELECT * FROM containers WHERE id=?", (container_id,))
        return self._container(rows[0]) if rows else None

    def by_name(self, name: str) -> Container | None:
        rows = self.db.fetchall("SELECT * FROM containers WHERE name=?", (name,))
        return self._container(rows[0]) if rows else None

    def with_prefix(self, prefix: str) -> list[Container]:
        rows = self.db.fetchall("SELECT * FROM containers WHERE id LIKE ?", (prefix + "%",))
        return [self._container(r) for r in rows]

    def _container(self, row: sqlite3.Row) -> Container:
        container = _container(row)
        with self._deferred_lock:
            state = self._deferred.get(container.id)
            if state is not None:
                container.state = copy.deepcopy(state)
        return container

    def using_image(self, image_id: str) -> list[str]:
        rows = self.db.fetchall("SELECT id FROM containers WHERE image_id=?", (image_id,))
        return [r["id"] for r in rows]

    def save_state(self, container: Container, *, defer_if_full: bool = False) -> None:
        """Write the container's state; on a full disk keep it for later if allowed."""
        try:
            self._write_state(container.id, container.state)
        except ResourceExhausted:
            if not defer_if_full:
                raise
            with self._deferred_lock:
                self._deferred[container.id] = copy.deepcopy(container.state)
            return
        with self._deferred_lock:
            self._deferred.pop(container.id, None)

    def deferred(self, container_id: str | None = None) -> bool:
        """Some state (that container's, or any) waits for room on the disk."""
        with self._deferred_lock:
            return container_id in self._deferred if container_id else bool(self._deferred)

    def flush_deferred(self) -> bool:
        """Write the states a full disk kept out; True when none is left waiting."""
        with self._deferred_lock:
            waiting = list(self._deferred.items())
        for container_id, state in waiting:
            try:
                self._write_state(container_id, state)
            except ResourceExhausted:
                return False
            with self._deferred_lock:
                if self._deferred.get(container_id) is state:  # not replaced meanwhile
                    del self._deferred[container_id]
        return not self.deferred()

    def _write_state(self, container_id: str, state: ContainerState) -> None:
        with self.db.transaction() as tx:
            tx.execute("UPDATE containers SET state=? WHERE id=?", (_dump(state), container_id))

    def save_config(self, container: Container) -> None:
        """The config changes only by `update` (its resources)."""
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE containers SET config=? WHERE id=?", (_dump(container.config), container.id)
            )

    def rename(self, container_id: str, new_name: str) -> None:
        try:
            with self.db.transaction() as tx:
                tx.execute("UPDATE containers SET name=? WHERE id=?", (new_name, container_id))
        except sqlite3.IntegrityError:
            raise AlreadyExists(
                f"Conflict. The container name {new_name!r} is already in use."
            ) from None

    def delete(self, container: Container, *, with_sandbox: bool) -> None:
        def delete(tx: sqlite3.Connection) -> None:
            tx.execute("DELETE FROM containers WHERE id=?", (container.id,))
            if with_sandbox:
                tx.execute("DELETE FROM sandboxes WHERE id=?", (container.sandbox_id,))

        self.db.removal(delete)
        with self._deferred_lock:
            self._deferred.pop(container.id, None)


def _sandbox(row: sqlite3.Row) -> Sandbox:
    return Sandbox(
        id=row["id"],
        name=row["name"],
        config=SandboxConfig.from_dict(json.loads(row["config"])),
        state=SandboxState.from_dict(json.loads(row["state"])),
        created_at=row["created_at"],
    )


def _container(row: sqlite3.Row) -> Container:
    return Container(
        id=row["id"],
        name=row["name"],
        sandbox_id=row["sandbox_id"],
        config=ContainerConfig.from_dict(json.loads(row["config"])),
        state=ContainerState.from_dict(json.loads(row["state"])),
        created_at=row["created_at"],
    )

"""Persisting sandboxes and containers in the metadata database."""

from __future__ import annotations

import json
import sqlite3

from runtimed.core.model import (
    Container,
    ContainerConfig,
    ContainerState,
    Sandbox,
    SandboxConfig,
    SandboxState,
    to_dict,
)
from runtimed.errors import AlreadyExists
from runtimed.store.metadata import MetadataStore


def _dump(obj: object) -> str:
    return json.dumps(to_dict(obj), separators=(",", ":"))


class ContainerRecords:
    def __init__(self, metadata: MetadataStore) -> None:
        self.db = metadata

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
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM sandboxes WHERE id=?", (sandbox_id,))

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
        return [_container(r) for r in rows]

    def get(self, container_id: str) -> Container | None:
        rows = self.db.fetchall("SELECT * FROM containers WHERE id=?", (container_id,))
        return _container(rows[0]) if rows else None

    def by_name(self, name: str) -> Container | None:
        rows = self.db.fetchall("SELECT * FROM containers WHERE name=?", (name,))
        return _container(rows[0]) if rows else None

    def with_prefix(self, prefix: str) -> list[Container]:
        rows = self.db.fetchall("SELECT * FROM containers WHERE id LIKE ?", (prefix + "%",))
        return [_container(r) for r in rows]

    def using_image(self, image_id: str) -> list[str]:
        rows = self.db.fetchall("SELECT id FROM containers WHERE image_id=?", (image_id,))
        return [r["id"] for r in rows]

    def save_state(self, container: Container) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE containers SET state=? WHERE id=?", (_dump(container.state), container.id)
            )

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
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM containers WHERE id=?", (container.id,))
            if with_sandbox:
                tx.execute("DELETE FROM sandboxes WHERE id=?", (container.sandbox_id,))


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

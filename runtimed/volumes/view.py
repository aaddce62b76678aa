"""A container's mounts as `docker inspect` shows them (its "Mounts" and "Binds")."""

from __future__ import annotations

from typing import Any

from runtimed.core.model import Container
from runtimed.store.metadata import MetadataStore
from runtimed.volumes.plan import plan_of


def _mountpoints(db: MetadataStore, names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    marks = ",".join("?" * len(names))
    try:
        rows = db.fetchall(
            f"SELECT name, mountpoint FROM volumes WHERE name IN ({marks})", tuple(names)
        )
    except Exception:  # noqa: BLE001 - no volume table yet: nothing to show
        return {}
    return {r["name"]: r["mountpoint"] for r in rows}


def inspect_mounts(container: Container, db: MetadataStore) -> list[dict[str, Any]]:
    spec = container.config.spec
    out: list[dict[str, Any]] = [
        {
            "Type": "bind",
            "Source": m["source"],
            "Destination": m["destination"],
            "Mode": "ro" if m["readonly"] else "",
            "RW": not m["readonly"],
            "Propagation": m.get("propagation", "rprivate"),
        }
        for m in spec.get("mounts", [])
    ]
    plan = plan_of(container.config.extras)
    points = _mountpoints(db, [e.source for e in plan if e.type == "volume"])
    for entry in plan:
        doc: dict[str, Any] = {"Type": entry.type, "Destination": entry.target}
        if entry.type == "volume":
            doc.update(
                Name=entry.source,
                Source=points.get(entry.source, ""),
                Driver=entry.driver,
                Mode="ro" if entry.readonly else "z",
                RW=not entry.readonly,
                Propagation="",
            )
        elif entry.type == "bind":
            doc.update(
                Source=entry.source,
                Mode="ro" if entry.readonly else "",
                RW=not entry.readonly,
                Propagation=entry.propagation or "rprivate",
            )
        elif entry.type == "tmpfs":
            doc.update(Source="", Mode="", RW=not entry.readonly, Propagation="")
        else:
            doc.update(Source=entry.source, Mode="ro", RW=False, Propagation="")
        out.append(doc)
    return out


def inspect_binds(container: Container) -> list[str]:
    """HostConfig.Binds: host binds and named volumes as `-v` would have written them."""
    binds = [
        f"{m['source']}:{m['destination']}{':ro' if m['readonly'] else ''}"
        for m in container.config.spec.get("mounts", [])
    ]
    for entry in plan_of(container.config.extras):
        if entry.type == "volume" and not entry.anonymous and not entry.from_container:
            binds.append(f"{entry.source}:{entry.target}{':ro' if entry.readonly else ''}")
    return binds


def tmpfs_map(container: Container) -> dict[str, str]:
    """HostConfig.Tmpfs: target -> options, as docker shows --tmpfs mounts."""
    return {
        e.target: ",".join(e.options) for e in plan_of(container.config.extras) if e.type == "tmpfs"
    }

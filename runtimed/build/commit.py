"""docker commit: a container's changes become one new layer on top of its image.

The layer is the container's diff (runtimed.snapshots.diff) written as a tar,
then unpacked into the layer store like any pulled layer, so its diff_id,
size and framing are computed the same way and owners come out right (the
daemon works as root of its user namespace). The new config is what docker
gives a committed image: the image's config with the container's own settings
(command, entrypoint, environment, working directory, user, labels) and then
the `--change` instructions, plus a history entry and the author.

A running container is frozen for the read where its runtime can freeze it
(runtimed.core.freeze); without a cgroup freezer it is read as it runs.
"""

from __future__ import annotations

import asyncio
import copy
import json
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import structlog

from runtimed.build.layer import write_diff
from runtimed.core.containers import ContainerService
from runtimed.core.freeze import paused
from runtimed.core.model import Container
from runtimed.errors import InvalidArgument, NotFound
from runtimed.images.changes import apply_changes
from runtimed.images.compose import layer_from_tar, store_image
from runtimed.images.reference import parse_reference
from runtimed.images.service import now_rfc3339

log = structlog.get_logger(__name__)

# Where the runtime mounts things into every container; empty placeholders there
# are not the container's changes (docker keeps them in its init layer).
RUNTIME_MOUNTS = ("/proc", "/sys", "/dev", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


@dataclass(frozen=True)
class CommitResult:
    image_id: str
    paused: bool


def mount_points(containers: ContainerService, container: Container) -> frozenset[tuple[str, ...]]:
    """Destinations the runtime mounted over, from the container's last OCI bundle."""
    dests = set(RUNTIME_MOUNTS)
    bundle = containers.state_dir(container.id) / "bundle" / "config.json"
    try:
        spec = json.loads(bundle.read_text())
        dests.update(m["destination"] for m in spec.get("mounts") or [] if m.get("destination"))
    except (OSError, ValueError, TypeError, KeyError):
        pass  # never started: the runtime made nothing yet
    return frozenset(tuple(p for p in d.split("/") if p) for d in dests)


def container_config(container: Container, image_config: dict[str, Any]) -> dict[str, Any]:
    """The image config with the container's own settings over it (docker's commit merge)."""
    config = copy.deepcopy(image_config)
    spec = container.config.spec
    entrypoint, cmd = spec.get("entrypoint"), spec.get("cmd")
    if entrypoint is not None:
        config["Entrypoint"] = list(entrypoint) or None
        if cmd is None:
            config["Cmd"] = None  # a new entrypoint drops the image's CMD, as at run
    if cmd is not None:
        config["Cmd"] = list(cmd)
    env = list(config.get("Env") or [])
    for item in spec.get("env") or []:
        key = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key] + [item]
    if env:
        config["Env"] = env
    if spec.get("working_dir"):
        config["WorkingDir"] = spec["working_dir"]
    if spec.get("user"):
        config["User"] = spec["user"]
    if container.config.labels:
        config["Labels"] = {**(config.get("Labels") or {}), **container.config.labels}
    return {k: v for k, v in config.items() if v is not None}


async def commit(
    containers: ContainerService,
    ref: str,
    *,
    reference: str = "",
    author: str = "",
    comment: str = "",
    changes: list[str] | None = None,
    pause: bool = True,
) -> CommitResult:
    images = containers.images
    container = containers.get(ref)
    base = images.metadata.get_image(container.config.image_id)
    if base is None:
        raise NotFound(f"image {container.config.image_id} of container {container.name} is gone")
    names: list[tuple[str, str]] = []
    if reference:
        target = parse_reference(reference)
        if target.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {reference}")
        names = [(f"{target.name}:{target.tag}", "tag")]
    base_doc = images.config(base)
    merged = container_config(container, base_doc.get("config") or {})
    created_by = " ".join(merged.get("Cmd") or [])
    config = apply_changes(merged, list(changes or []))
    ignore = mount_points(containers, container)
    lowers = containers._lowers(base.id)
    tmp = images.content.new_ingest()
    try:
        async with containers._lock(container.id):
            container = containers.get(container.id)
            hold = paused(containers, container, "commit") if pause else nullcontext(False)
            async with hold as frozen:
                entries = await asyncio.to_thread(
                    write_diff, containers.snapshotter, container.id, lowers, ignore, tmp
                )
        layer = await layer_from_tar(images, tmp) if entries else None
    finally:
        images.content.discard(tmp)
    created = now_rfc3339()
    history: dict[str, Any] = {"created": created, "created_by": created_by}
    if author:
        history["author"] = author
    if comment:
        history["comment"] = comment
    if layer is None:
        history["empty_layer"] = True
    doc = copy.deepcopy(base_doc)
    doc.update(created=created, config=config, container=container.id)
    doc["author"] = author
    if not author:
        doc.pop("author")
    rootfs = doc.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    if layer is not None:
        rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), layer.diff_id]
    doc["history"] = [*(doc.get("history") or []), history]
    image_id, _ = store_image(
        images, config_doc=doc, base=base, layer=layer, names=names, parent=base.id
    )
    log.info("container_committed", container_id=container.id, image_id=image_id, paused=frozen)
    containers.announce(container, "commit", imageID=image_id, comment=comment)
    return CommitResult(image_id, frozen)

"""RUN: the command in a container of the step's image, its output streamed, its diff kept.

The container is an ordinary one of ContainerService (crun, the daemon's user
namespace, the daemon's network unless --network none), attached before it
starts so no output is lost, and removed with its anonymous volumes whatever
happens, so a failed step leaves no container behind. Its layer is the
container snapshot's diff without the runtime's mount points
(runtimed.build.commit.mount_points), as `commit` takes it.

`--mount`: type=cache (a directory kept under the daemon's data, by id or
target), type=bind (read-only from the context or from=STAGE|IMAGE; `rw`
gives a throwaway copy) and type=tmpfs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runtimed.build.commit import mount_points
from runtimed.build.layer import diff_layer, lowers_of, scratch_snapshot
from runtimed.build.stages import find_stage
from runtimed.core.containers import CreateRequest
from runtimed.core.inroot import open_in_root
from runtimed.core.shim_client import EXIT, STDERR, STDOUT
from runtimed.errors import FailedPrecondition, InvalidArgument, RuntimedError
from runtimed.images.compose import NewLayer
from runtimed.images.service import short_id
from runtimed.oci.spec import BindMount
from runtimed.volumes.plan import MountEntry

if TYPE_CHECKING:
    from runtimed.build.builder import Builder

BUILD_LABEL = "io.runtimed.build"


@dataclass
class RunSpec:
    image_id: str
    argv: list[str]
    env: list[str]
    user: str
    working_dir: str
    network: str  # "" | none | host
    mounts: list[str] = field(default_factory=list)  # --mount values, expanded


@dataclass
class _Mounts:
    binds: list[BindMount] = field(default_factory=list)
    tmpfs: list[MountEntry] = field(default_factory=list)
    cleanups: list[contextlib.AbstractAsyncContextManager[object]] = field(default_factory=list)
    temp_dirs: list[Path] = field(default_factory=list)


def _options(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if key:
            out[key.lower()] = value if sep else "true"
    return out


async def _mounts(builder: Builder, spec: RunSpec, stack: contextlib.AsyncExitStack) -> _Mounts:
    result = _Mounts()
    for text in spec.mounts:
        opts = _options(text)
        kind = opts.get("type", "bind")
        target = opts.get("target") or opts.get("dst") or opts.get("destination") or ""
        if not target.startswith("/"):
            if not target:
                raise InvalidArgument(f"RUN --mount={text}: a target is required")
            target = os.path.join(spec.working_dir or "/", target)
        readonly = opts.get("readonly", opts.get("ro", "false")) == "true"
        if kind == "cache":
            ident = opts.get("id") or target
            where = builder.cache_mounts / hashlib.sha256(ident.encode()).hexdigest()[:32]
            fresh = not where.exists()
            where.mkdir(parents=True, exist_ok=True)
            if fresh:
                mode = int(opts.get("mode", "755"), 8)
                os.chmod(where, mode)
                os.chown(where, int(opts.get("uid", "0")), int(opts.get("gid", "0")))
            result.binds.append(BindMount(str(where), target, readonly=readonly))
        elif kind == "tmpfs":
            result.tmpfs.append(MountEntry(type="tmpfs", target=target))
        elif kind == "bind":
            source = opts.get("source") or opts.get("src") or "/"
            ref = opts.get("from")
            if ref:
                found = find_stage(builder.plan.stages, ref)
                if found is not None:
                    image_id = builder.results[found.index].image_id
                else:
                    image_id = (await builder._base_image(ref, builder.options.platform)).id
                _key, root = await stack.enter_async_context(
                    scratch_snapshot(builder.snapshotter, lowers_of(builder.images, image_id))
                )
            else:
                root = builder.context
            host = _resolve(root, source, text)
            rw = opts.get("rw", opts.get("readwrite", "false")) == "true"
            if rw:
                # Writes to a rw bind are thrown away after the step, as BuildKit does.
                copy_root = Path(tempfile.mkdtemp(dir=builder.cache_mounts.parent, prefix="bind-"))
                result.temp_dirs.append(copy_root)
                dest = copy_root / "src"
                if os.path.isdir(host):
                    await asyncio.to_thread(shutil.copytree, host, dest, symlinks=True)
                else:
                    await asyncio.to_thread(shutil.copy2, host, dest)
                host = str(dest)
            result.binds.append(BindMount(host, target, readonly=not rw))
        else:
            raise InvalidArgument(
                f"RUN --mount type={kind} is not supported: use cache, bind or tmpfs"
            )
    return result


def _resolve(root: Path, source: str, text: str) -> str:
    """The host path of `source` inside `root`, symlinks kept inside it."""
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_in_root(root_fd, source, os.O_PATH)
    except OSError as exc:
        raise InvalidArgument(f"RUN --mount={text}: source {source}: {exc.strerror}") from None
    finally:
        os.close(root_fd)
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


async def run_step(builder: Builder, spec: RunSpec) -> NewLayer | None:
    containers = builder.containers
    async with contextlib.AsyncExitStack() as stack:
        mounts = await _mounts(builder, spec, stack)
        try:
            req = CreateRequest(
                image=spec.image_id,
                entrypoint=list(spec.argv),
                cmd=[],
                env=list(spec.env),
                user=spec.user,
                working_dir=spec.working_dir,
                labels={BUILD_LABEL: "run"},
                binds=mounts.binds,
                log_driver="none",
                extras={
                    "network": {"network": spec.network},
                    "volumes": {"mounts": [m.to_dict() for m in mounts.tmpfs], "volumes_from": []},
                },
            )
            container = await containers.create(req)
            try:
                await builder.emit(f" ---> Running in {short_id(container.id)}\n")
                code = await _run_attached(builder, container.id)
                if code != 0:
                    raise RunFailed(
                        f"The command '{' '.join(spec.argv)}' returned a non-zero code: {code}",
                        code,
                    )
                lowers = lowers_of(builder.images, spec.image_id)
                ignore = mount_points(containers, containers.get(container.id))
                ignore |= frozenset(
                    tuple(p for p in b.destination.split("/") if p) for b in mounts.binds
                ) | frozenset(tuple(p for p in m.target.split("/") if p) for m in mounts.tmpfs)
                layer = await diff_layer(
                    builder.images, builder.snapshotter, container.id, lowers, ignore
                )
            finally:
                with contextlib.suppress(RuntimedError):
                    await containers.remove(container.id, force=True, remove_volumes=True)
                await builder.emit(f"Removing intermediate container {short_id(container.id)}\n")
        finally:
            for tmp in mounts.temp_dirs:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
    return layer


class RunFailed(FailedPrecondition):
    """The step's command exited non-zero."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


async def _run_attached(builder: Builder, container_id: str) -> int:
    containers = builder.containers
    start: asyncio.Task[object] | None = None

    async def begin() -> None:
        nonlocal start
        start = asyncio.create_task(containers.start(container_id))

    stream = await containers.attach(
        container_id, stdin=False, stdout=True, stderr=True, on_waiting=begin
    )
    exit_code: int | None = None
    try:
        while (frame := await stream.read()) is not None:
            kind, payload = frame
            if kind in (STDOUT, STDERR):
                await builder.emit(payload.decode("utf-8", errors="replace"))
            elif kind == EXIT:
                with contextlib.suppress(ValueError, TypeError):
                    exit_code = int(json.loads(payload or b"{}").get("exit_code") or 0)
                break
    finally:
        await stream.close()
        if start is not None:
            await start
    code = await containers.wait(container_id)
    return code if exit_code is None else exit_code

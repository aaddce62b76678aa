"""Running a Dockerfile: stage by stage, step by step, each step an image, cached.

Output is the classic builder's (`Step N/M : INSTRUCTION`, ` ---> Using
cache`, ` ---> Running in ID`, the command's output as it comes, ` ---> ID`).
Every step records an untagged image whose parent is the step before (see
runtimed.build.cache for the key). RUN runs in a container of our own
runtime (runtimed.build.run) and COPY, ADD and WORKDIR write into a scratch
snapshot; either way the step's layer is the snapshot's diff
(runtimed.build.layer).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from runtimed.build import config as cfg
from runtimed.build import copy as cp
from runtimed.build.cache import BuildCache, cache_key
from runtimed.build.dockerfile import Dockerfile, Instruction, parse_instruction_line
from runtimed.build.layer import diff_layer, lowers_of, record_step, scratch_snapshot
from runtimed.build.run import RunSpec, run_step
from runtimed.build.shellwords import expand_word, expand_words
from runtimed.build.stages import PROXY_ARGS, Plan, Stage, find_stage, needed_stages, parse_arg
from runtimed.core import copyin
from runtimed.core.inroot import closing, open_in_root
from runtimed.errors import FailedPrecondition, InvalidArgument, NotFound, RuntimedError
from runtimed.images import manifest as mt
from runtimed.images.service import now_rfc3339, short_id

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService
    from runtimed.images.service import ImageService

log = structlog.get_logger(__name__)

Emit = Callable[[str], Awaitable[None]]
NOP = "/bin/sh -c #(nop) "


class BuildFailed(FailedPrecondition):
    """A step failed: the message is what the user reads (docker's words)."""


@dataclass
class BuildOptions:
    build_args: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    pull: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    platform: str = ""
    network: str = ""  # "" (the daemon's default network) | none | host


@dataclass
class StageState:
    """Where a stage is: its current image and what the next steps see."""

    image_id: str | None  # None: scratch, nothing yet
    doc: dict[str, Any]
    args: dict[str, str | None] = field(default_factory=dict)  # ARGs declared in the stage
    cmd_set: bool = False

    @property
    def config(self) -> dict[str, Any]:
        return self.doc.setdefault("config", {})


def scratch_doc(platform: str) -> dict[str, Any]:
    plat = mt.Platform.parse(platform) if platform else mt.Platform.host()
    doc: dict[str, Any] = {
        "architecture": plat.architecture,
        "os": plat.os,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    }
    if plat.variant:
        doc["variant"] = plat.variant
    return doc


def automatic_args(platform: str) -> dict[str, str]:
    """BuildKit's automatic platform ARGs (usable once declared)."""
    plat = mt.Platform.parse(platform) if platform else mt.Platform.host()
    host = mt.Platform.host()
    out = {}
    for prefix, p in (("TARGET", plat), ("BUILD", host)):
        out[f"{prefix}OS"] = p.os
        out[f"{prefix}ARCH"] = p.architecture
        out[f"{prefix}VARIANT"] = p.variant or ""
        out[f"{prefix}PLATFORM"] = f"{p.os}/{p.architecture}" + (
            f"/{p.variant}" if p.variant else ""
        )
    return out


class Builder:
    def __init__(
        self,
        *,
        images: ImageService,
        containers: ContainerService,
        cache: BuildCache,
        context: Path,
        context_digests: cp.KnownDigests | None = None,
        cache_mounts: Path,
        dockerfile: Dockerfile,
        plan: Plan,
        options: BuildOptions,
        emit: Emit,
    ) -> None:
        self.images = images
        self.containers = containers
        self.snapshotter = containers.snapshotter
        self.cache = cache
        self.context = context
        self.context_digests = context_digests
        self.cache_mounts = cache_mounts
        self.dockerfile = dockerfile
        self.escape = dockerfile.escape
        self.plan = plan
        self.options = options
        self.emit = emit
        self.results: dict[int, StageState] = {}
        self.used_args: set[str] = set()
        self.step = 0
        self.total = 0

    # -- the whole build -------------------------------------------------------

    async def run(self) -> str:
        stages, final = needed_stages(self.plan, self.options.target, self.escape)
        self.total = sum(1 + len(s.instructions) for s in stages)
        for stage in stages:
            self.results[stage.index] = await self._stage(stage)
        state = self.results[final.index]
        if self.options.labels:
            labels = dict(state.config.get("Labels") or {})
            labels.update(self.options.labels)
            text = "LABEL " + " ".join(
                f"{k}={json.dumps(v)}" for k, v in self.options.labels.items()
            )
            await self._config_step(
                state, text, lambda doc: doc.setdefault("config", {}).__setitem__("Labels", labels)
            )
        if state.image_id is None:
            raise InvalidArgument("the build made no image: FROM scratch with no step adds nothing")
        # An ARG before FROM consumes its build-arg, as docker counts it, used or not.
        declared = self.used_args | self.plan.meta_names
        unused = sorted(set(self.options.build_args) - declared - PROXY_ARGS)
        if unused:
            await self.emit(
                f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n"
            )
        return state.image_id

    async def _stage(self, stage: Stage) -> StageState:
        state = await self._from(stage)
        triggers = list(state.config.pop("OnBuild", None) or [])
        if triggers:
            word = "trigger" if len(triggers) == 1 else "triggers"
            await self.emit(f"# Executing {len(triggers)} build {word}\n")
            for text in triggers:
                inst = parse_instruction_line(text, stage.from_line.line)
                await self._instruction(stage, state, inst, announce=False)
        for inst in stage.instructions:
            await self._instruction(stage, state, inst)
        return state

    def _announce(self, inst: Instruction) -> Awaitable[None]:
        self.step += 1
        return self.emit(f"Step {self.step}/{self.total} : {inst.text}\n")

    async def _from(self, stage: Stage) -> StageState:
        await self._announce(stage.from_line)
        base = stage.base
        earlier = find_stage(self.plan.stages, base, stage.index) if not base.isdigit() else None
        if earlier is not None:
            prev = self.results[earlier.index]
            state = StageState(prev.image_id, copy.deepcopy(prev.doc))
        elif base.lower() == "scratch":
            state = StageState(None, scratch_doc(stage.platform or self.options.platform))
        else:
            record = await self._base_image(base, stage.platform or self.options.platform)
            state = StageState(record.id, self.images.config(record))
        await self.emit(f" ---> {short_id(state.image_id) if state.image_id else 'scratch'}\n")
        return state

    async def _base_image(self, ref: str, platform: str) -> Any:
        if not self.options.pull:
            try:
                return self.images.resolve(ref)
            except NotFound:
                pass
        await self.emit(f"Pulling {ref}\n")
        try:
            result = await self.images.pull(ref, platform=platform)
        except RuntimedError as exc:
            raise BuildFailed(f"failed to resolve FROM {ref}: {exc.message}") from None
        return self.images.resolve(result.image_id)

    # -- one instruction -------------------------------------------------------

    def _env(self, state: StageState) -> dict[str, str]:
        """What words are expanded with: the stage's ARGs, then ENV over them."""
        env = {k: v for k, v in state.args.items() if v is not None}
        env.update(cfg.env_map(state.config))
        return env

    async def _instruction(
        self, stage: Stage, state: StageState, inst: Instruction, *, announce: bool = True
    ) -> None:
        if announce:
            await self._announce(inst)
        key = inst.keyword
        try:
            if key == "ARG":
                self._arg(state, inst)
                await self.emit(
                    f" ---> {short_id(state.image_id) if state.image_id else 'scratch'}\n"
                )
            elif key == "RUN":
                await self._run(state, inst)
            elif key in ("COPY", "ADD"):
                await self._copy(stage, state, inst)
            elif key == "WORKDIR":
                await self._workdir(state, inst)
            elif key in cfg.CONFIG_ONLY:
                env = self._env(state)
                if key == "CMD":
                    state.cmd_set = True

                def change(doc: dict[str, Any]) -> None:
                    conf = doc.setdefault("config", {})
                    cfg.apply(inst, conf, doc, env, self.escape, cmd_set=state.cmd_set)

                await self._config_step(state, inst.text, change)
            else:
                raise InvalidArgument(f"{key} cannot be used here")
        except InvalidArgument as exc:
            message = exc.message
            if not message.startswith("line "):
                message = f"line {inst.line}: {message}"
            raise InvalidArgument(
                f"Step {self.step}/{self.total} : {inst.text}: {message}"
            ) from None

    def _arg(self, state: StageState, inst: Instruction) -> None:
        for name, default in parse_arg(inst, self._env(state), self.escape):
            self.used_args.add(name)
            if name in self.options.build_args:
                state.args[name] = self.options.build_args[name]
            elif default is not None:
                state.args[name] = default
            else:
                state.args[name] = self.plan.meta_values.get(name)

    # -- steps that make images --------------------------------------------------

    def _next_doc(self, state: StageState, created_by: str, empty: bool) -> dict[str, Any]:
        doc = copy.deepcopy(state.doc)
        created = now_rfc3339()
        doc["created"] = created
        entry: dict[str, Any] = {"created": created, "created_by": created_by}
        if empty:
            entry["empty_layer"] = True
        doc["history"] = [*(doc.get("history") or []), entry]
        doc.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        return doc

    def _parent(self, state: StageState) -> Any:
        return self.images.metadata.get_image(state.image_id) if state.image_id else None

    async def _cached(self, state: StageState, key: str) -> bool:
        if self.options.no_cache:
            return False
        hit = self.cache.lookup(key)
        if hit is None:
            return False
        state.image_id = hit
        state.doc = self.images.config(self.images.resolve(hit))
        await self.emit(f" ---> Using cache\n ---> {short_id(hit)}\n")
        return True

    async def _commit(self, state: StageState, key: str, doc: dict[str, Any], layer: Any) -> None:
        if layer is not None:
            doc["rootfs"]["diff_ids"] = [*doc["rootfs"].get("diff_ids", []), layer.diff_id]
        else:
            doc["history"][-1]["empty_layer"] = True
        image_id = await asyncio.to_thread(
            record_step, self.images, doc, self._parent(state), layer
        )
        self.cache.store(key, image_id)
        state.image_id = image_id
        state.doc = doc
        await self.emit(f" ---> {short_id(image_id)}\n")

    async def _config_step(
        self, state: StageState, text: str, change: Callable[[dict[str, Any]], None]
    ) -> None:
        doc = self._next_doc(state, NOP + " " + text, empty=True)
        change(doc)
        config_json = json.dumps(doc["config"], sort_keys=True)
        key = cache_key(
            state.image_id or "scratch",
            text,
            {
                "config": config_json,
                "author": doc.get("author", ""),
                "arch": doc.get("architecture"),
            },
        )
        if await self._cached(state, key):
            return
        await self._commit(state, key, doc, None)

    async def _run(self, state: StageState, inst: Instruction) -> None:
        argv = self._run_argv(state, inst)
        declared = {k: v for k, v in state.args.items() if v is not None}
        proxies = {k: v for k, v in self.options.build_args.items() if k in PROXY_ARGS}
        network = inst.flag("network")
        if network is not None and network not in ("none", "host", "default"):
            raise InvalidArgument(f"unsupported RUN --network={network}: use none, host or default")
        net = self.options.network if network in (None, "default") else network
        if net == "default":
            net = ""
        mounts = [expand_word(m, self._env(state), self.escape) for m in inst.flag_values("mount")]
        shown_args = {k: v for k, v in declared.items() if k not in PROXY_ARGS}
        prefix = ""
        if shown_args:
            prefix = (
                f"|{len(shown_args)} "
                + " ".join(f"{k}={v}" for k, v in sorted(shown_args.items()))
                + " "
            )
        created_by = prefix + " ".join(argv)
        key = cache_key(
            state.image_id or "scratch",
            "RUN " + json.dumps(argv),
            {"args": sorted(declared.items()), "network": net, "mounts": mounts},
        )
        if await self._cached(state, key):
            return
        if state.image_id is None:
            raise InvalidArgument("RUN needs a base image with a shell: FROM scratch has no files")
        spec = RunSpec(
            image_id=state.image_id,
            argv=argv,
            env=[f"{k}={v}" for k, v in {**proxies, **declared}.items()],
            user=state.config.get("User") or "",
            working_dir=state.config.get("WorkingDir") or "",
            network=net,
            mounts=mounts,
        )
        doc = self._next_doc(state, created_by, empty=False)
        layer = await run_step(self, spec)
        await self._commit(state, key, doc, layer)

    def _run_argv(self, state: StageState, inst: Instruction) -> list[str]:
        if inst.json_args is not None:
            return list(inst.json_args)
        shell = cfg.shell_of(state.config)
        if not inst.heredocs:
            return [*shell, inst.args]
        first = inst.heredocs[0]
        marker_only = inst.args.strip().lstrip("<").lstrip("-").strip("'\"") == first.name
        if marker_only and len(inst.heredocs) == 1:
            body = first.content
            if body.startswith("#!"):
                # A script with its own interpreter: run it as a file, as BuildKit does.
                return [
                    *shell,
                    f"cat > /tmp/.build-heredoc <<'{first.name}'\n{body}{first.name}\n"
                    f"chmod +x /tmp/.build-heredoc && /tmp/.build-heredoc; "
                    f"code=$?; rm -f /tmp/.build-heredoc; exit $code",
                ]
            return [*shell, body]
        # `cmd <<EOF`: the shell reads the heredocs itself, as written.
        script = inst.args + "\n" + "".join(f"{d.content}{d.name}\n" for d in inst.heredocs)
        return [*shell, script]

    async def _workdir(self, state: StageState, inst: Instruction) -> None:
        path = cfg.workdir(state.config, expand_word(inst.args, self._env(state), self.escape))
        text = f"WORKDIR {path}"
        doc = self._next_doc(state, NOP + " " + text, empty=False)
        doc.setdefault("config", {})["WorkingDir"] = path
        key = cache_key(state.image_id or "scratch", text)
        if await self._cached(state, key):
            return
        lowers = lowers_of(self.images, state.image_id)
        async with scratch_snapshot(self.snapshotter, lowers) as (snap, root):
            await asyncio.to_thread(_mkdir_in_root, root, path)
            layer = await diff_layer(self.images, self.snapshotter, snap, lowers)
        await self._commit(state, key, doc, layer)

    # -- COPY / ADD --------------------------------------------------------------

    async def _copy(self, stage: Stage, state: StageState, inst: Instruction) -> None:
        env = self._env(state)
        chown = inst.flag("chown")
        chown = expand_word(chown, env, self.escape) if chown else None
        chmod = cp.parse_chmod(inst.flag("chmod"), inst.line)
        source_ref = inst.flag("from")
        if source_ref is not None and inst.keyword == "ADD":
            raise InvalidArgument("ADD does not take --from: use COPY --from")
        heredoc_docs = list(inst.heredocs)
        if inst.json_args is not None:
            words = list(inst.json_args)
        else:
            words = expand_words(inst.args, env, self.escape)
        if heredoc_docs:
            names = {d.name for d in heredoc_docs}
            words = [w for w in words if w.lstrip("<").lstrip("-").strip("'\"") not in names]
        if len(words) < (1 if heredoc_docs else 2):
            raise InvalidArgument(f"{inst.keyword} requires at least two arguments")
        dest = words[-1]
        sources = words[:-1]
        for src in sources:
            if "://" in src or src.startswith("git@"):
                raise InvalidArgument(
                    f"{inst.keyword} {src}: fetching URLs is not supported by runtimed's builder "
                    "(nothing outside loopback is reachable here); download the file into the "
                    "build context and COPY it"
                )
        async with self._source_tree(stage, source_ref, env) as (root, label, source_id):
            root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                matches: list[cp.Match] = []
                for src in sources:
                    matches.extend(cp.find_sources(root_fd, src, inst.line, label))
                if source_id:
                    digest = cache_key(source_id, json.dumps([m.rel for m in matches]))
                else:
                    digest = await asyncio.to_thread(
                        cp.checksum, root_fd, matches, self.context_digests
                    )
                docs_digest = cache_key(
                    "", json.dumps([[d.name, self._heredoc_text(d, env)] for d in heredoc_docs])
                )
                text = f"{inst.keyword} {json.dumps(sources)} {dest}"
                kind = "dir" if any(m.is_dir for m in matches) else "file"
                created_by = (
                    f"{NOP}{inst.keyword} {kind}:{digest.removeprefix('sha256:')} in {dest} "
                )
                key = cache_key(
                    state.image_id or "scratch",
                    text,
                    {
                        "files": digest,
                        "heredocs": docs_digest,
                        "chown": chown or "",
                        "chmod": chmod,
                        "workdir": state.config.get("WorkingDir") or "/",
                    },
                )
                if await self._cached(state, key):
                    return
                doc = self._next_doc(state, created_by, empty=False)
                lowers = lowers_of(self.images, state.image_id)
                async with scratch_snapshot(self.snapshotter, lowers) as (snap, target):
                    await asyncio.to_thread(
                        self._write_copy,
                        inst,
                        root_fd,
                        matches,
                        heredoc_docs,
                        env,
                        target,
                        dest,
                        state.config.get("WorkingDir") or "/",
                        chown,
                        chmod,
                    )
                    layer = await diff_layer(self.images, self.snapshotter, snap, lowers)
            finally:
                os.close(root_fd)
        await self._commit(state, key, doc, layer)

    def _heredoc_text(self, doc: Any, env: dict[str, str]) -> str:
        return expand_word(doc.content, env, self.escape) if doc.expand else doc.content

    def _write_copy(
        self,
        inst: Instruction,
        root_fd: int,
        matches: list[cp.Match],
        heredoc_docs: list[Any],
        env: dict[str, str],
        target: Path,
        dest: str,
        workdir: str,
        chown: str | None,
        chmod: int | None,
    ) -> None:
        owner = cp.resolve_owner(chown, target, inst.line)
        target_fd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            absolute = dest if dest.startswith("/") else os.path.join(workdir, dest)
            dest_is_dir = _is_dir_in_root(target_fd, absolute)
            count = len(matches) + len(heredoc_docs)
            plan = cp.plan_destinations(matches, count, dest, workdir, dest_is_dir, inst.line)
            archives = []
            if inst.keyword == "ADD":
                for match in matches:
                    if not match.is_dir and cp.is_archive(_host_path(root_fd, match.rel)):
                        archives.append(match)
                plan.items = [(m, d) for m, d in plan.items if m not in archives]
            existing = {d for _, d in plan.items if _is_dir_in_root(target_fd, d)}
            tmp = target.parent / "copy.tar"
            with open(tmp, "w+b") as spool:
                cp.write_tar(spool, root_fd, plan, owner, chmod, existing)
                spool.seek(0)
                copyin.extract(spool, target_fd, "/", "the image", owners=True)
            os.unlink(tmp)
            for match in archives:
                into = os.path.normpath(absolute)
                with open(_host_path(root_fd, match.rel), "rb") as archive:
                    copyin.extract(archive, target_fd, into, "the image", owners=True)
            for heredoc in heredoc_docs:
                content = self._heredoc_text(heredoc, env).encode()
                path = os.path.join(absolute, heredoc.name) if plan.into_dir else absolute
                _write_file_in_root(
                    target, path, content, owner, chmod if chmod is not None else 0o644
                )
        finally:
            os.close(target_fd)

    def _source_tree(self, stage: Stage, ref: str | None, env: dict[str, str]) -> Any:
        return _SourceTree(self, stage, ref, env)


class _SourceTree:
    """The tree a COPY reads: the context, an earlier stage's image, or another image."""

    def __init__(
        self, builder: Builder, stage: Stage, ref: str | None, env: dict[str, str]
    ) -> None:
        self.builder = builder
        self.stage = stage
        self.ref = ref
        self.env = env
        self._snapshot: Any = None

    async def __aenter__(self) -> tuple[Path, str, str]:
        b = self.builder
        if self.ref is None:
            return b.context, "the build context", ""
        ref = expand_word(self.ref, b.plan.meta_values, b.escape)
        found = find_stage(b.plan.stages, ref, self.stage.index)
        if found is not None:
            image_id = b.results[found.index].image_id
            label = f"stage {found.label}"
        else:
            image_id = (await b._base_image(ref, b.options.platform)).id
            label = f"image {ref}"
        if image_id is None:
            raise InvalidArgument(f"COPY --from={ref}: {label} is empty (FROM scratch)")
        self._snapshot = scratch_snapshot(b.snapshotter, lowers_of(b.images, image_id))
        _key, root = await self._snapshot.__aenter__()
        return root, label, image_id

    async def __aexit__(self, *exc: object) -> None:
        if self._snapshot is not None:
            await self._snapshot.__aexit__(*exc)


def _host_path(root_fd: int, rel: str) -> str:
    fd = open_in_root(root_fd, rel or ".", os.O_PATH)
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _is_dir_in_root(root_fd: int, path: str) -> bool:
    try:
        fd = open_in_root(root_fd, path, os.O_PATH)
    except OSError:
        return False
    with closing(fd):
        return os.path.isdir(f"/proc/self/fd/{fd}")


def _mkdir_in_root(root: Path, path: str) -> None:
    """mkdir -p `path` inside `root`, symlinks followed as the container would."""
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        current = ""
        for part in [p for p in path.split("/") if p]:
            current = f"{current}/{part}"
            try:
                os.close(open_in_root(root_fd, current, os.O_PATH | os.O_DIRECTORY))
                continue
            except FileNotFoundError:
                pass
            except NotADirectoryError:
                raise InvalidArgument(f"WORKDIR {path}: {current} is not a directory") from None
            parent = open_in_root(
                root_fd, os.path.dirname(current) or "/", os.O_PATH | os.O_DIRECTORY
            )
            with closing(parent):
                os.mkdir(part, 0o755, dir_fd=parent)
    finally:
        os.close(root_fd)


def _write_file_in_root(root: Path, path: str, content: bytes, owner: cp.Owner, mode: int) -> None:
    _mkdir_in_root(root, os.path.dirname(path))
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parent = open_in_root(root_fd, os.path.dirname(path) or "/", os.O_PATH | os.O_DIRECTORY)
        with closing(parent):
            name = os.path.basename(path)
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if not os.path.isdir(f"/proc/self/fd/{parent}/{name}"):
                    os.unlink(name, dir_fd=parent)
                del st
            except FileNotFoundError:
                pass
            fd = os.open(
                name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=parent,
            )
            with os.fdopen(fd, "wb") as out:
                out.write(content)
                os.fchown(out.fileno(), owner.uid, owner.gid)
                os.fchmod(out.fileno(), mode)
    finally:
        os.close(root_fd)

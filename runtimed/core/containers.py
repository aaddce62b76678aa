"""Containers: create, start, stop, remove, and follow them through their shims.

Both front doors call this service. A container's process belongs to its
shim; the daemon keeps the record, tells the shim what to do, and learns of
exits by long-polling the shim (`wait`). Nothing here blocks on container
output: logs are written by the shim.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from runtimed.core import restart
from runtimed.core.events import CONTAINER, EventBus, container_attributes
from runtimed.core.hooks import ContainerHook
from runtimed.core.hostfiles import write_host_files
from runtimed.core.logdrivers import LogDrivers
from runtimed.core.model import (
    PID_CONTAINER,
    PID_HOST,
    PID_OWN,
    PID_POD,
    Container,
    ContainerConfig,
    ContainerState,
    RestartPolicy,
    Sandbox,
    SandboxConfig,
    SandboxState,
    Status,
    now_ns,
)
from runtimed.core.names import random_name, validate_name
from runtimed.core.shim_client import AttachStream, ShimClient, ShimLauncher
from runtimed.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from runtimed.images.service import ImageService
from runtimed.oci.runtime import OciRuntime
from runtimed.oci.signals import parse_signal
from runtimed.oci.spec import (
    SECCOMP_DEFAULT,
    BindMount,
    NamespacePaths,
    SpecRequest,
    build_exec_process,
    build_spec,
    resolve_args,
)
from runtimed.rootless.userns import unreachable_path
from runtimed.snapshots import Snapshotter
from runtimed.store.atomicfile import write_atomic
from runtimed.store.containers import ContainerRecords

log = structlog.get_logger(__name__)

DEFAULT_STOP_TIMEOUT = 10
SIGKILL = 9
PRE_START_ATTACH_TIMEOUT = 5.0
# Retrying states a full disk kept out of the database: first after, at most every (s).
DEFERRED_RETRY_FIRST = 0.5
DEFERRED_RETRY_MAX = 5.0


@dataclass
class CreateRequest:
    """What docker run/create and CRI CreateContainer ask for, in core terms."""

    image: str
    name: str = ""
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    read_only: bool = False
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    stop_signal: str = ""
    stop_timeout: int = -1
    binds: list[BindMount] = field(default_factory=list)
    # docker's -v makes a missing bind source directory; --mount and CRI refuse it.
    make_bind_sources: bool = False
    auto_remove: bool = False
    log_driver: str = ""
    log_opts: dict[str, str] = field(default_factory=dict)
    log_path: str = ""  # CRI: where kubelet wants the log
    sandbox_id: str = ""  # CRI: the pod; empty: an implicit sandbox of its own
    cri: dict[str, Any] | None = None
    sysctls: dict[str, str] = field(default_factory=dict)
    rlimits: list[tuple[str, int, int]] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    no_new_privileges: bool = True
    # What oci.spec.SpecRequest takes as they are: groups, masked paths, seccomp.
    supplemental_groups: list[int] = field(default_factory=list)
    groups_strict: bool = False
    masked_paths: list[str] | None = None
    readonly_paths: list[str] | None = None
    seccomp: str = SECCOMP_DEFAULT
    seccomp_profile: dict[str, Any] | None = None
    # Per-part settings (volumes, network, ...), each under its own key; see core/hooks.py.
    extras: dict[str, Any] = field(default_factory=dict)
    # A PID_* mode of core.model; PID_CONTAINER + an id or a name.
    pid_mode: str = ""


@dataclass
class _PreStartAttach:
    """An attach that arrived before start: start waits until it is connected."""

    created: asyncio.Event = field(default_factory=asyncio.Event)
    connected: asyncio.Event = field(default_factory=asyncio.Event)


class ContainerService:
    def __init__(
        self,
        *,
        records: ContainerRecords,
        images: ImageService,
        snapshotter: Snapshotter,
        launcher: ShimLauncher,
        runtime: OciRuntime,
        run_dir: Path,
        data_dir: Path,
        default_log_driver: str = "json-file",
        sandbox_namespaces: Callable[[Sandbox], NamespacePaths] | None = None,
    ) -> None:
        self.records = records
        self.images = images
        self.snapshotter = snapshotter
        self.launcher = launcher
        self.runtime = runtime
        self.run_dir = run_dir
        self.data_dir = data_dir
        self.default_log_driver = default_log_driver
        self.log_drivers = LogDrivers(default_log_driver)
        self.sandbox_namespaces = sandbox_namespaces or (lambda _sb: NamespacePaths())
        self._monitors: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._changed: dict[str, asyncio.Condition] = {}
        self._pre_start: dict[str, list[_PreStartAttach]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self.hooks: list[ContainerHook] = []
        self.events = EventBus()  # the daemon's shared bus replaces this one
        # Images in use may not be removed: the image service asks us.
        images.containers_using = records.using_image

    # -- lookup ----------------------------------------------------------------

    def get(self, ref: str) -> Container:
        """By full id, name, or unique id prefix (docker's order)."""
        if not ref:
            raise InvalidArgument("container id or name is required")
        ref = ref.lstrip("/")
        found = self.records.get(ref) or self.records.by_name(ref)
        if found:
            return found
        matches = self.records.with_prefix(ref) if ref.isalnum() else []
        if len(matches) > 1:
            raise InvalidArgument(f"multiple containers found with provided prefix: {ref}")
        if matches:
            return matches[0]
        raise NotFound(f"No such container: {ref}")

    def list(self) -> list[Container]:
        return self.records.containers()

    def state_dir(self, container_id: str) -> Path:
        return self.run_dir / "containers" / container_id

    def files_dir(self, container_id: str) -> Path:
        return self.data_dir / "containers" / container_id

    def shim(self, container: Container) -> ShimClient:
        return ShimClient(self.state_dir(container.id))

    def _lock(self, container_id: str) -> asyncio.Lock:
        return self._locks.setdefault(container_id, asyncio.Lock())

    def _condition(self, container_id: str) -> asyncio.Condition:
        return self._changed.setdefault(container_id, asyncio.Condition())

    def announce(self, container: Container, action: str, **extra: str) -> None:
        self.events.publish(
            CONTAINER, action, container.id, container_attributes(container, **extra)
        )

    async def _save(self, container: Container, *, deferrable: bool = False) -> None:
        """Record the state. `deferrable`: a full disk does not fail it (see
        store/containers.py); it is written when space returns."""
        self.records.save_state(container, defer_if_full=deferrable)
        if deferrable and self.records.deferred(container.id):
            log.warning("container_state_deferred", container_id=container.id, reason="disk full")
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush_deferred(), name="flush-states")
        cond = self._condition(container.id)
        async with cond:
            cond.notify_all()

    async def update_state(
        self, container_id: str, change: Callable[[Container], None]
    ) -> Container | None:
        """Apply `change` to the container's latest state under its lock and save it (for
        parts that keep state of their own there, such as health checks); None: gone."""
        async with self._lock(container_id):
            container = self.records.get(container_id)
            if container is None:
                return None
            change(container)
            await self._save(container)
            return container

    async def _flush_deferred(self) -> None:
        delay = DEFERRED_RETRY_FIRST
        while True:
            await asyncio.sleep(delay)
            try:
                if self.records.flush_deferred():
                    log.info("container_states_saved")
                    return
            except Exception:  # noqa: BLE001 - keep trying: the states are only in memory
                log.exception("container_state_flush_failed")
            delay = min(delay * 2, DEFERRED_RETRY_MAX)

    # -- create ----------------------------------------------------------------

    async def create(self, req: CreateRequest) -> Container:
        image = self.images.resolve(req.image)
        image_config = self.images.config(image).get("config") or {}
        sandbox = self.records.get_sandbox(req.sandbox_id) if req.sandbox_id else None
        if req.sandbox_id and sandbox is None:
            raise NotFound(f"pod sandbox {req.sandbox_id} not found")
        if sandbox is not None and not sandbox.state.ready:
            raise FailedPrecondition(f"pod sandbox {sandbox.id} is not ready")
        pid_mode = self._check_pid_mode(req.pid_mode, sandbox)
        args = resolve_args(image_config, req.entrypoint, req.cmd)
        for hook in self.hooks:
            await hook.validate(req, image_config)
        for bind in req.binds:
            await asyncio.to_thread(_check_bind_source, bind.source, make=req.make_bind_sources)
        if req.log_path:
            await asyncio.to_thread(_make_log_directory, Path(req.log_path).parent)
        container_id = secrets.token_hex(32)
        name = validate_name(req.name) if req.name else self._free_name()
        hostname = req.hostname or (sandbox.config.hostname if sandbox else container_id[:12])
        implicit = None
        if sandbox is None:
            implicit = Sandbox(
                id=container_id,
                name=f"implicit-{container_id}",
                config=SandboxConfig(kind="implicit", hostname=hostname),
                state=SandboxState(),
                created_at=now_ns(),
            )
        files = self.files_dir(container_id)
        driver = req.log_driver or ("cri" if req.cri is not None else self.default_log_driver)
        log_path = req.log_path or str(files / f"{container_id}-json.log")
        stop_signal = req.stop_signal or image_config.get("StopSignal") or "SIGTERM"
        parse_signal(stop_signal)  # refuse a bad one now, not at stop time
        spec = SpecRequest(
            image_config={},
            entrypoint=req.entrypoint,
            cmd=req.cmd,
            env=list(req.env),
            working_dir=req.working_dir,
            user=req.user,
            hostname=hostname,
            tty=req.tty,
            stdin=req.stdin,
            readonly_rootfs=req.read_only,
            mounts=list(req.binds),
            namespaces=NamespacePaths(),
            hostname_file=str(files / "hostname"),
            hosts_file=str(files / "hosts"),
            resolv_conf=str(files / "resolv.conf"),
            sysctls=dict(req.sysctls),
            rlimits=list(req.rlimits),
            cap_add=list(req.cap_add),
            cap_drop=list(req.cap_drop),
            privileged=req.privileged,
            no_new_privileges=req.no_new_privileges,
            stop_signal=stop_signal,
            annotations=dict(req.annotations),
            supplemental_groups=list(req.supplemental_groups),
            groups_strict=req.groups_strict,
            masked_paths=req.masked_paths,
            readonly_paths=req.readonly_paths,
            seccomp=req.seccomp,
            seccomp_profile=req.seccomp_profile,
        )
        config = ContainerConfig(
            image=req.image,
            image_id=image.id,
            spec=_spec_to_dict(spec),
            args=args,
            labels=dict(req.labels),
            annotations=dict(req.annotations),
            tty=req.tty,
            stdin=req.stdin,
            stdin_once=req.stdin_once,
            auto_remove=req.auto_remove,
            restart_policy=req.restart_policy,
            stop_signal=stop_signal,
            stop_timeout=req.stop_timeout if req.stop_timeout >= 0 else DEFAULT_STOP_TIMEOUT,
            log_driver=driver,
            log_opts=dict(req.log_opts),
            log_path=log_path,
            cri=req.cri,
            extras=dict(req.extras),
            pid_mode=pid_mode,
        )
        container = Container(
            id=container_id,
            name=name,
            sandbox_id=sandbox.id if sandbox else container_id,
            config=config,
            state=ContainerState(),
            created_at=now_ns(),
        )
        dns = sandbox.config.dns if sandbox else {}
        await asyncio.to_thread(
            write_host_files,
            files,
            hostname,
            dns_servers=dns.get("servers"),
            dns_searches=dns.get("searches"),
            dns_options=dns.get("options"),
        )
        try:
            await asyncio.to_thread(self.snapshotter.mount, container_id, self._lowers(image.id))
            self.records.add_container(container, implicit)
        except BaseException:
            await asyncio.to_thread(self._discard_files, container_id)
            raise
        try:
            for hook in self.hooks:
                await hook.created(container, req)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.remove(container_id, force=True, remove_volumes=True)
            raise
        self.announce(container, "create")
        log.info("container_created", container_id=container_id, name=name, image=image.id)
        return container

    def _check_pid_mode(self, mode: str, sandbox: Sandbox | None) -> str:
        """The pid mode to record; another container's must be running (and in our pod)."""
        if mode in (PID_OWN, PID_HOST):
            return mode
        if mode == PID_POD:
            if sandbox is None:
                raise InvalidArgument("pid mode 'pod' needs a pod sandbox")
            return mode
        if not mode.startswith(PID_CONTAINER):
            raise InvalidArgument(
                f"invalid pid mode {mode!r}: use '' (own), 'pod', 'host' or 'container:<id>'"
            )
        ref = mode.removeprefix(PID_CONTAINER)
        try:
            target = self.get(ref)
        except NotFound:
            raise NotFound(
                f"container {ref!r}, whose pid namespace was asked for, not found"
            ) from None
        if sandbox is not None and target.sandbox_id != sandbox.id:
            raise InvalidArgument(
                f"container {target.id} does not belong to pod sandbox {sandbox.id}: "
                "only a container of the same pod can share its pid namespace"
            )
        if not target.running:
            raise FailedPrecondition(
                f"container {target.id} is not running: its pid namespace cannot be joined"
            )
        if target.config.pid_mode == PID_HOST:
            # Its namespace is the host's: join it as the host's (no procfs can be mounted
            # there), as docker follows the chain.
            return PID_HOST
        return PID_CONTAINER + target.id

    def _pid_namespace(self, container: Container, pod_pid: str | None) -> str | None:
        """The pid namespace path to join at start (None: a new one)."""
        mode = container.config.pid_mode
        if mode == PID_POD:
            return pod_pid  # None in a pod without a shared namespace: one of its own
        if mode.startswith(PID_CONTAINER):
            target = self.records.get(mode.removeprefix(PID_CONTAINER))
            if target is None or not target.running or target.state.pid <= 0:
                raise FailedPrecondition(
                    f"container {mode.removeprefix(PID_CONTAINER)}, whose pid namespace "
                    f"container {container.id} joins, is not running"
                )
            return f"/proc/{target.state.pid}/ns/pid"
        return None

    def _free_name(self) -> str:
        for _ in range(50):
            name = random_name()
            if self.records.by_name(name) is None:
                return name
        return f"{random_name()}_{secrets.token_hex(3)}"

    def _lowers(self, image_id: str) -> list[Path]:
        record = self.images.metadata.get_image(image_id)
        if record is None:
            raise NotFound(f"image {image_id} of this container is gone")
        return [self.images.layers.path(c) for c in reversed(record.chain_ids)]

    def _discard_files(self, container_id: str) -> None:
        with contextlib.suppress(Exception):
            self.snapshotter.remove(container_id)
        shutil.rmtree(self.files_dir(container_id), ignore_errors=True)

    # -- start -----------------------------------------------------------------

    async def start(self, ref: str) -> Container:
        container = self.get(ref)
        try:
            async with self._lock(container.id):
                container = self.get(container.id)
                if container.running:
                    return container
                await self._start_locked(container)
        except Exception:
            # docker run --rm leaves nothing behind, not even when the start fails.
            if container.config.auto_remove:
                with contextlib.suppress(Exception):
                    await self.remove(container.id, force=True, remove_volumes=True)
            raise
        return container

    async def _start_locked(self, container: Container) -> None:
        client = self.shim(container)
        # A shim of an earlier run of this container holds the old process state.
        with contextlib.suppress(Unavailable):
            await client.delete()
        await asyncio.to_thread(shutil.rmtree, self.state_dir(container.id), True)
        rootfs = await asyncio.to_thread(
            self.snapshotter.mount, container.id, self._lowers(container.config.image_id)
        )
        request = self._spec_request(container)
        prepared: list[ContainerHook] = []
        try:
            for hook in self.hooks:
                prepared.append(hook)
                await hook.before_start(container, request)
            pid = await self._create_and_start(container, request, rootfs)
        except BaseException:
            # Whatever the hooks set up for this run (mounts, ports) is released again.
            for hook in prepared:
                with contextlib.suppress(Exception):
                    await hook.after_stop(container)
            with contextlib.suppress(Exception):
                await client.delete()
            raise
        state = container.state
        state.status = Status.RUNNING
        state.pid = pid
        state.started_at = now_ns()
        state.finished_at = 0
        state.exit_code = 0
        state.reason = ""
        state.error = ""
        state.manually_stopped = False
        await self._save(container)
        self._monitor(container)
        for hook in self.hooks:
            await hook.after_start(container)
        self.announce(container, "start")
        log.info("container_started", container_id=container.id, pid=pid)

    async def _create_and_start(
        self, container: Container, request: SpecRequest, rootfs: Path
    ) -> int:
        """Bundle, shim (crun create), pre-start attaches, crun start; the container's pid."""
        client = self.shim(container)
        await asyncio.to_thread(self._write_bundle, container, request, rootfs)
        state_dir = self.state_dir(container.id)
        shim_config = {
            "id": container.id,
            "bundle": str(state_dir / "bundle"),
            "state_dir": str(state_dir),
            "runtime": self.runtime.path,
            "runtime_root": str(self.run_dir / "crun"),
            "tty": container.config.tty,
            "stdin": container.config.stdin,
            "stdin_once": container.config.stdin_once,
            "log": _log_config(self.log_drivers, container, request, self.files_dir(container.id)),
            "exit_file": str(state_dir / "exit.json"),
            # Its processes outlive their init in the host's pid namespace, and come to the
            # shim (their subreaper): it ends them when the container stops.
            "host_pid": request.namespaces.host_pid,
            # ... and in a pid namespace it joins, they go to that namespace's init.
            "shared_pid": request.namespaces.pid is not None and not request.namespaces.host_pid,
        }
        for hook in self.hooks:
            shim_config.update(hook.shim_options(container))
        try:
            _shim_pid, pid = await self.launcher.spawn(shim_config)
        except FailedPrecondition as exc:
            container.state.error = exc.message
            await self._save(container)
            raise
        waiting = self._pre_start.pop(container.id, [])
        for gate in waiting:
            gate.created.set()
        if waiting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(g.connected.wait() for g in waiting)),
                    PRE_START_ATTACH_TIMEOUT,
                )
        for hook in self.hooks:
            await hook.before_run(container)
        await client.start()
        return pid

    def _spec_request(self, container: Container) -> SpecRequest:
        image = self.images.metadata.get_image(container.config.image_id)
        image_config = (self.images.config(image).get("config") or {}) if image else {}
        sandbox = self.records.get_sandbox(container.sandbox_id)
        request = _spec_from_dict(container.config.spec, image_config)
        if sandbox is not None and sandbox.config.kind == "pod":
            request.namespaces = self.sandbox_namespaces(sandbox)
        request.namespaces.pid = self._pid_namespace(container, request.namespaces.pid)
        request.namespaces.host_pid = container.config.pid_mode == PID_HOST
        return request

    def _write_bundle(self, container: Container, request: SpecRequest, rootfs: Path) -> dict:
        doc = build_spec(request, rootfs)
        bundle = self.state_dir(container.id) / "bundle"
        bundle.mkdir(parents=True, exist_ok=True)
        write_atomic(bundle / "config.json", json.dumps(doc).encode(), mode=0o600)
        return doc

    # -- exits -----------------------------------------------------------------

    def _monitor(self, container: Container) -> None:
        old = self._monitors.get(container.id)
        # A restart policy restarts from inside the old monitor: that one is finishing.
        if old is not None and not old.done() and old is not asyncio.current_task():
            return
        self._monitors[container.id] = asyncio.create_task(
            self._follow(container.id), name=f"monitor-{container.id[:12]}"
        )

    async def _follow(self, container_id: str) -> None:
        try:
            container = self.get(container_id)
            try:
                exit_state = await self.shim(container).wait()
            except Unavailable:
                exit_state = self._exit_file(container_id)
            await self._record_exit(container_id, exit_state)
        except NotFound:
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("container_monitor_failed", container_id=container_id)

    def _exit_file(self, container_id: str) -> dict[str, Any]:
        path = self.state_dir(container_id) / "exit.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            # The shim died without writing an exit: what happened is unknown.
            return {
                "exit_code": 255,
                "reason": "Unknown",
                "finished_at": now_ns(),
                "message": "the container's shim disappeared",
            }

    async def _record_exit(self, container_id: str, exit_state: dict[str, Any]) -> None:
        async with self._lock(container_id):
            try:
                container = self.get(container_id)
            except NotFound:
                return
            if container.state.status != Status.RUNNING:
                return
            state = container.state
            state.status = Status.EXITED
            state.exit_code = int(exit_state.get("exit_code") or 0)
            state.reason = exit_state.get("reason") or (
                "Completed" if state.exit_code == 0 else "Error"
            )
            state.message = exit_state.get("message") or ""
            state.finished_at = int(exit_state.get("finished_at") or now_ns())
            state.pid = 0
            state.paused = False
            # On a full disk the exit stays in the shim's exit file and in memory.
            await self._save(container, deferrable=True)
            if state.reason == "OOMKilled":
                self.announce(container, "oom")
            ran = max(0, state.finished_at - state.started_at) // 1_000_000_000
            self.announce(container, "die", exitCode=str(state.exit_code), execDuration=str(ran))
            log.info("container_exited", container_id=container_id, exit_code=state.exit_code)
        for hook in self.hooks:
            try:
                await hook.after_stop(container)
            except Exception:  # noqa: BLE001 - one part's cleanup must not stop the others
                log.exception(
                    "container_hook_failed", hook=type(hook).__name__, container_id=container_id
                )
        await self._after_exit(container_id)

    async def _after_exit(self, container_id: str, *, daemon_starting: bool = False) -> None:
        try:
            container = self.get(container_id)
        except NotFound:
            return
        policy = container.config.restart_policy
        if restart.should_restart(policy, container.state, daemon_starting=daemon_starting):
            await asyncio.sleep(restart.restart_delay(container.state.restart_count))
            async with self._lock(container_id):
                try:
                    container = self.get(container_id)
                except NotFound:
                    return
                if container.running or container.state.manually_stopped:
                    return
                container.state.restart_count += 1
                try:
                    await self._start_locked(container)
                except Exception as exc:  # noqa: BLE001 - recorded on the container
                    log.warning(
                        "container_restart_failed", container_id=container_id, error=str(exc)
                    )
            return
        if container.config.auto_remove:
            # --rm takes the container's anonymous volumes along, as docker's does.
            with contextlib.suppress(NotFound):
                await self.remove(container_id, force=True, remove_volumes=True)

    async def wait_exit(self, container_id: str, *, timeout: float | None = None) -> Container:
        """Until the container is not running (or gone: NotFound)."""
        cond = self._condition(container_id)

        async def until_stopped() -> None:
            async with cond:
                await cond.wait_for(lambda: not self.get(container_id).running)

        await asyncio.wait_for(until_stopped(), timeout)
        return self.get(container_id)

    async def wait(self, ref: str, condition: str = "not-running") -> int:
        container = self.get(ref)
        cond = self._condition(container.id)
        if condition in ("", "not-running"):
            if not container.running:
                return container.state.exit_code
            container = await self.wait_exit(container.id)
            return container.state.exit_code
        if condition == "next-exit":
            started = container.state.finished_at
            async with cond:
                await cond.wait_for(lambda: self._finished_after(container.id, started))
            return self.get(container.id).state.exit_code
        if condition == "removed":
            last = container.state.exit_code
            async with cond:
                while True:
                    try:
                        current = self.get(container.id)
                    except NotFound:
                        return last
                    last = current.state.exit_code
                    await cond.wait()
        raise InvalidArgument(f"invalid condition {condition!r}: not-running, next-exit or removed")

    def _finished_after(self, container_id: str, stamp: int) -> bool:
        state = self.get(container_id).state
        return state.status != Status.RUNNING and state.finished_at > stamp

    # -- stop / kill / restart -------------------------------------------------

    async def stop(self, ref: str, *, timeout: int | None = None, signal: str = "") -> Container:
        container = self.get(ref)
        # Under the lock: a restart policy starting it right now must see this.
        async with self._lock(container.id):
            container = self.get(container.id)
            container.state.manually_stopped = True
            # A full disk must not keep a container from stopping (nor wedge the stop).
            await self._save(container, deferrable=True)
        if not container.running:
            return container
        sig = parse_signal(signal or container.config.stop_signal or "SIGTERM")
        grace = container.config.stop_timeout if timeout is None or timeout < 0 else timeout
        client = self.shim(container)
        try:
            self.announce(container, "kill", signal=str(sig))
            with contextlib.suppress(FailedPrecondition):  # it exited on its own meanwhile
                await client.kill(sig, all_processes=False)
            try:
                stopped = await self.wait_exit(container.id, timeout=grace)
            except TimeoutError:
                log.info("container_stop_timeout", container_id=container.id, seconds=grace)
                self.announce(container, "kill", signal=str(SIGKILL))
                with contextlib.suppress(FailedPrecondition):
                    await client.kill(SIGKILL, all_processes=True)
                stopped = await self.wait_exit(container.id, timeout=30)
        except Unavailable:
            await self._record_exit(container.id, self._exit_file(container.id))
            stopped = self.get(container.id)
        self.announce(stopped, "stop")
        return stopped

    async def kill(self, ref: str, signal: str = "") -> None:
        container = self.get(ref)
        if not container.running:
            raise FailedPrecondition(
                f"Cannot kill container: {ref}: container {container.id} is not running"
            )
        sig = parse_signal(signal or "SIGKILL")
        self.announce(container, "kill", signal=str(sig))
        await self.shim(container).kill(sig, all_processes=False)

    async def restart(self, ref: str, *, timeout: int | None = None) -> Container:
        container = await self.stop(ref, timeout=timeout)
        container = await self.start(container.id)
        self.announce(container, "restart")
        return container

    async def rename(self, ref: str, new_name: str) -> None:
        container = self.get(ref)
        new_name = validate_name(new_name)
        if new_name == container.name:
            raise InvalidArgument(
                f"Renaming a container with the same name as its current name: {new_name}"
            )
        self.records.rename(container.id, new_name)
        old_name, container.name = container.name, new_name
        self.announce(container, "rename", oldName=f"/{old_name}")

    # -- remove ----------------------------------------------------------------

    async def remove(
        self, ref: str, *, force: bool = False, remove_volumes: bool = False
    ) -> Container:
        container = self.get(ref)
        if container.running:
            if not force:
                raise FailedPrecondition(
                    f'cannot remove container "/{container.name}": container is running: '
                    "stop the container before removing or force remove"
                )
            async with self._lock(container.id):
                container = self.get(container.id)
                container.state.manually_stopped = True
                await self._save(container, deferrable=True)  # it goes anyway
            self.announce(container, "kill", signal=str(SIGKILL))
            with contextlib.suppress(Unavailable, FailedPrecondition):
                await self.shim(container).kill(SIGKILL, all_processes=True)
            with contextlib.suppress(TimeoutError):
                await self.wait_exit(container.id, timeout=30)
        for hook in self.hooks:
            await hook.before_remove(container, remove_volumes=remove_volumes)
        async with self._lock(container.id):
            with contextlib.suppress(Unavailable):
                await self.shim(container).delete()
            monitor = self._monitors.pop(container.id, None)
            if monitor is not None and monitor is not asyncio.current_task():
                monitor.cancel()
            await asyncio.to_thread(shutil.rmtree, self.state_dir(container.id), True)
            await asyncio.to_thread(self._discard_files, container.id)
            implicit = container.sandbox_id == container.id
            self.records.delete(container, with_sandbox=implicit)
        cond = self._condition(container.id)
        async with cond:
            cond.notify_all()
        self._locks.pop(container.id, None)
        self.announce(container, "destroy")
        log.info("container_removed", container_id=container.id)
        return container

    async def prune(self, keep: Callable[[Container], bool] = lambda _c: False) -> list[Container]:
        """Remove stopped docker-style containers (kubelet owns its own), except those kept."""
        removed = []
        for container in self.list():
            if container.running or container.config.cri is not None or keep(container):
                continue
            removed.append(await self.remove(container.id))
        return removed

    # -- attach / exec ---------------------------------------------------------

    async def attach(
        self,
        ref: str,
        *,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        on_waiting: Callable[[], Awaitable[None]] | None = None,
    ) -> AttachStream:
        """Attach to a running container, or wait for the next start of a stopped one.

        `on_waiting` runs once the attach is registered for a container that is
        not running yet, so the client can now ask for the start without losing
        the first bytes of output.
        """
        container = self.get(ref)
        self.announce(container, "attach")
        if container.running:
            return await self.shim(container).attach(stdin=stdin, stdout=stdout, stderr=stderr)
        gate = _PreStartAttach()
        self._pre_start.setdefault(container.id, []).append(gate)
        try:
            if on_waiting is not None:
                await on_waiting()
            await gate.created.wait()
            stream = await self.shim(container).attach(stdin=stdin, stdout=stdout, stderr=stderr)
        finally:
            gate.connected.set()
            waiting = self._pre_start.get(container.id, [])
            if gate in waiting:
                waiting.remove(gate)
        return stream

    def _running_or_fail(self, ref: str) -> Container:
        container = self.get(ref)
        if not container.running:
            raise FailedPrecondition(f"container {container.id} is not running")
        return container

    async def exec(
        self,
        ref: str,
        args: list[str],
        *,
        env: list[str] | None = None,
        user: str = "",
        working_dir: str = "",
        tty: bool = False,
        stdin: bool = False,
        exec_id: str = "",
    ) -> AttachStream:
        container = self._running_or_fail(ref)
        if container.state.paused:  # its processes could not run: refuse, as docker does
            raise FailedPrecondition(
                f"Container {container.id} is paused, unpause the container before exec"
            )
        if not args:
            raise InvalidArgument("exec: no command given")
        bundle = self.state_dir(container.id) / "bundle" / "config.json"
        base = json.loads(await asyncio.to_thread(bundle.read_text))
        rootfs = Path(base["root"]["path"])
        process = await asyncio.to_thread(
            build_exec_process, base, args, list(env or []), user, working_dir, tty, rootfs
        )
        exec_id = exec_id or secrets.token_hex(8)
        command = " ".join(args)
        self.announce(container, f"exec_create: {command}", execID=exec_id)
        stream = await self.shim(container).exec(process, tty=tty, stdin=stdin, exec_id=exec_id)
        self.announce(container, f"exec_start: {command}", execID=exec_id)

        def died(exit_doc: dict[str, Any]) -> None:
            code = str(int(exit_doc.get("exit_code") or 0))
            self.announce(container, "exec_die", execID=exec_id, exitCode=code)

        stream.on_exit = died
        return stream

    async def kill_exec(self, ref: str, exec_id: str, signal: int = SIGKILL) -> None:
        with contextlib.suppress(Unavailable, FailedPrecondition):
            await self.shim(self.get(ref)).kill_exec(exec_id, signal)

    async def reopen_log(self, ref: str) -> None:
        container = self._running_or_fail(ref)
        await self.shim(container).reopen_log()

    # -- daemon start ----------------------------------------------------------

    async def restore(self) -> None:
        """Reconnect to every shim: running ones are followed, exits that happened while
        we were away are recorded with their real codes, restart policies applied."""
        for container in self.list():
            if container.state.status != Status.RUNNING:
                continue
            client = self.shim(container)
            try:
                state = await client.state()
            except Unavailable:
                await self._record_exit(container.id, self._exit_file(container.id))
                continue
            if state.get("status") == "exited":
                await self._record_exit(container.id, state)
            else:
                self._monitor(container)
                for hook in self.hooks:
                    await hook.restored(container)
        for container in self.list():
            if container.config.auto_remove and not container.running:
                # --rm containers that ended while we were away, or that we died between
                # creating and removing: gone, as docker's restore removes them.
                try:
                    await self.remove(container.id, force=True, remove_volumes=True)
                except NotFound:
                    continue
                except Exception:  # noqa: BLE001 - one container must not keep the daemon down
                    log.exception("auto_remove_failed", container_id=container.id)
                    continue
                log.info("auto_removed_at_restore", container_id=container.id)
        for container in self.list():
            if container.state.status == Status.EXITED:
                policy = container.config.restart_policy
                if restart.should_restart(policy, container.state, daemon_starting=True):
                    asyncio.create_task(self._after_exit(container.id, daemon_starting=True))
        log.info("containers_restored", count=len(self.list()))

    async def release_idle_shims(self) -> bool:
        """At a clean shutdown: shims of stopped containers go (their exits are recorded).

        Returns True when no container is running, so nothing needs our namespaces.
        """
        idle = True
        for container in self.list():
            if container.running:
                idle = False
                continue
            if self.records.deferred(container.id):
                continue  # its exit file is its only record on disk
            with contextlib.suppress(Unavailable, FailedPrecondition):
                await self.shim(container).delete()
        return idle

    async def aclose(self) -> None:
        for task in self._monitors.values():
            task.cancel()
        for task in self._monitors.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(Exception):  # a last try; the next start reads exit files
                self.records.flush_deferred()


def _check_bind_source(source: str, *, make: bool) -> None:
    try:
        os.stat(source)
    except FileNotFoundError:
        if make:
            try:
                os.makedirs(source, mode=0o755, exist_ok=True)
            except OSError as exc:  # as rootless docker words it
                raise InvalidArgument(
                    f"error while creating mount source path '{source}': "
                    f"mkdir {exc.filename}: {exc.strerror.lower()}"
                ) from None
            return
        raise InvalidArgument(
            f'invalid mount config for type "bind": bind source path does not exist: {source}'
        ) from None
    except PermissionError:
        raise unreachable_path(source, "bind source") from None


def _make_log_directory(directory: Path) -> None:
    """kubelet makes the pod's log directory, crictl does not: make it (0755) as containerd does."""
    try:
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    except PermissionError:
        raise unreachable_path(str(directory), "log directory") from None
    except FileExistsError:
        raise InvalidArgument(f"log directory {directory} is not a directory") from None


def _log_config(
    drivers: LogDrivers, container: Container, spec: SpecRequest, files_dir: Path
) -> dict[str, Any]:
    """The ShimConfig "log" object: driver plugin, options, container facts (see
    runtimed_shim.logpipe and runtimed.core.logdrivers)."""
    return drivers.shim_config(container, spec, files_dir)


def _spec_to_dict(spec: SpecRequest) -> dict[str, Any]:
    data = dataclasses.asdict(spec)
    data.pop("image_config", None)
    return data


def _spec_from_dict(data: dict[str, Any], image_config: dict[str, Any]) -> SpecRequest:
    data = dict(data)
    data["image_config"] = image_config
    data["mounts"] = [BindMount(**m) for m in data.get("mounts", [])]
    data["namespaces"] = NamespacePaths(**data.get("namespaces", {}))
    data["rlimits"] = [tuple(r) for r in data.get("rlimits", [])]
    return SpecRequest(**data)

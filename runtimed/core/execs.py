"""Exec instances as Docker has them: made by one call, started by another, inspected after.

`docker exec` creates an instance (its command and stdio), starts it on a
connection of its own, resizes its terminal meanwhile, and asks for its exit
code once the output has ended. The instance lives here, in memory, as it does
in dockerd: a daemon restart forgets them (their processes end with their
shim connections). Finished instances are forgotten after KEEP seconds, and
with their container.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass, field

from runtimed.core.containers import ContainerService
from runtimed.core.shim_client import EXIT, AttachStream
from runtimed.errors import FailedPrecondition, InvalidArgument, NotFound

KEEP = 600.0  # seconds an exited instance stays inspectable


@dataclass
class ExecConfig:
    cmd: list[str]
    env: list[str] = field(default_factory=list)
    user: str = ""
    working_dir: str = ""
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    detach_keys: str = ""


@dataclass
class ExecInstance:
    id: str
    container_id: str
    config: ExecConfig
    started: bool = False
    running: bool = False
    exit_code: int | None = None
    finished_at: float = 0.0
    stream: AttachStream | None = None
    # A size asked for before the process has a terminal (clients resize right away).
    size: tuple[int, int] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ExecRegistry:
    def __init__(self, containers: ContainerService) -> None:
        self.containers = containers
        self._instances: dict[str, ExecInstance] = {}
        self._drains: set[asyncio.Task[None]] = set()

    def create(self, ref: str, config: ExecConfig) -> ExecInstance:
        self._forget_old()
        container = self.containers.get(ref)
        if not container.running:
            raise FailedPrecondition(f"container {container.id} is not running")
        if not config.cmd:
            raise InvalidArgument("No exec command specified")
        instance = ExecInstance(secrets.token_hex(32), container.id, config)
        self._instances[instance.id] = instance
        return instance

    def get(self, exec_id: str) -> ExecInstance:
        instance = self._instances.get(exec_id)
        if instance is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return instance

    def of_container(self, container_id: str) -> list[ExecInstance]:
        return [i for i in self._instances.values() if i.container_id == container_id]

    async def start(self, exec_id: str) -> AttachStream:
        """Run the instance's process; its output and exit come through the stream (see
        `relay_exit`). An instance runs once."""
        instance = self.get(exec_id)
        if instance.started:
            raise FailedPrecondition(f"Exec command {exec_id} has already run")
        instance.started = True
        cfg = instance.config
        try:
            stream = await self.containers.exec(
                instance.container_id,
                cfg.cmd,
                env=cfg.env,
                user=cfg.user,
                working_dir=cfg.working_dir,
                tty=cfg.tty,
                stdin=cfg.stdin,
                exec_id=instance.id,
            )
        except BaseException:
            self._finish(instance, 126)
            raise
        instance.running = True
        instance.stream = stream
        if instance.size is not None:
            await stream.resize(*instance.size)
        return stream

    def exited(self, exec_id: str, payload: bytes) -> None:
        """The EXIT frame of the instance's stream arrived."""
        try:
            code = int((json.loads(payload or b"{}") or {}).get("exit_code") or 0)
        except (ValueError, TypeError, AttributeError):
            code = 0
        with contextlib.suppress(NotFound):
            self._finish(self.get(exec_id), code)

    def ended(self, exec_id: str) -> None:
        """The stream ended without an exit (the shim went away)."""
        with contextlib.suppress(NotFound):
            instance = self.get(exec_id)
            if instance.exit_code is None:
                self._finish(instance, 0 if not instance.running else 137)

    def _finish(self, instance: ExecInstance, code: int) -> None:
        instance.running = False
        instance.exit_code = code
        instance.finished_at = time.monotonic()
        instance.stream = None
        instance.done.set()

    async def resize(self, exec_id: str, rows: int, cols: int) -> None:
        instance = self.get(exec_id)
        if instance.stream is not None:
            await instance.stream.resize(rows, cols)
        elif instance.exit_code is None:
            instance.size = (rows, cols)
        else:
            raise FailedPrecondition(f"exec {exec_id} is not running")

    async def run_detached(self, exec_id: str) -> None:
        """Start it with nobody attached; its output goes nowhere, its exit is recorded."""
        stream = await self.start(exec_id)

        async def drain() -> None:
            try:
                while (frame := await stream.read()) is not None:
                    if frame[0] == EXIT:
                        self.exited(exec_id, frame[1])
            finally:
                self.ended(exec_id)
                with contextlib.suppress(Exception):
                    await stream.close()

        task = asyncio.create_task(drain())
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    def _forget_old(self) -> None:
        now = time.monotonic()
        known = {c.id for c in self.containers.list()}
        for exec_id, instance in list(self._instances.items()):
            stale = instance.exit_code is not None and now - instance.finished_at > KEEP
            if stale or instance.container_id not in known:
                del self._instances[exec_id]

    async def aclose(self) -> None:
        for task in list(self._drains):
            task.cancel()

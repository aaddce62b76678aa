"""The container half of runtimed.v1.Engine: docker-style verbs onto ContainerService."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import structlog

from runtimed.api import containerview, healthview
from runtimed.api.containerfilter import select
from runtimed.api.engine_networks import network_extras
from runtimed.api.engine_resources import create_resources
from runtimed.api.engine_volumes import volume_extras
from runtimed.core import restart
from runtimed.core.containers import PID_CONTAINER, PID_HOST, CreateRequest
from runtimed.core.copy import copy_from_container, copy_to_container
from runtimed.core.diskusage import layer_sizes
from runtimed.core.health import EXTRAS_KEY
from runtimed.core.logs import DETAILS_METADATA, details_prefix, parse_since, read_logs
from runtimed.core.model import Container, Status
from runtimed.core.shim_client import EXIT, STDERR, STDOUT, AttachStream
from runtimed.core.top import top
from runtimed.errors import InvalidArgument, NotFound
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.oci.spec import BindMount

if TYPE_CHECKING:
    from runtimed.services import Runtime

log = structlog.get_logger(__name__)

COPY_CHUNK = 256 * 1024


def create_request(req: pb.CreateContainerRequest) -> CreateRequest:
    policy = (
        restart.parse_policy(
            req.restart_policy.name
            + (f":{req.restart_policy.max_retries}" if req.restart_policy.max_retries else "")
        )
        if req.HasField("restart_policy") and req.restart_policy.name
        else restart.parse_policy("no")
    )
    if req.pid_mode and req.pid_mode != PID_HOST and not req.pid_mode.startswith(PID_CONTAINER):
        raise InvalidArgument(f"invalid --pid {req.pid_mode!r}: use host or container:NAME")
    if req.auto_remove and policy.name != "no":
        raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")
    extras: dict = {}
    extras["volumes"] = volume_extras(req)
    extras["network"] = network_extras(req)
    if req.HasField("healthcheck"):
        extras[EXTRAS_KEY] = healthview.override(req.healthcheck)
    binds = []
    for bind in req.binds:
        if not bind.source.startswith("/"):
            continue  # a named volume: volume_extras has it
        if not bind.target.startswith("/"):
            raise InvalidArgument(f"invalid mount target {bind.target!r}: must be absolute")
        binds.append(
            BindMount(
                source=bind.source,
                destination=bind.target,
                readonly=bind.readonly,
                propagation=bind.propagation or "rprivate",
            )
        )
    return CreateRequest(
        image=req.image,
        name=req.name,
        entrypoint=list(req.entrypoint) if req.has_entrypoint else None,
        cmd=list(req.cmd) if req.has_cmd else None,
        env=list(req.env),
        working_dir=req.working_dir,
        user=req.user,
        # As docker: --network host shares the host's name along with its network.
        hostname=req.hostname or (socket.gethostname() if req.network == "host" else ""),
        labels=dict(req.labels),
        tty=req.tty,
        stdin=req.stdin_open,
        stdin_once=req.stdin_once,
        read_only=req.read_only,
        restart_policy=policy,
        stop_signal=req.stop_signal,
        stop_timeout=req.stop_timeout if req.stop_timeout >= 0 else -1,
        binds=binds,
        make_bind_sources=True,  # req.binds are -v binds (docker's HostConfig.Binds)
        auto_remove=req.auto_remove,
        log_driver=req.log_driver,
        log_opts=dict(req.log_opts),
        extras=extras,
        pid_mode=req.pid_mode,
    )


def _exit_message(payload: bytes) -> pb.StdioOutput:
    try:
        state = json.loads(payload or b"{}")
    except ValueError:
        state = {}
    return pb.StdioOutput(
        exit=pb.ProcessExit(
            exit_code=int(state.get("exit_code") or 0),
            reason=str(state.get("reason") or ""),
        )
    )


async def _relay(
    stream: AttachStream,
    request_iterator: AsyncIterator[pb.StdioInput],
    queue: asyncio.Queue[pb.StdioOutput | None],
) -> None:
    """Shim output into the queue and client input to the shim, until the process ends
    or the client detaches (half-closes without ending stdin). Always ends the queue."""

    async def outbound() -> None:
        while True:
            frame = await stream.read()
            if frame is None:
                return
            kind, data = frame
            if kind == STDOUT:
                await queue.put(pb.StdioOutput(stdout=data))
            elif kind == STDERR:
                await queue.put(pb.StdioOutput(stderr=data))
            elif kind == EXIT:
                await queue.put(_exit_message(data))
                return

    async def inbound() -> bool:
        """True when the client detached."""
        stdin_closed = False
        async for msg in request_iterator:
            which = msg.WhichOneof("msg")
            if which == "stdin":
                await stream.write_stdin(msg.stdin)
            elif which == "close_stdin":
                stdin_closed = True
                await stream.close_stdin()
            elif which == "resize":
                await stream.resize(msg.resize.rows, msg.resize.cols)
        return not stdin_closed

    out_task = asyncio.create_task(outbound())
    in_task = asyncio.create_task(inbound())
    try:
        done, _ = await asyncio.wait({out_task, in_task}, return_when=asyncio.FIRST_COMPLETED)
        detached = (
            in_task in done
            and not in_task.cancelled()
            and in_task.exception() is None
            and in_task.result()
        )
        if not detached:
            await out_task
    finally:
        for task in (in_task, out_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await stream.close()
        await queue.put(None)


def prune_filter(filters: dict[str, str], now_ns: int) -> Callable[[Container], bool]:
    """docker container prune --filter until=... / label=K[=V] / label!=K[=V]: what to keep."""
    unknown = set(filters) - {"until", "label", "label!"}
    if unknown:
        raise InvalidArgument(f"invalid filter {sorted(unknown)[0]!r}")
    until = parse_since(filters["until"], now_ns) if "until" in filters else 0

    def has(container: Container, want: str) -> bool:
        key, sep, value = want.partition("=")
        labels = container.config.labels
        return key in labels and (not sep or labels[key] == value)

    def keep(container: Container) -> bool:
        if until and container.created_at >= until:
            return True
        if "label" in filters and not has(container, filters["label"]):
            return True
        return "label!" in filters and has(container, filters["label!"])

    return keep


class ContainerRpcs:
    rt: Runtime

    @property
    def containers(self):  # noqa: ANN201 - ContainerService
        return self.rt.containers

    async def CreateContainer(
        self, request: pb.CreateContainerRequest, context: Any
    ) -> pb.CreateContainerResponse:
        core_req = create_request(request)
        try:
            self.rt.images.resolve(request.image)
        except NotFound:
            if not request.pull_if_missing:
                raise
            # Engine clients pull with progress themselves; this is the API's fallback.
            await self.rt.images.pull(request.image, platform=request.platform)
        core_req.extras["resources"], warnings = create_resources(
            self.rt.cgroups, request.resources
        )
        container = await self.containers.create(core_req)
        return pb.CreateContainerResponse(id=container.id, name=container.name, warnings=warnings)

    async def StartContainer(self, request: pb.ContainerRef, context: Any) -> pb.Empty:
        await self.containers.start(request.id)
        return pb.Empty()

    async def StopContainer(self, request: pb.StopContainerRequest, context: Any) -> pb.Empty:
        await self.containers.stop(request.id, timeout=request.timeout, signal=request.signal)
        return pb.Empty()

    async def KillContainer(self, request: pb.KillContainerRequest, context: Any) -> pb.Empty:
        await self.containers.kill(request.id, request.signal)
        return pb.Empty()

    async def RestartContainer(self, request: pb.StopContainerRequest, context: Any) -> pb.Empty:
        await self.containers.restart(request.id, timeout=request.timeout)
        return pb.Empty()

    async def WaitContainer(
        self, request: pb.WaitContainerRequest, context: Any
    ) -> pb.WaitContainerResponse:
        code = await self.containers.wait(request.id, request.condition)
        return pb.WaitContainerResponse(exit_code=code)

    async def RenameContainer(self, request: pb.RenameContainerRequest, context: Any) -> pb.Empty:
        await self.containers.rename(request.id, request.new_name)
        return pb.Empty()

    async def RemoveContainer(self, request: pb.RemoveContainerRequest, context: Any) -> pb.Empty:
        await self.containers.remove(
            request.id, force=request.force, remove_volumes=request.volumes
        )
        return pb.Empty()

    async def PruneContainers(
        self, request: pb.PruneContainersRequest, context: Any
    ) -> pb.PruneContainersResponse:
        keep = prune_filter(dict(request.filters), time.time_ns())
        # Writable layers are measured while they exist: docker's SpaceReclaimed. Only
        # those prune may remove (it leaves running, CRI and kept containers alone).
        candidates = [
            c.id
            for c in self.containers.list()
            if not c.running and c.config.cri is None and not keep(c)
        ]
        sizes = await asyncio.to_thread(layer_sizes, self.rt.snapshotter, candidates)
        removed = await self.containers.prune(keep)
        return pb.PruneContainersResponse(
            deleted=[c.id for c in removed],
            space_reclaimed=sum(sizes.get(c.id, 0) for c in removed),
        )

    async def ListContainers(
        self, request: pb.ListContainersRequest, context: Any
    ) -> pb.ListContainersResponse:
        chosen = select(self.containers, self.containers.list(), request)
        return pb.ListContainersResponse(
            containers=[containerview.summary(self.containers, c) for c in chosen]
        )

    async def InspectContainer(
        self, request: pb.ContainerRef, context: Any
    ) -> pb.InspectContainerResponse:
        container = self.containers.get(request.id)
        return pb.InspectContainerResponse(
            json=json.dumps(containerview.inspect(self.containers, container))
        )

    async def ContainerLogs(
        self, request: pb.ContainerLogsRequest, context: Any
    ) -> AsyncIterator[pb.LogEntry]:
        container = self.containers.get(request.id)
        streams = {s for s, on in (("stdout", request.stdout), ("stderr", request.stderr)) if on}
        now = time.time_ns()

        def running() -> bool:
            try:
                return self.containers.get(container.id).state.status == Status.RUNNING
            except NotFound:
                return False

        source = self.containers.log_drivers.source(
            container, self.containers.files_dir(container.id)
        )
        # --details has no field in ContainerLogsRequest: the CLI asks through metadata.
        details = (DETAILS_METADATA, "1") in tuple(context.invocation_metadata() or ())
        async for rec in read_logs(
            source.path,
            source.format,
            follow=request.follow,
            tail=request.tail,
            since_ns=parse_since(request.since, now),
            until_ns=parse_since(request.until, now),
            streams=frozenset(streams or {"stdout", "stderr"}),
            running=running,
        ):
            data = details_prefix(rec.attrs) + rec.data if details else rec.data
            yield pb.LogEntry(stream=rec.stream, data=data, time_nano=rec.time_ns)

    async def TopContainer(
        self, request: pb.TopContainerRequest, context: Any
    ) -> pb.TopContainerResponse:
        container = self.containers.get(request.id)
        titles, rows = await top(container, request.ps_args or "-ef")
        return pb.TopContainerResponse(titles=titles, processes=[pb.TopRow(fields=r) for r in rows])

    async def Attach(
        self, request_iterator: AsyncIterator[pb.StdioInput], context: Any
    ) -> AsyncIterator[pb.StdioOutput]:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("msg") != "attach":
            raise InvalidArgument("Attach: the first message must carry the attach options")
        opts = first.attach
        queue: asyncio.Queue[pb.StdioOutput | None] = asyncio.Queue()
        ready_sent = False

        async def waiting() -> None:
            nonlocal ready_sent
            ready_sent = True
            await queue.put(pb.StdioOutput(ready=True))

        connect = asyncio.create_task(
            self.containers.attach(
                opts.id,
                stdin=opts.stdin,
                stdout=opts.stdout or not (opts.stdout or opts.stderr),
                stderr=opts.stderr or not (opts.stdout or opts.stderr),
                on_waiting=waiting,
            )
        )
        relay: asyncio.Task[None] | None = None
        getter: asyncio.Task[pb.StdioOutput | None] | None = None
        try:
            while not connect.done():
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({connect, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()  # type: ignore[misc]
                else:
                    getter.cancel()
            stream = connect.result()
            if not ready_sent:
                yield pb.StdioOutput(ready=True)
            relay = asyncio.create_task(_relay(stream, request_iterator, queue))
            while (item := await queue.get()) is not None:
                yield item
        finally:
            connect.cancel()
            # A client that hangs up while we wait for the container leaves the getter
            # pending: cancelled here, it ends; left alone, it would be collected pending.
            if getter is not None:
                getter.cancel()
            if relay is not None:
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await relay

    async def Exec(
        self, request_iterator: AsyncIterator[pb.StdioInput], context: Any
    ) -> AsyncIterator[pb.StdioOutput]:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("msg") != "exec":
            raise InvalidArgument("Exec: the first message must carry the exec options")
        opts = first.exec
        stream = await self.containers.exec(
            opts.id,
            list(opts.cmd),
            env=list(opts.env),
            user=opts.user,
            working_dir=opts.working_dir,
            tty=opts.tty,
            stdin=opts.stdin and not opts.detach,
        )
        yield pb.StdioOutput(ready=True)
        if opts.detach:
            asyncio.create_task(_drain(stream))
            return
        queue: asyncio.Queue[pb.StdioOutput | None] = asyncio.Queue()
        relay = asyncio.create_task(_relay(stream, request_iterator, queue))
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relay

    async def CopyFromContainer(
        self, request: pb.CopyFromContainerRequest, context: Any
    ) -> AsyncIterator[pb.CopyChunk]:
        container = self.containers.get(request.id)
        stat, chunks = await copy_from_container(self.containers, container, request.path)
        yield pb.CopyChunk(stat_json=json.dumps(stat))
        async for chunk in chunks:
            yield pb.CopyChunk(data=chunk)

    async def CopyToContainer(
        self, request_iterator: AsyncIterator[pb.CopyToContainerChunk], context: Any
    ) -> pb.Empty:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "options":
            raise InvalidArgument("CopyToContainer: the first message must carry the options")
        container = self.containers.get(first.options.id)

        async def data() -> AsyncIterator[bytes]:
            async for chunk in request_iterator:
                yield chunk.data

        await copy_to_container(self.containers, container, first.options.path, data())
        return pb.Empty()


async def _drain(stream: AttachStream) -> None:
    with contextlib.suppress(Exception):
        while await stream.read() is not None:
            pass
    with contextlib.suppress(Exception):
        await stream.close()

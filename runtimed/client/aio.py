"""The asyncio client: `AsyncClient`, the same objects and calls as the blocking `Client`
with `await` (streams are async iterators), on grpc.aio in the running event loop."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Any

from runtimed.client import _build, _channel
from runtimed.client._models import (
    ContainerAttrs,
    ExecOutput,
    ExecResult,
    ImageAttrs,
    NetworkAttrs,
    PullProgress,
    VolumeAttrs,
    container_doc,
    image_doc,
    network_doc,
    pull_event,
    volume_doc,
)
from runtimed.client.errors import ContainerError, NotFound, translated
from runtimed.client.tls import TLSConfig
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.gen.runtimed.v1 import engine_pb2_grpc


class AsyncClient:
    """`async with AsyncClient() as client: await client.containers.run(...)`; the
    arguments are Client's. Make it inside the event loop that uses it."""

    def __init__(self, base_url: str | None = None, tls: TLSConfig | None = None) -> None:
        host, tls = _channel.resolve(base_url, tls)
        self.base_url = str(host)
        self._channel = _channel.open_channel(host, tls, aio=True)
        self.api = engine_pb2_grpc.EngineStub(self._channel)
        self.containers = AsyncContainerCollection(self)
        self.images = AsyncImageCollection(self)
        self.networks = AsyncNetworkCollection(self)
        self.volumes = AsyncVolumeCollection(self)

    @classmethod
    def from_env(cls, environment: Mapping[str, str] | None = None) -> AsyncClient:
        """RUNTIMED_HOST, RUNTIMED_TLS_VERIFY and RUNTIMED_CERT_PATH (os.environ by default)."""
        host, tls = _channel.from_env(environment)
        return cls(str(host), tls)

    async def ping(self) -> bool:
        with translated():
            await self.api.Version(pb.VersionRequest(), timeout=30)
        return True

    async def version(self) -> dict[str, Any]:
        with translated():
            reply = await self.api.Version(pb.VersionRequest())
        return _build.reply_dict(reply)

    async def info(self) -> dict[str, Any]:
        with translated():
            reply = await self.api.Info(pb.InfoRequest())
        return _build.reply_dict(reply)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --- containers ---------------------------------------------------------------------------


class AsyncContainer(ContainerAttrs):
    def __init__(self, attrs: dict[str, Any], client: AsyncClient) -> None:
        super().__init__(attrs)
        self.client = client

    async def image(self) -> AsyncImage:
        return await self.client.images.get(str(self.attrs.get("Image", "")))

    async def reload(self) -> None:
        with translated():
            reply = await self.client.api.InspectContainer(pb.ContainerRef(id=self.id))
        self.attrs = container_doc(reply)

    async def start(self) -> None:
        with translated():
            await self.client.api.StartContainer(pb.ContainerRef(id=self.id))

    async def stop(self, timeout: int | None = None) -> None:
        with translated():
            await self.client.api.StopContainer(_build.stop_request(self.id, timeout))

    async def restart(self, timeout: int | None = None) -> None:
        with translated():
            await self.client.api.RestartContainer(_build.stop_request(self.id, timeout))

    async def kill(self, signal: str | int | None = None) -> None:
        with translated():
            await self.client.api.KillContainer(_build.kill_request(self.id, signal))

    async def remove(self, v: bool = False, force: bool = False) -> None:
        with translated():
            await self.client.api.RemoveContainer(
                pb.RemoveContainerRequest(id=self.id, force=force, volumes=v)
            )

    async def rename(self, name: str) -> None:
        with translated():
            await self.client.api.RenameContainer(
                pb.RenameContainerRequest(id=self.id, new_name=name)
            )

    async def wait(
        self, timeout: float | None = None, condition: str = "not-running"
    ) -> dict[str, Any]:
        with translated():
            reply = await self.client.api.WaitContainer(
                pb.WaitContainerRequest(id=self.id, condition=condition), timeout=timeout
            )
        return _build.wait_result(reply)

    def log_stream(
        self,
        stdout: bool = True,
        stderr: bool = True,
        timestamps: bool = False,
        tail: int | str = "all",
        since: Any = None,
        follow: bool = True,
        until: Any = None,
    ) -> AsyncIterator[bytes]:
        """The output as an async iterator of chunks (logs(stream=True) of the blocking
        client), following the log until the container stops unless follow=False."""
        req = _build.logs_request(
            self.id,
            stdout=stdout,
            stderr=stderr,
            follow=follow,
            tail=tail,
            since=since,
            until=until,
        )
        return _log_chunks(self.client.api.ContainerLogs(req), timestamps)

    async def logs(
        self,
        stdout: bool = True,
        stderr: bool = True,
        timestamps: bool = False,
        tail: int | str = "all",
        since: Any = None,
        follow: bool = False,
        until: Any = None,
    ) -> bytes:
        """The output so far (or, with follow, until the container stops), as bytes."""
        chunks = self.log_stream(stdout, stderr, timestamps, tail, since, follow, until)
        return b"".join([chunk async for chunk in chunks])

    async def exec_run(
        self,
        cmd: str | list[str],
        stdout: bool = True,
        stderr: bool = True,
        tty: bool = False,
        privileged: bool = False,
        user: str = "",
        detach: bool = False,
        stream: bool = False,
        environment: Mapping[str, Any] | list[str] | None = None,
        workdir: str | None = None,
        demux: bool = False,
    ) -> ExecResult:
        """As Client's; with `stream` the output is an async iterator of chunks."""
        requests = _build.exec_requests(
            self.id, cmd, environment, user, workdir, tty, privileged, detach
        )
        collected = ExecOutput(stdout, stderr)
        call = self.client.api.Exec(iter(requests))
        if detach:
            with translated():
                async for _ in call:
                    pass
            return ExecResult(None, b"")
        if stream:
            return ExecResult(None, _exec_chunks(call, collected))
        with translated():
            async for msg in call:
                collected.chunk(msg)
        return collected.result(demux)

    async def top(self, ps_args: str | None = None) -> dict[str, Any]:
        with translated():
            reply = await self.client.api.TopContainer(
                pb.TopContainerRequest(id=self.id, ps_args=ps_args or "")
            )
        return _build.top_result(reply)


async def _log_chunks(call: AsyncIterable[pb.LogEntry], timestamps: bool) -> AsyncIterator[bytes]:
    from runtimed.cli.psformat import LogPrinter

    printer = LogPrinter(timestamps)
    with translated():
        async for entry in call:
            yield printer.format(entry)


async def _exec_chunks(
    call: AsyncIterable[pb.StdioOutput], collected: ExecOutput
) -> AsyncIterator[bytes]:
    with translated():
        async for msg in call:
            data = collected.chunk(msg)
            if data:
                yield data


class AsyncContainerCollection:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def create(
        self, image: str, command: str | list[str] | None = None, **kwargs: Any
    ) -> AsyncContainer:
        req = _build.create_request(image, command, kwargs)
        with translated():
            reply = await self.client.api.CreateContainer(req)
        return await self.get(reply.id)

    async def run(
        self,
        image: str,
        command: str | list[str] | None = None,
        stdout: bool = True,
        stderr: bool = False,
        remove: bool = False,
        *,
        detach: bool = False,
        **kwargs: Any,
    ) -> AsyncContainer | bytes:
        """As Client's run(); for a stream, run(detach=True) then log_stream()."""
        if detach and remove:
            kwargs["auto_remove"] = True
        container = await self.create(image, command, **kwargs)
        await container.start()
        if detach:
            await container.reload()
            return container
        status = (await container.wait())["StatusCode"]
        try:
            if status != 0:
                err = await container.logs(stdout=False, stderr=True)
                raise ContainerError(container, status, command, image, err)
            return await container.logs(stdout=stdout, stderr=stderr)
        finally:
            if remove:
                await container.remove(force=True)

    async def get(self, container_id: str) -> AsyncContainer:
        with translated():
            reply = await self.client.api.InspectContainer(pb.ContainerRef(id=container_id))
        return AsyncContainer(container_doc(reply), self.client)

    async def list(
        self,
        all: bool = False,  # noqa: A002 - docker-py's name
        filters: Mapping[str, Any] | None = None,
        limit: int = -1,
    ) -> list[AsyncContainer]:
        req = _build.list_containers_request(all, filters, limit)
        with translated():
            listed = (await self.client.api.ListContainers(req)).containers
        found = []
        for summary in listed:
            try:
                found.append(await self.get(summary.id))
            except NotFound:
                continue
        return found

    async def prune(self, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        with translated():
            reply = await self.client.api.PruneContainers(
                pb.PruneContainersRequest(filters=_build.filter_map(filters))
            )
        return _build.pruned_containers(reply)


# --- images -------------------------------------------------------------------------------


class AsyncImage(ImageAttrs):
    def __init__(self, attrs: dict[str, Any], client: AsyncClient) -> None:
        super().__init__(attrs)
        self.client = client

    async def reload(self) -> None:
        self.attrs = (await self.client.images.get(self.id)).attrs

    async def tag(self, repository: str, tag: str | None = None) -> bool:
        target = f"{repository}:{tag}" if tag else repository
        with translated(image=True):
            await self.client.api.TagImage(pb.TagImageRequest(source=self.id, target=target))
        return True


class AsyncImageCollection:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def pull(
        self,
        repository: str,
        tag: str | None = None,
        platform: str | None = None,
        auth_config: Mapping[str, str] | None = None,
        progress: Callable[[PullProgress], None] | None = None,
    ) -> AsyncImage:
        req = _build.pull_request(repository, tag, platform, auth_config)
        image_id = ""
        with translated(image=True):
            async for event in self.client.api.PullImage(req):
                if event.WhichOneof("event") == "result":
                    image_id = event.result.image_id
                elif progress is not None and (step := pull_event(event)) is not None:
                    progress(step)
        return await self.get(image_id or req.reference)

    async def get(self, name: str) -> AsyncImage:
        with translated(image=True):
            reply = await self.client.api.InspectImage(pb.InspectImageRequest(reference=name))
        return AsyncImage(image_doc(reply), self.client)

    async def list(
        self,
        name: str | None = None,
        all: bool = False,  # noqa: A002 - docker-py's name
        filters: Mapping[str, Any] | None = None,
    ) -> list[AsyncImage]:
        req = _build.list_images_request(name, all, filters)
        with translated(image=True):
            listed = (await self.client.api.ListImages(req)).images
        return [await self.get(summary.id) for summary in listed]

    async def remove(
        self, image: str, force: bool = False, noprune: bool = False
    ) -> builtins.list[dict[str, str]]:
        with translated(image=True):
            reply = await self.client.api.RemoveImage(
                pb.RemoveImageRequest(reference=image, force=force, no_prune=noprune)
            )
        return _build.removed_image(reply)


# --- networks and volumes -----------------------------------------------------------------


class AsyncNetwork(NetworkAttrs):
    def __init__(self, attrs: dict[str, Any], client: AsyncClient) -> None:
        super().__init__(attrs)
        self.client = client

    async def reload(self) -> None:
        self.attrs = (await self.client.networks.get(self.id)).attrs

    async def connect(
        self,
        container: AsyncContainer | str,
        aliases: list[str] | None = None,
        ipv4_address: str | None = None,
    ) -> None:
        ref = container.id if isinstance(container, AsyncContainer) else container
        with translated():
            await self.client.api.ConnectNetwork(
                _build.connect_request(self.id, ref, aliases, ipv4_address)
            )

    async def disconnect(self, container: AsyncContainer | str, force: bool = False) -> None:
        ref = container.id if isinstance(container, AsyncContainer) else container
        with translated():
            await self.client.api.DisconnectNetwork(
                pb.DisconnectNetworkRequest(network=self.id, container=ref, force=force)
            )

    async def remove(self) -> None:
        with translated():
            await self.client.api.RemoveNetwork(pb.NetworkRef(name=self.id))


class AsyncNetworkCollection:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def create(
        self,
        name: str,
        driver: str | None = None,
        options: Mapping[str, str] | None = None,
        ipam: Mapping[str, Any] | None = None,
        internal: bool = False,
        labels: Mapping[str, str] | None = None,
        enable_ipv6: bool = False,
    ) -> AsyncNetwork:
        req = _build.network_create_request(
            name, driver, options, ipam, internal, labels, enable_ipv6
        )
        with translated():
            return AsyncNetwork(network_doc(await self.client.api.CreateNetwork(req)), self.client)

    async def get(self, network_id: str) -> AsyncNetwork:
        with translated():
            net = await self.client.api.InspectNetwork(pb.NetworkRef(name=network_id))
        return AsyncNetwork(network_doc(net), self.client)

    async def list(self, filters: Mapping[str, Any] | None = None) -> list[AsyncNetwork]:
        with translated():
            reply = await self.client.api.ListNetworks(
                pb.ListNetworksRequest(filters=_build.filters(filters))
            )
        return [AsyncNetwork(network_doc(net), self.client) for net in reply.networks]


class AsyncVolume(VolumeAttrs):
    def __init__(self, attrs: dict[str, Any], client: AsyncClient) -> None:
        super().__init__(attrs)
        self.client = client

    async def reload(self) -> None:
        self.attrs = (await self.client.volumes.get(self.id)).attrs

    async def remove(self, force: bool = False) -> None:
        with translated():
            await self.client.api.RemoveVolume(pb.RemoveVolumeRequest(name=self.id, force=force))


class AsyncVolumeCollection:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def create(
        self,
        name: str | None = None,
        driver: str | None = None,
        driver_opts: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> AsyncVolume:
        req = _build.volume_create_request(name, driver, driver_opts, labels)
        with translated():
            return AsyncVolume(volume_doc(await self.client.api.CreateVolume(req)), self.client)

    async def get(self, volume_id: str) -> AsyncVolume:
        with translated():
            reply = await self.client.api.InspectVolume(pb.VolumeRef(name=volume_id))
        return AsyncVolume(volume_doc(reply), self.client)

    async def list(self, filters: Mapping[str, Any] | None = None) -> list[AsyncVolume]:
        with translated():
            reply = await self.client.api.ListVolumes(
                pb.ListVolumesRequest(filters=_build.filters(filters))
            )
        return [AsyncVolume(volume_doc(v), self.client) for v in reply.volumes]

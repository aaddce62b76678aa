"""The asyncio client: `AsyncClient`, the same objects and calls as the blocking `Client`
with `await` (streams are async iterators), on grpc.aio in the running event loop."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Any

from runtimed.client import _build, _calls, _channel
from runtimed.client._models import (
    ContainerAttrs,
    ExecOutput,
    ExecResult,
    ImageAttrs,
    NetworkAttrs,
    PullProgress,
    VolumeAttrs,
    pull_event,
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

    async def _call(self, call: _calls.Call) -> Any:
        with translated(image=call.image):
            reply = await getattr(self.api, call.rpc)(call.request, timeout=call.timeout)
        return call.decode(reply)

    async def ping(self) -> bool:
        return await self._call(_calls.ping())

    async def version(self) -> dict[str, Any]:
        return await self._call(_calls.version())

    async def info(self) -> dict[str, Any]:
        return await self._call(_calls.info())

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
        self.attrs = await self.client._call(_calls.inspect_container(self.id))

    async def start(self) -> None:
        await self.client._call(_calls.start_container(self.id))

    async def stop(self, timeout: int | None = None) -> None:
        await self.client._call(_calls.stop_container(self.id, timeout))

    async def restart(self, timeout: int | None = None) -> None:
        await self.client._call(_calls.restart_container(self.id, timeout))

    async def kill(self, signal: str | int | None = None) -> None:
        await self.client._call(_calls.kill_container(self.id, signal))

    async def remove(self, v: bool = False, force: bool = False) -> None:
        await self.client._call(_calls.remove_container(self.id, v, force))

    async def rename(self, name: str) -> None:
        await self.client._call(_calls.rename_container(self.id, name))

    async def wait(
        self, timeout: float | None = None, condition: str = "not-running"
    ) -> dict[str, Any]:
        return await self.client._call(_calls.wait_container(self.id, timeout, condition))

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
        return await self.client._call(_calls.top_container(self.id, ps_args))


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
        call = _calls.create_container(image, command, kwargs)
        return await self.get(await self.client._call(call))

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
        doc = await self.client._call(_calls.inspect_container(container_id))
        return AsyncContainer(doc, self.client)

    async def list(
        self,
        all: bool = False,  # noqa: A002 - docker-py's name
        filters: Mapping[str, Any] | None = None,
        limit: int = -1,
    ) -> list[AsyncContainer]:
        found = []
        for container_id in await self.client._call(_calls.list_containers(all, filters, limit)):
            try:
                found.append(await self.get(container_id))
            except NotFound:
                continue
        return found

    async def prune(self, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self.client._call(_calls.prune_containers(filters))


# --- images -------------------------------------------------------------------------------


class AsyncImage(ImageAttrs):
    def __init__(self, attrs: dict[str, Any], client: AsyncClient) -> None:
        super().__init__(attrs)
        self.client = client

    async def reload(self) -> None:
        self.attrs = (await self.client.images.get(self.id)).attrs

    async def tag(self, repository: str, tag: str | None = None) -> bool:
        await self.client._call(_calls.tag_image(self.id, repository, tag))
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
        return AsyncImage(await self.client._call(_calls.inspect_image(name)), self.client)

    async def list(
        self,
        name: str | None = None,
        all: bool = False,  # noqa: A002 - docker-py's name
        filters: Mapping[str, Any] | None = None,
    ) -> list[AsyncImage]:
        listed = await self.client._call(_calls.list_images(name, all, filters))
        return [await self.get(image_id) for image_id in listed]

    async def remove(
        self, image: str, force: bool = False, noprune: bool = False
    ) -> builtins.list[dict[str, str]]:
        return await self.client._call(_calls.remove_image(image, force, noprune))


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
        call = _calls.connect_network(self.id, _ref(container), aliases, ipv4_address)
        await self.client._call(call)

    async def disconnect(self, container: AsyncContainer | str, force: bool = False) -> None:
        await self.client._call(_calls.disconnect_network(self.id, _ref(container), force))

    async def remove(self) -> None:
        await self.client._call(_calls.remove_network(self.id))


def _ref(container: AsyncContainer | str) -> str:
    return container.id if isinstance(container, AsyncContainer) else container


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
        call = _calls.create_network(name, driver, options, ipam, internal, labels, enable_ipv6)
        return AsyncNetwork(await self.client._call(call), self.client)

    async def get(self, network_id: str) -> AsyncNetwork:
        doc = await self.client._call(_calls.inspect_network(network_id))
        return AsyncNetwork(doc, self.client)

    async def list(self, filters: Mapping[str, Any] | None = None) -> list[AsyncNetwork]:
        docs = await self.client._call(_calls.list_networks(filters))
        return [AsyncNetwork(doc, self.client) for doc in docs]


class AsyncVolume(VolumeAttrs):
    def __init__(self, attrs: dict[str, Any], client: AsyncClient) -> None:
        super().__init__(attrs)
        self.client = client

    async def reload(self) -> None:
        self.attrs = (await self.client.volumes.get(self.id)).attrs

    async def remove(self, force: bool = False) -> None:
        await self.client._call(_calls.remove_volume(self.id, force))


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
        call = _calls.create_volume(name, driver, driver_opts, labels)
        return AsyncVolume(await self.client._call(call), self.client)

    async def get(self, volume_id: str) -> AsyncVolume:
        return AsyncVolume(await self.client._call(_calls.inspect_volume(volume_id)), self.client)

    async def list(self, filters: Mapping[str, Any] | None = None) -> list[AsyncVolume]:
        docs = await self.client._call(_calls.list_volumes(filters))
        return [AsyncVolume(doc, self.client) for doc in docs]

"""The blocking client: `Client`, and the containers, images, networks and volumes it
manages. Each call is one or a few Engine RPCs; errors are runtimed.client.errors."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping
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


class Client:
    """A connection to runtimed's Engine API.

    `Client()` uses the local daemon's socket; `Client("unix:///path")`, or
    `Client("tcp://host:2376", tls=TLSConfig(client_cert=(cert, key), ca_cert=ca))`.
    `Client.from_env()` reads RUNTIMED_HOST, RUNTIMED_TLS_VERIFY and RUNTIMED_CERT_PATH.
    Use it as a context manager, or call close().
    """

    def __init__(self, base_url: str | None = None, tls: TLSConfig | None = None) -> None:
        host, tls = _channel.resolve(base_url, tls)
        self.base_url = str(host)
        self._channel = _channel.open_channel(host, tls, aio=False)
        self.api = engine_pb2_grpc.EngineStub(self._channel)  # the raw stub, for what's not here
        self.containers = ContainerCollection(self)
        self.images = ImageCollection(self)
        self.networks = NetworkCollection(self)
        self.volumes = VolumeCollection(self)

    @classmethod
    def from_env(cls, environment: Mapping[str, str] | None = None) -> Client:
        """RUNTIMED_HOST, RUNTIMED_TLS_VERIFY and RUNTIMED_CERT_PATH (os.environ by default)."""
        host, tls = _channel.from_env(environment)
        return cls(str(host), tls)

    def _call(self, call: _calls.Call) -> Any:
        with translated(image=call.image):
            reply = getattr(self.api, call.rpc)(call.request, timeout=call.timeout)
        return call.decode(reply)

    def ping(self) -> bool:
        """True when the daemon answers (raises Unavailable when it does not)."""
        return self._call(_calls.ping())

    def version(self) -> dict[str, Any]:
        return self._call(_calls.version())

    def info(self) -> dict[str, Any]:
        return self._call(_calls.info())

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- containers ---------------------------------------------------------------------------


class Container(ContainerAttrs):
    """A container; `attrs` is its inspect document (refreshed by reload())."""

    def __init__(self, attrs: dict[str, Any], client: Client) -> None:
        super().__init__(attrs)
        self.client = client

    @property
    def image(self) -> Image:
        return self.client.images.get(str(self.attrs.get("Image", "")))

    def reload(self) -> None:
        self.attrs = self.client._call(_calls.inspect_container(self.id))

    def start(self) -> None:
        self.client._call(_calls.start_container(self.id))

    def stop(self, timeout: int | None = None) -> None:
        """SIGTERM (or the stop signal), SIGKILL after `timeout` seconds."""
        self.client._call(_calls.stop_container(self.id, timeout))

    def restart(self, timeout: int | None = None) -> None:
        self.client._call(_calls.restart_container(self.id, timeout))

    def kill(self, signal: str | int | None = None) -> None:
        self.client._call(_calls.kill_container(self.id, signal))

    def remove(self, v: bool = False, force: bool = False) -> None:
        """`v`: its anonymous volumes too; `force`: kill it first if it runs."""
        self.client._call(_calls.remove_container(self.id, v, force))

    def rename(self, name: str) -> None:
        self.client._call(_calls.rename_container(self.id, name))

    def wait(self, timeout: float | None = None, condition: str = "not-running") -> dict[str, Any]:
        """Block until the container stops (`condition`: not-running, next-exit, removed);
        returns docker's {"StatusCode": N, "Error": ...}. Raises Timeout after `timeout`."""
        return self.client._call(_calls.wait_container(self.id, timeout, condition))

    def logs(
        self,
        stdout: bool = True,
        stderr: bool = True,
        stream: bool = False,
        timestamps: bool = False,
        tail: int | str = "all",
        since: Any = None,
        follow: bool | None = None,
        until: Any = None,
    ) -> bytes | Iterator[bytes]:
        """The container's output: bytes, or with `stream` an iterator of chunks (which
        follows the log until the container stops, unless follow=False)."""
        req = _build.logs_request(
            self.id,
            stdout=stdout,
            stderr=stderr,
            follow=stream if follow is None else follow,
            tail=tail,
            since=since,
            until=until,
        )
        chunks = _log_chunks(self.client.api.ContainerLogs(req), timestamps)
        return chunks if stream else b"".join(chunks)

    def exec_run(
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
        """Run `cmd` in the container: ExecResult(exit_code, output), output as bytes, a
        (stdout, stderr) pair with `demux`, or an iterator of chunks with `stream`."""
        requests = _build.exec_requests(
            self.id, cmd, environment, user, workdir, tty, privileged, detach
        )
        collected = ExecOutput(stdout, stderr)
        call = self.client.api.Exec(iter(requests))
        if detach:
            with translated():
                for _ in call:
                    pass
            return ExecResult(None, b"")
        if stream:
            return ExecResult(None, _exec_chunks(call, collected))
        with translated():
            for msg in call:
                collected.chunk(msg)
        return collected.result(demux)

    def top(self, ps_args: str | None = None) -> dict[str, Any]:
        return self.client._call(_calls.top_container(self.id, ps_args))


def _log_chunks(call: Iterable[pb.LogEntry], timestamps: bool) -> Iterator[bytes]:
    from runtimed.cli.psformat import LogPrinter  # docker logs -t's stamps

    printer = LogPrinter(timestamps)
    with translated():
        for entry in call:
            yield printer.format(entry)


def _exec_chunks(call: Iterable[pb.StdioOutput], collected: ExecOutput) -> Iterator[bytes]:
    with translated():
        for msg in call:
            data = collected.chunk(msg)
            if data:
                yield data


class ContainerCollection:
    def __init__(self, client: Client) -> None:
        self.client = client

    def create(
        self, image: str, command: str | list[str] | None = None, **kwargs: Any
    ) -> Container:
        """Create (pulling the image if missing) without starting; docker-py's options:
        name, environment, ports, volumes, labels, working_dir, user, entrypoint, network,
        restart_policy, tmpfs, ..."""
        return self.get(self.client._call(_calls.create_container(image, command, kwargs)))

    def run(
        self,
        image: str,
        command: str | list[str] | None = None,
        stdout: bool = True,
        stderr: bool = False,
        remove: bool = False,
        *,
        detach: bool = False,
        stream: bool = False,
        **kwargs: Any,
    ) -> Container | bytes | Iterator[bytes]:
        """Create and start a container. With `detach`, return the Container at once
        (`remove` then makes the daemon remove it when it exits). Otherwise wait for it and
        return its output (stdout; stderr too if asked), or raise ContainerError with its
        stderr if it exits non-zero; with `stream`, return an iterator over the output as it
        comes, which raises ContainerError at its end for a non-zero exit."""
        if detach and remove:
            kwargs["auto_remove"] = True
        container = self.create(image, command, **kwargs)
        container.start()
        if detach:
            container.reload()
            return container
        if stream:
            chunks = container.logs(stdout=stdout, stderr=stderr, stream=True, follow=True)
            assert not isinstance(chunks, bytes)
            return _finish_streamed(container, chunks, remove, command, image)
        status = container.wait()["StatusCode"]
        try:
            if status != 0:
                err = container.logs(stdout=False, stderr=True)
                assert isinstance(err, bytes)
                raise ContainerError(container, status, command, image, err)
            out = container.logs(stdout=stdout, stderr=stderr)
            assert isinstance(out, bytes)
            return out
        finally:
            if remove:
                container.remove(force=True)

    def get(self, container_id: str) -> Container:
        """By id, unique id prefix or name; raises NotFound."""
        return Container(self.client._call(_calls.inspect_container(container_id)), self.client)

    def list(
        self,
        all: bool = False,  # noqa: A002 - docker-py's name
        filters: Mapping[str, Any] | None = None,
        limit: int = -1,
    ) -> list[Container]:
        """Running containers (all=True: every one), newest first; docker's filters
        (status, label, name, id, ancestor, exited, before, since)."""
        found = []
        for container_id in self.client._call(_calls.list_containers(all, filters, limit)):
            try:
                found.append(self.get(container_id))
            except NotFound:  # removed meanwhile
                continue
        return found

    def prune(self, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.client._call(_calls.prune_containers(filters))


def _finish_streamed(
    container: Container, chunks: Iterator[bytes], remove: bool, command: Any, image: str
) -> Iterator[bytes]:
    try:
        yield from chunks
        status = container.wait()["StatusCode"]
        if status != 0:
            raise ContainerError(container, status, command, image, None)
    finally:
        if remove:
            container.remove(force=True)


# --- images -------------------------------------------------------------------------------


class Image(ImageAttrs):
    def __init__(self, attrs: dict[str, Any], client: Client) -> None:
        super().__init__(attrs)
        self.client = client

    def reload(self) -> None:
        self.attrs = self.client.images.get(self.id).attrs

    def tag(self, repository: str, tag: str | None = None) -> bool:
        self.client._call(_calls.tag_image(self.id, repository, tag))
        return True


class ImageCollection:
    def __init__(self, client: Client) -> None:
        self.client = client

    def pull(
        self,
        repository: str,
        tag: str | None = None,
        platform: str | None = None,
        auth_config: Mapping[str, str] | None = None,
        progress: Callable[[PullProgress], None] | None = None,
    ) -> Image:
        """Pull and return the image; `progress` is called with each PullProgress."""
        req = _build.pull_request(repository, tag, platform, auth_config)
        image_id = ""
        with translated(image=True):
            for event in self.client.api.PullImage(req):
                if event.WhichOneof("event") == "result":
                    image_id = event.result.image_id
                elif progress is not None and (step := pull_event(event)) is not None:
                    progress(step)
        return self.get(image_id or req.reference)

    def get(self, name: str) -> Image:
        """By name[:tag], digest or id; raises ImageNotFound."""
        return Image(self.client._call(_calls.inspect_image(name)), self.client)

    def list(
        self,
        name: str | None = None,
        all: bool = False,  # noqa: A002 - docker-py's name
        filters: Mapping[str, Any] | None = None,
    ) -> list[Image]:
        listed = self.client._call(_calls.list_images(name, all, filters))
        return [self.get(image_id) for image_id in listed]

    def remove(
        self, image: str, force: bool = False, noprune: bool = False
    ) -> builtins.list[dict[str, str]]:
        """Untag (or delete) `image`: docker's [{"Untagged": ...}, {"Deleted": ...}]."""
        return self.client._call(_calls.remove_image(image, force, noprune))

    def prune(self, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.client._call(_calls.prune_images(filters))


# --- networks and volumes -----------------------------------------------------------------


class Network(NetworkAttrs):
    def __init__(self, attrs: dict[str, Any], client: Client) -> None:
        super().__init__(attrs)
        self.client = client

    @property
    def containers(self) -> list[Container]:
        return [self.client.containers.get(cid) for cid in self.attrs.get("Containers") or {}]

    def reload(self) -> None:
        self.attrs = self.client.networks.get(self.id).attrs

    def connect(
        self,
        container: Container | str,
        aliases: list[str] | None = None,
        ipv4_address: str | None = None,
    ) -> None:
        self.client._call(_calls.connect_network(self.id, _ref(container), aliases, ipv4_address))

    def disconnect(self, container: Container | str, force: bool = False) -> None:
        self.client._call(_calls.disconnect_network(self.id, _ref(container), force))

    def remove(self) -> None:
        self.client._call(_calls.remove_network(self.id))


def _ref(container: Container | str) -> str:
    return container.id if isinstance(container, Container) else container


class NetworkCollection:
    def __init__(self, client: Client) -> None:
        self.client = client

    def create(
        self,
        name: str,
        driver: str | None = None,
        options: Mapping[str, str] | None = None,
        ipam: Mapping[str, Any] | None = None,
        internal: bool = False,
        labels: Mapping[str, str] | None = None,
        enable_ipv6: bool = False,
    ) -> Network:
        call = _calls.create_network(name, driver, options, ipam, internal, labels, enable_ipv6)
        return Network(self.client._call(call), self.client)

    def get(self, network_id: str) -> Network:
        return Network(self.client._call(_calls.inspect_network(network_id)), self.client)

    def list(
        self,
        names: list[str] | None = None,
        ids: list[str] | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> list[Network]:
        flt: dict[str, Any] = dict(filters or {})
        if names:
            flt["name"] = names
        if ids:
            flt["id"] = ids
        return [Network(doc, self.client) for doc in self.client._call(_calls.list_networks(flt))]

    def prune(self, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.client._call(_calls.prune_networks(filters))


class Volume(VolumeAttrs):
    def __init__(self, attrs: dict[str, Any], client: Client) -> None:
        super().__init__(attrs)
        self.client = client

    def reload(self) -> None:
        self.attrs = self.client.volumes.get(self.id).attrs

    def remove(self, force: bool = False) -> None:
        self.client._call(_calls.remove_volume(self.id, force))


class VolumeCollection:
    def __init__(self, client: Client) -> None:
        self.client = client

    def create(
        self,
        name: str | None = None,
        driver: str | None = None,
        driver_opts: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Volume:
        call = _calls.create_volume(name, driver, driver_opts, labels)
        return Volume(self.client._call(call), self.client)

    def get(self, volume_id: str) -> Volume:
        return Volume(self.client._call(_calls.inspect_volume(volume_id)), self.client)

    def list(self, filters: Mapping[str, Any] | None = None) -> list[Volume]:
        return [Volume(doc, self.client) for doc in self.client._call(_calls.list_volumes(filters))]

    def prune(self, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.client._call(_calls.prune_volumes(filters))

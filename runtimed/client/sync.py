"""The blocking client: `Client`, and the containers, images, networks and volumes it
manages. Each call is one or a few Engine RPCs; errors are runtimed.client.errors."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping
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

    def ping(self) -> bool:
        """True when the daemon answers (raises Unavailable when it does not)."""
        with translated():
            self.api.Version(pb.VersionRequest(), timeout=30)
        return True

    def version(self) -> dict[str, Any]:
        with translated():
            reply = self.api.Version(pb.VersionRequest())
        return _build.reply_dict(reply)

    def info(self) -> dict[str, Any]:
        with translated():
            reply = self.api.Info(pb.InfoRequest())
        return _build.reply_dict(reply)

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
        with translated():
            self.attrs = container_doc(
                self.client.api.InspectContainer(pb.ContainerRef(id=self.id))
            )

    def start(self) -> None:
        with translated():
            self.client.api.StartContainer(pb.ContainerRef(id=self.id))

    def stop(self, timeout: int | None = None) -> None:
        """SIGTERM (or the stop signal), SIGKILL after `timeout` seconds."""
        with translated():
            self.client.api.StopContainer(_build.stop_request(self.id, timeout))

    def restart(self, timeout: int | None = None) -> None:
        with translated():
            self.client.api.RestartContainer(_build.stop_request(self.id, timeout))

    def kill(self, signal: str | int | None = None) -> None:
        with translated():
            self.client.api.KillContainer(_build.kill_request(self.id, signal))

    def remove(self, v: bool = False, force: bool = False) -> None:
        """`v`: its anonymous volumes too; `force`: kill it first if it runs."""
        with translated():
            self.client.api.RemoveContainer(
                pb.RemoveContainerRequest(id=self.id, force=force, volumes=v)
            )

    def rename(self, name: str) -> None:
        with translated():
            self.client.api.RenameContainer(pb.RenameContainerRequest(id=self.id, new_name=name))

    def wait(self, timeout: float | None = None, condition: str = "not-running") -> dict[str, Any]:
        """Block until the container stops (`condition`: not-running, next-exit, removed);
        returns docker's {"StatusCode": N, "Error": ...}. Raises Timeout after `timeout`."""
        with translated():
            reply = self.client.api.WaitContainer(
                pb.WaitContainerRequest(id=self.id, condition=condition), timeout=timeout
            )
        return _build.wait_result(reply)

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
        with translated():
            reply = self.client.api.TopContainer(
                pb.TopContainerRequest(id=self.id, ps_args=ps_args or "")
            )
        return _build.top_result(reply)


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
        req = _build.create_request(image, command, kwargs)
        with translated():
            reply = self.client.api.CreateContainer(req)
        return self.get(reply.id)

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
        with translated():
            reply = self.client.api.InspectContainer(pb.ContainerRef(id=container_id))
        return Container(container_doc(reply), self.client)

    def list(
        self,
        all: bool = False,  # noqa: A002 - docker-py's name
        filters: Mapping[str, Any] | None = None,
        limit: int = -1,
    ) -> list[Container]:
        """Running containers (all=True: every one), newest first; docker's filters
        (status, label, name, id, ancestor, exited, before, since)."""
        req = _build.list_containers_request(all, filters, limit)
        with translated():
            listed = self.client.api.ListContainers(req).containers
        found = []
        for summary in listed:
            try:
                found.append(self.get(summary.id))
            except NotFound:  # removed meanwhile
                continue
        return found

    def prune(self, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        with translated():
            reply = self.client.api.PruneContainers(
                pb.PruneContainersRequest(filters=_build.filter_map(filters))
            )
        return _build.pruned_containers(reply)


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
        target = f"{repository}:{tag}" if tag else repository
        with translated(image=True):
            self.client.api.TagImage(pb.TagImageRequest(source=self.id, target=target))
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
        with translated(image=True):
            reply = self.client.api.InspectImage(pb.InspectImageRequest(reference=name))
        return Image(image_doc(reply), self.client)

    def list(
        self,
        name: str | None = None,
        all: bool = False,  # noqa: A002 - docker-py's name
        filters: Mapping[str, Any] | None = None,
    ) -> list[Image]:
        req = _build.list_images_request(name, all, filters)
        with translated(image=True):
            listed = self.client.api.ListImages(req).images
        return [self.get(summary.id) for summary in listed]

    def remove(
        self, image: str, force: bool = False, noprune: bool = False
    ) -> builtins.list[dict[str, str]]:
        """Untag (or delete) `image`: docker's [{"Untagged": ...}, {"Deleted": ...}]."""
        with translated(image=True):
            reply = self.client.api.RemoveImage(
                pb.RemoveImageRequest(reference=image, force=force, no_prune=noprune)
            )
        return _build.removed_image(reply)

    def prune(self, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        flt = dict(filters or {})
        dangling = str(flt.pop("dangling", "true")).lower() != "false"
        with translated():
            reply = self.client.api.PruneImages(
                pb.PruneImagesRequest(all=not dangling, filters=_build.filter_map(flt))
            )
        return {
            "ImagesDeleted": _build.removed_image(reply),
            "SpaceReclaimed": reply.space_reclaimed,
        }


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
        with translated():
            self.client.api.ConnectNetwork(
                _build.connect_request(self.id, _ref(container), aliases, ipv4_address)
            )

    def disconnect(self, container: Container | str, force: bool = False) -> None:
        with translated():
            self.client.api.DisconnectNetwork(
                pb.DisconnectNetworkRequest(network=self.id, container=_ref(container), force=force)
            )

    def remove(self) -> None:
        with translated():
            self.client.api.RemoveNetwork(pb.NetworkRef(name=self.id))


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
        req = _build.network_create_request(
            name, driver, options, ipam, internal, labels, enable_ipv6
        )
        with translated():
            return Network(network_doc(self.client.api.CreateNetwork(req)), self.client)

    def get(self, network_id: str) -> Network:
        with translated():
            net = self.client.api.InspectNetwork(pb.NetworkRef(name=network_id))
        return Network(network_doc(net), self.client)

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
        with translated():
            reply = self.client.api.ListNetworks(
                pb.ListNetworksRequest(filters=_build.filters(flt))
            )
        return [Network(network_doc(net), self.client) for net in reply.networks]

    def prune(self, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        with translated():
            reply = self.client.api.PruneNetworks(
                pb.PruneNetworksRequest(filters=_build.filters(filters))
            )
        return {"NetworksDeleted": list(reply.deleted)}


class Volume(VolumeAttrs):
    def __init__(self, attrs: dict[str, Any], client: Client) -> None:
        super().__init__(attrs)
        self.client = client

    def reload(self) -> None:
        self.attrs = self.client.volumes.get(self.id).attrs

    def remove(self, force: bool = False) -> None:
        with translated():
            self.client.api.RemoveVolume(pb.RemoveVolumeRequest(name=self.id, force=force))


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
        req = _build.volume_create_request(name, driver, driver_opts, labels)
        with translated():
            return Volume(volume_doc(self.client.api.CreateVolume(req)), self.client)

    def get(self, volume_id: str) -> Volume:
        with translated():
            return Volume(
                volume_doc(self.client.api.InspectVolume(pb.VolumeRef(name=volume_id))), self.client
            )

    def list(self, filters: Mapping[str, Any] | None = None) -> list[Volume]:
        with translated():
            reply = self.client.api.ListVolumes(
                pb.ListVolumesRequest(filters=_build.filters(filters))
            )
        return [Volume(volume_doc(v), self.client) for v in reply.volumes]

    def prune(self, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        with translated():
            reply = self.client.api.PruneVolumes(
                pb.PruneVolumesRequest(filters=_build.filters(filters))
            )
        return {"VolumesDeleted": list(reply.deleted), "SpaceReclaimed": reply.space_reclaimed}

"""What both flavours' objects share: attributes read from the daemon's documents, and the
small result types (docker-py's names)."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from runtimed.gen.runtimed.v1 import engine_pb2 as pb


class ExecResult(NamedTuple):
    """exec_run's result: `output` is bytes, a (stdout, stderr) pair with demux, or an
    iterator of chunks with stream (then `exit_code` is None)."""

    exit_code: int | None
    output: Any


class PullProgress(NamedTuple):
    """One step of a pull, as `images.pull(progress=callback)` reports it: `status` is a
    line of general status, or a layer's state ("Downloading", "Pull complete", ...) with
    `layer` its short id and `current`/`total` bytes."""

    status: str
    layer: str = ""
    current: int = 0
    total: int = 0


def pull_event(event: pb.PullImageProgress) -> PullProgress | None:
    kind = event.WhichOneof("event")
    if kind == "status":
        return PullProgress(event.status)
    if kind == "layer":
        layer = event.layer
        return PullProgress(layer.status, layer.id, layer.current, layer.total)
    return None


class Model:
    """An object the daemon knows, with its inspect document as `attrs`."""

    id_attribute = "Id"

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.attrs = attrs

    @property
    def id(self) -> str:
        return str(self.attrs.get(self.id_attribute, ""))

    @property
    def short_id(self) -> str:
        return self.id[:17] if self.id.startswith("sha256:") else self.id[:12]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and other.id == self.id

    def __hash__(self) -> int:
        return hash(f"{type(self).__name__}:{self.id}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.short_id}>"


class ContainerAttrs(Model):
    @property
    def name(self) -> str:
        return str(self.attrs.get("Name", "")).lstrip("/")

    @property
    def status(self) -> str:
        """created | running | paused | restarting | removing | exited | dead."""
        return str(self.attrs.get("State", {}).get("Status", ""))

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.attrs.get("Config", {}).get("Labels") or {})

    @property
    def ports(self) -> dict[str, Any]:
        """NetworkSettings.Ports: {"80/tcp": [{"HostIp": ..., "HostPort": ...}], ...}."""
        return dict(self.attrs.get("NetworkSettings", {}).get("Ports") or {})

    @property
    def image_ref(self) -> str:
        """The image as the container was created from it (Config.Image)."""
        return str(self.attrs.get("Config", {}).get("Image", ""))


class ImageAttrs(Model):
    @property
    def tags(self) -> list[str]:
        return [t for t in self.attrs.get("RepoTags") or [] if t != "<none>:<none>"]

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.attrs.get("Config") or {}).get("Labels") or {})


class NetworkAttrs(Model):
    @property
    def name(self) -> str:
        return str(self.attrs.get("Name", ""))


class VolumeAttrs(Model):
    id_attribute = "Name"

    @property
    def name(self) -> str:
        return self.id


def container_doc(reply: pb.InspectContainerResponse) -> dict[str, Any]:
    return json.loads(reply.json)


def image_doc(reply: pb.InspectImageResponse) -> dict[str, Any]:
    return json.loads(reply.json)


def network_doc(net: pb.Network) -> dict[str, Any]:
    from runtimed.cli.networks import inspect_doc  # docker network inspect's shape

    return inspect_doc(net)


def volume_doc(volume: pb.Volume) -> dict[str, Any]:
    from runtimed.cli.volumes import volume_doc as doc  # docker volume inspect's shape

    return doc(volume)


class ExecOutput:
    """Collects an Exec call's StdioOutput messages."""

    def __init__(self, stdout: bool, stderr: bool) -> None:
        self.want = {"stdout": stdout, "stderr": stderr}
        self.parts: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.merged = bytearray()
        self.exit_code: int | None = None

    def chunk(self, msg: pb.StdioOutput) -> bytes | None:
        """The bytes this message adds to the output (None if none); records the exit."""
        kind = msg.WhichOneof("msg")
        if kind == "exit":
            self.exit_code = msg.exit.exit_code
        elif kind in ("stdout", "stderr") and self.want[kind]:
            data: bytes = getattr(msg, kind)
            self.parts[kind] += data
            self.merged += data
            return data
        return None

    def result(self, demux: bool) -> ExecResult:
        if demux:
            out = bytes(self.parts["stdout"]) if self.want["stdout"] else None
            err = bytes(self.parts["stderr"]) if self.want["stderr"] else None
            return ExecResult(self.exit_code, (out, err))
        return ExecResult(self.exit_code, bytes(self.merged))

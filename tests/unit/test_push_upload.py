"""Blob uploads against a small fake registry, for what Debian's registry never does:
relative and changing Locations, a `bytes=` Range, accepting only part of a chunk,
and a 416 that sends the client back to ask where the upload stands."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from runtimed.errors import DataLoss, NotFound, PermissionDenied, Unavailable
from runtimed.images import manifest as mt
from runtimed.images.auth import CredentialStore
from runtimed.images.compose import oci_manifest
from runtimed.images.layers import LayerStore
from runtimed.images.push import ImagePusher
from runtimed.images.reference import parse_reference
from runtimed.images.registries_conf import RegistriesConfig
from runtimed.images.registry import RegistryClient
from runtimed.images.service import ImageService, PullEvent
from runtimed.images.upload import BlobUploader, parse_range, resolve_location, with_digest
from runtimed.store.content import ContentStore
from runtimed.store.metadata import MetadataStore


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeUploads:
    """The upload half of the distribution API, with knobs for odd registries."""

    absolute_locations: bool = False
    range_prefix: str = ""  # "bytes=" as some registries write it
    accept_per_patch: int = 0  # keep at most this much of each chunk (0: all of it)
    refuse_first_patch: bool = False  # answer the first PATCH 416
    deny: bool = False  # refuse uploads as a registry does a repository one may not push to
    held: bytearray = field(default_factory=bytearray)
    stored: dict[str, bytes] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    host: str = ""
    _step: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.host = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _location(self) -> str:
        # A new path and state on every answer, so only a client that follows them works.
        self._step += 1
        path = f"/upload/s{self._step}?_state=st{self._step}"
        return f"http://{self.host}{path}" if self.absolute_locations else path

    def _range(self) -> str:
        return f"{self.range_prefix}0-{max(len(self.held) - 1, 0)}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readexactly(1)
            if first == b"\x16":  # TLS first: close, the client falls back to http
                return
            line = (first + await reader.readline()).decode()
            method, target, _ = line.split(" ", 2)
            headers: dict[str, str] = {}
            while (raw := await reader.readline()) not in (b"\r\n", b""):
                key, _, value = raw.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            url = urlsplit(target)
            request = Request(method, url.path, parse_qs(url.query), headers, body)
            self.requests.append(request)
            status, answer = self._route(request)
            body = b""
            if status == 403:
                error = {"code": "DENIED", "message": "requested access to the resource is denied"}
                body = json.dumps({"errors": [error]}).encode()
            head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
            head += [f"{k}: {v}" for k, v in answer.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _route(self, req: Request) -> tuple[int, dict[str, str]]:
        if req.method == "HEAD":
            return 404, {}
        if self.deny:
            return 403, {}
        if req.method == "PUT" and "/manifests/" in req.path:
            return 201, {"Docker-Content-Digest": _digest(req.body)}
        if req.method == "POST" and req.path.endswith("/blobs/uploads/"):
            self.held.clear()
            return 202, {"Location": self._location(), "Range": "0-0"}
        if not req.path.startswith(f"/upload/s{self._step}"):
            return 404, {}  # a stale Location: the client did not follow the last one
        if req.method == "PATCH":
            if self.refuse_first_patch:
                self.refuse_first_patch = False
                return 416, {"Location": self._location(), "Range": self._range()}
            start = int(req.headers["content-range"].split("-")[0])
            if start != len(self.held):
                return 416, {"Location": self._location(), "Range": self._range()}
            keep = req.body[: self.accept_per_patch] if self.accept_per_patch else req.body
            self.held += keep
            return 202, {"Location": self._location(), "Range": self._range()}
        if req.method == "GET":
            return 204, {"Location": self._location(), "Range": self._range()}
        if req.method == "PUT":
            self.held += req.body
            digest = req.query["digest"][0]
            if _digest(bytes(self.held)) != digest:
                return 400, {}
            self.stored[digest] = bytes(self.held)
            return 201, {"Docker-Content-Digest": digest}
        return 405, {}


@pytest.fixture
async def fake() -> AsyncIterator[FakeUploads]:
    server = FakeUploads()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def uploader(fake: FakeUploads, tmp_path: Path) -> AsyncIterator[BlobUploader]:
    client = RegistryClient(
        RegistriesConfig(), CredentialStore(tmp_path / "config.json"), user_agent="test"
    )
    ep = RegistriesConfig().endpoints_for(parse_reference(f"{fake.host}/repo:1"))[-1]
    yield BlobUploader(client, ep, None, monolithic_max=100, chunk_size=1000)
    await client.aclose()


def _blob(tmp_path: Path, size: int) -> tuple[Path, mt.Descriptor]:
    data = bytes(i % 251 for i in range(size))
    path = tmp_path / "blob"
    path.write_bytes(data)
    return path, mt.Descriptor(mt.OCI_LAYER_GZIP, _digest(data), size)


def test_location_range_and_digest_helpers() -> None:
    base = "http://reg:5000/v2/repo/blobs/uploads/"
    assert resolve_location(base, "/v2/repo/blobs/uploads/u1?_state=x") == (
        "http://reg:5000/v2/repo/blobs/uploads/u1?_state=x"
    )
    assert resolve_location(base, "u2") == "http://reg:5000/v2/repo/blobs/uploads/u2"
    absolute = "https://other:443/upload/u3?_state=y"
    assert resolve_location(base, absolute) == absolute
    with pytest.raises(Unavailable):
        resolve_location(base, "")
    assert parse_range("0-99") == 100
    assert parse_range("bytes=0-4095") == 4096
    for bad in ("", "5-9", "0-", "bytes 0-1"):
        with pytest.raises(Unavailable):
            parse_range(bad)
    # The registry's own state stays in the query; the digest joins it.
    assert with_digest("http://r/u/1?_state=a%2Bb", "sha256:00") == (
        "http://r/u/1?_state=a%2Bb&digest=sha256%3A00"
    )


@pytest.mark.parametrize("absolute", [False, True])
async def test_small_blob_is_one_put_at_the_given_location(
    fake: FakeUploads, uploader: BlobUploader, tmp_path: Path, absolute: bool
) -> None:
    fake.absolute_locations = absolute
    path, desc = _blob(tmp_path, 80)
    location = await uploader.start(desc.digest)
    assert location is not None
    await uploader.upload(location, desc, path)
    assert fake.stored[desc.digest] == path.read_bytes()
    put = fake.requests[-1]
    assert put.method == "PUT" and put.path == "/upload/s1"
    assert put.query["_state"] == ["st1"] and put.query["digest"] == [desc.digest]
    assert [r.method for r in fake.requests] == ["POST", "PUT"]


async def test_chunks_follow_location_and_what_the_registry_kept(
    fake: FakeUploads, uploader: BlobUploader, tmp_path: Path
) -> None:
    fake.range_prefix = "bytes="
    fake.accept_per_patch = 700  # of each 1000-byte chunk; the rest must be sent again
    path, desc = _blob(tmp_path, 3500)
    seen: list[int] = []
    location = await uploader.start(desc.digest)
    assert location is not None
    await uploader.upload(location, desc, path, seen.append)
    assert fake.stored[desc.digest] == path.read_bytes()
    patches = [r for r in fake.requests if r.method == "PATCH"]
    starts = [int(r.headers["content-range"].split("-")[0]) for r in patches]
    assert starts == [0, 700, 1400, 2100, 2800]
    assert all(len(r.body) <= 1000 for r in patches)
    assert seen[-1] == 3500


async def test_416_asks_where_the_upload_stands(
    fake: FakeUploads, uploader: BlobUploader, tmp_path: Path
) -> None:
    fake.refuse_first_patch = True
    path, desc = _blob(tmp_path, 2500)
    location = await uploader.start(desc.digest)
    assert location is not None
    await uploader.upload(location, desc, path)
    assert fake.stored[desc.digest] == path.read_bytes()
    methods = [r.method for r in fake.requests]
    assert methods[:4] == ["POST", "PATCH", "GET", "PATCH"]


async def test_short_file_is_data_loss(
    fake: FakeUploads, uploader: BlobUploader, tmp_path: Path
) -> None:
    path, desc = _blob(tmp_path, 2500)
    path.write_bytes(path.read_bytes()[:1200])
    location = await uploader.start(desc.digest)
    assert location is not None
    with pytest.raises(DataLoss):
        await uploader.upload(location, desc, path)


def _image_service(tmp_path: Path, host: str) -> ImageService:
    """A store holding one image, HOST/team/app:1: a config and a 300-byte layer blob."""
    metadata = MetadataStore(tmp_path / "meta.db")
    content = ContentStore(tmp_path / "content")
    layer = content.write_bytes(b"L" * 300)
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "d" * 64]}})
    config_id = content.write_bytes(config.encode())
    layer_desc = mt.Descriptor(mt.OCI_LAYER_GZIP, layer, 300)
    manifest = content.write_bytes(oci_manifest(config_id, len(config), [layer_desc.to_json()]))
    metadata.put_image(
        image_id=config_id,
        manifest_digest=manifest,
        manifest_media_type=mt.OCI_MANIFEST,
        created=None,
        size=300,
        chain_ids=[],
        names=[(f"{host}/team/app:1", "tag")],
    )
    registry = RegistryClient(
        RegistriesConfig(), CredentialStore(tmp_path / "config.json"), user_agent="test"
    )
    registry._retry_delays = ()
    return ImageService(content, metadata, LayerStore(tmp_path / "layers", metadata), registry)


async def test_push_errors_say_what_docker_says(fake: FakeUploads, tmp_path: Path) -> None:
    images = _image_service(tmp_path, fake.host)
    # One upload at a time: the fake keeps a single upload session.
    pusher = ImagePusher(images, images.registry, max_concurrent_uploads=1)
    events: list[PullEvent] = []
    try:
        with pytest.raises(NotFound, match="An image does not exist locally with the tag: "):
            await pusher.push(f"{fake.host}/team/other:1", progress=events.append)
        fake.deny = True
        with pytest.raises(PermissionDenied) as denied:
            await pusher.push(f"{fake.host}/team/app:1", progress=events.append)
        assert denied.value.message.startswith("denied: requested access to the resource is denied")
        # Nothing was recorded as being there.
        assert (
            images.metadata.blob_sources(images.resolve(f"{fake.host}/team/app:1").id, fake.host)
            == []
        )
        fake.deny = False
        result = await pusher.push(f"{fake.host}/team/app:1", progress=events.append)
        assert [t.tag for t in result.tags] == ["1"]
        assert events[-1].status.startswith("1: digest: sha256:")
        assert len(fake.stored) == 2  # the layer and the config
    finally:
        await images.registry.aclose()
        images.metadata.close()

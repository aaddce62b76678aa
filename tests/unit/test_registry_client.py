"""RegistryClient against a tiny in-process HTTP/1.1 registry.

Only the auth flows, transport fallback and digest checks are covered here;
pulling from a real registry is an integration test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import runtimed.images.registry as registry_module
from runtimed.errors import (
    DataLoss,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from runtimed.images import manifest as m
from runtimed.images.auth import Credential, CredentialStore
from runtimed.images.manifest import Descriptor, Platform
from runtimed.images.reference import parse_reference
from runtimed.images.registries_conf import RegistriesConfig, from_toml
from runtimed.images.registry import RegistryClient, parse_challenge

USERS = {"alice": "wonderland"}

# Self-signed certificate and key for 127.0.0.1, made once for these tests.
SELF_SIGNED_PEM = """\
-----BEGIN CERTIFICATE-----
MIIBqjCCAVCgAwIBAgIUOcoSjkMNdhZwHVNZt631bh+pmw4wCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWcnVudGltZWQtdGVzdC1yZWdpc3RyeTAgFw0yNjExMjgwODA3
MjBaGA8yMTI2MTEwNDA4MDcyMFowITEfMB0GA1UEAwwWcnVudGltZWQtdGVzdC1y
ZWdpc3RyeTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABA+Hdz7Jm55PYJNuMzcw
fQ06+I+tLfCRLl05D6/6fSPhq6KMxRKXHCg8dBBUC5lYPTogzjUD1CBy4OUQZHdV
h3mjZDBiMB0GA1UdDgQWBBQta7kQmIKEdfE/u0uufnm5/MZIpzAfBgNVHSMEGDAW
gBQta7kQmIKEdfE/u0uufnm5/MZIpzAPBgNVHRMBAf8EBTADAQH/MA8GA1UdEQQI
MAaHBH8AAAEwCgYIKoZIzj0EAwIDSAAwRQIgVOQvs0G2OMgur0Dymir61+63WOb/
BYJqnjagmSLGbRYCIQDXnfAt/jxv9w25PWd14jYXePa+ymfZjfHD3vmk6QjMWw==
-----END CERTIFICATE-----
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgxD3HoetIr6ZAy9IX
ReglNyYrIVzu6yuDZM36eKYal92hRANCAAQPh3c+yZueT2CTbjM3MH0NOviPrS3w
kS5dOQ+v+n0j4auijMUSlxwoPHQQVAuZWD06IM41A9QgcuDlEGR3VYd5
-----END PRIVATE KEY-----
"""


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class FakeRegistry:
    """Just enough of the distribution API, auth and token server to test a client."""

    auth: str | None = None  # None, "basic" or "bearer"
    anonymous_tokens: bool = True
    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    corrupt: dict[str, bytes] = field(default_factory=dict)  # served instead of the real blob
    bad_digest_header: bool = False
    drop_blob_once: set[str] = field(default_factory=set)
    redirect_blobs: bool = False
    blob_delay: float = 0.0
    requests: list[Seen] = field(default_factory=list)
    tls_attempts: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    host: str = ""
    _server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=tls)
        self.host = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def add_image(self, repo: str, tag: str, manifest: bytes, media_type: str) -> str:
        digest = _digest(manifest)
        self.manifests[(repo, tag)] = (manifest, media_type)
        self.manifests[(repo, digest)] = (manifest, media_type)
        return digest

    def of(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path.startswith(path)]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readexactly(1)
            if first == b"\x16":  # a TLS ClientHello on our plain port, as Go's server answers
                self.tls_attempts += 1
                writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                return
            line = (first + await reader.readline()).decode()
            method, target, _ = line.split(" ", 2)
            headers: dict[str, str] = {}
            while (raw := await reader.readline()) not in (b"\r\n", b""):
                key, _, value = raw.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            if int(headers.get("content-length", "0")):
                await reader.readexactly(int(headers["content-length"]))
            url = urlsplit(target)
            seen = Seen(method, url.path, parse_qs(url.query), headers)
            self.requests.append(seen)
            await self._route(seen, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _respond(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        declared_length: int | None = None,
    ) -> None:
        head = [f"HTTP/1.1 {status} X", f"Content-Length: {declared_length or len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        head.append("Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def _error(self, writer: asyncio.StreamWriter, status: int, code: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()
        self._respond(writer, status, body, {"Content-Type": "application/json"})

    def _basic_user(self, header: str) -> str | None:
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if USERS.get(user) == password else None

    def _authorized(self, seen: Seen, scope: str) -> bool:
        header = seen.headers.get("authorization", "")
        if self.auth == "basic":
            return self._basic_user(header) is not None
        if self.auth == "bearer":
            return header.startswith("Bearer ") and header.endswith("|" + scope)
        return True

    def _challenge(self, scope: str) -> dict[str, str]:
        if self.auth == "basic":
            return {"WWW-Authenticate": 'Basic realm="fake"'}
        params = f'realm="http://{self.host}/token",service="fake-registry"'
        if scope:
            params += f',scope="{scope}"'
        return {"WWW-Authenticate": f"Bearer {params}"}

    async def _route(self, seen: Seen, writer: asyncio.StreamWriter) -> None:
        path = seen.path
        if path == "/token":
            header = seen.headers.get("authorization", "")
            user = self._basic_user(header)
            if (header and user is None) or (user is None and not self.anonymous_tokens):
                self._respond(writer, 401)
                return
            scope = seen.query.get("scope", [""])[0]
            token = json.dumps({"access_token": f"{user or 'anon'}|{scope}", "expires_in": 300})
            self._respond(writer, 200, token.encode(), {"Content-Type": "application/json"})
            return
        if path.startswith("/storage/"):
            self._respond(writer, 200, self.blobs[path.removeprefix("/storage/")])
            return
        if not path.startswith("/v2/"):
            self._respond(writer, 404)
            return
        repo, kind, ref = "", "", ""
        for kind in ("manifests", "blobs"):
            if f"/{kind}/" in path:
                repo, ref = path[4:].split(f"/{kind}/")
                break
        scope = f"repository:{repo}:pull" if repo else ""
        if not self._authorized(seen, scope):
            self._respond(writer, 401, b"", self._challenge(scope))
            return
        if path == "/v2/":
            self._respond(writer, 200, b"{}")
        elif kind == "manifests":
            self._serve_manifest(writer, repo, ref)
        else:
            await self._serve_blob(writer, ref)

    def _serve_manifest(self, writer: asyncio.StreamWriter, repo: str, ref: str) -> None:
        if (repo, ref) not in self.manifests:
            self._error(writer, 404, "MANIFEST_UNKNOWN")
            return
        data, media_type = self.manifests[(repo, ref)]
        header = _digest(b"other" if self.bad_digest_header else data)
        self._respond(
            writer, 200, data, {"Content-Type": media_type, "Docker-Content-Digest": header}
        )

    async def _serve_blob(self, writer: asyncio.StreamWriter, digest: str) -> None:
        if digest not in self.blobs:
            self._error(writer, 404, "BLOB_UNKNOWN")
            return
        if self.redirect_blobs:
            self._respond(writer, 307, headers={"Location": f"/storage/{digest}"})
            return
        data = self.corrupt.get(digest, self.blobs[digest])
        if digest in self.drop_blob_once:
            self.drop_blob_once.discard(digest)
            self._respond(writer, 200, data[: len(data) // 2], declared_length=len(data))
            return
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.blob_delay)
            self._respond(writer, 200, data)
            await writer.drain()
        finally:
            self.in_flight -= 1


@dataclass
class Image:
    config: bytes
    layers: list[bytes]
    manifest: bytes

    @property
    def manifest_digest(self) -> str:
        return _digest(self.manifest)


def make_image(seed: str, nlayers: int = 2, layer_size: int = 200_000) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layers = [
        hashlib.sha256(f"{seed}{i}".encode()).digest() * (layer_size // 32) for i in range(nlayers)
    ]
    doc = {
        "schemaVersion": 2,
        "mediaType": m.OCI_MANIFEST,
        "config": {"mediaType": m.OCI_CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [
            {"mediaType": m.OCI_LAYER_GZIP, "digest": _digest(data), "size": len(data)}
            for data in layers
        ],
    }
    return Image(config, layers, json.dumps(doc).encode())


def publish(reg: FakeRegistry, repo: str, tag: str, image: Image) -> str:
    reg.blobs[_digest(image.config)] = image.config
    for data in image.layers:
        reg.blobs[_digest(data)] = data
    return reg.add_image(repo, tag, image.manifest, m.OCI_MANIFEST)


def publish_index(reg: FakeRegistry, repo: str, tag: str, images: dict[str, Image]) -> str:
    entries = []
    for plat, image in images.items():
        digest = publish(reg, repo, digest_tag := f"{tag}-{plat.replace('/', '-')}", image)
        del reg.manifests[(repo, digest_tag)]
        os_name, arch, *variant = plat.split("/")
        platform: dict[str, str] = {"os": os_name, "architecture": arch}
        if variant:
            platform["variant"] = variant[0]
        entries.append(
            {
                "mediaType": m.OCI_MANIFEST,
                "digest": digest,
                "size": len(image.manifest),
                "platform": platform,
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": entries})
    return reg.add_image(repo, tag, index.encode(), m.OCI_INDEX)


@pytest.fixture
async def registry() -> AsyncIterator[FakeRegistry]:
    reg = FakeRegistry()
    await reg.start()
    yield reg
    await reg.stop()


@pytest.fixture
def creds(tmp_path: Path) -> CredentialStore:
    return CredentialStore(tmp_path / "docker" / "config.json")


@pytest.fixture
async def client(creds: CredentialStore) -> AsyncIterator[RegistryClient]:
    c = RegistryClient(RegistriesConfig(), creds, user_agent="runtimed-test/1", timeout=5.0)
    c._retry_delays = (0.0, 0.0)
    yield c
    await c.aclose()


AMD64 = Platform("linux", "amd64")


async def test_bearer_flow_index_selection_and_blob_download(
    registry: FakeRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    registry.auth = "bearer"
    amd, arm = make_image("amd"), make_image("arm")
    index_digest = publish_index(
        registry, "library/busybox", "1.36", {"linux/amd64": amd, "linux/arm64/v8": arm}
    )
    ref = parse_reference(f"{registry.host}/library/busybox:1.36")

    image = await client.resolve(ref, platform=Platform("linux", "arm64"))

    assert image.index_digest == index_digest
    assert image.repo_digest == index_digest
    assert image.manifest_digest == arm.manifest_digest
    assert image.manifest_bytes == arm.manifest
    assert image.manifest_media_type == m.OCI_MANIFEST
    assert image.config.digest == _digest(arm.config)
    assert [layer.digest for layer in image.layers] == [_digest(d) for d in arm.layers]
    assert image.platform == Platform("linux", "arm64", "v8")
    assert image.endpoint.host == registry.host and not image.endpoint.is_mirror

    seen: list[int] = []
    dest = tmp_path / "layer.tmp"
    await client.fetch_blob(image, image.layers[0], dest, seen.append)
    assert dest.read_bytes() == arm.layers[0]
    assert seen[-1] == len(arm.layers[0])
    # Progress is throttled: steps of at least _PROGRESS_STEP, then the final size once.
    steps = [b - a for a, b in itertools.pairwise([0, *seen[:-1]])]
    assert seen.count(len(arm.layers[0])) == 1
    assert all(step >= registry_module._PROGRESS_STEP for step in steps)
    await client.fetch_blob(image, image.layers[1], tmp_path / "l2", None)

    # One anonymous attempt, one token for the repository scope, reused afterwards.
    tokens = registry.of("/token")
    assert len(tokens) == 1
    assert tokens[0].query == {
        "service": ["fake-registry"],
        "scope": ["repository:library/busybox:pull"],
    }
    assert "authorization" not in tokens[0].headers
    manifest_requests = registry.of("/v2/library/busybox/manifests/")
    assert "authorization" not in manifest_requests[0].headers
    assert all("authorization" in r.headers for r in registry.of("/v2/library/busybox/blobs/"))
    assert m.OCI_INDEX in manifest_requests[0].headers["accept"]
    assert manifest_requests[0].headers["user-agent"] == "runtimed-test/1"
    # Loopback: https was tried once, then plain http remembered for the host.
    assert registry.tls_attempts == 1


async def test_default_platform_is_the_host(
    registry: FakeRegistry, client: RegistryClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(m._platform, "machine", lambda: "x86_64")
    amd, arm = make_image("amd"), make_image("arm")
    publish_index(registry, "x", "latest", {"linux/arm64": arm, "linux/amd64": amd})
    image = await client.resolve(parse_reference(f"{registry.host}/x"))
    assert image.manifest_digest == amd.manifest_digest


async def test_plain_manifest_by_tag_has_no_index(
    registry: FakeRegistry, client: RegistryClient
) -> None:
    img = make_image("one")
    digest = publish(registry, "app", "v1", img)
    image = await client.resolve(parse_reference(f"{registry.host}/app:v1"), platform=AMD64)
    assert image.index_digest is None
    assert image.manifest_digest == image.repo_digest == digest


async def test_resolve_by_digest_fetches_by_digest(
    registry: FakeRegistry, client: RegistryClient
) -> None:
    img = make_image("one")
    digest = publish(registry, "app", "v1", img)
    ref = parse_reference(f"{registry.host}/app:ignored@{digest}")
    image = await client.resolve(ref, platform=AMD64)
    assert image.manifest_digest == digest
    assert registry.of("/v2/app/manifests/")[0].path.endswith(digest)


async def test_bearer_with_stored_credentials(
    registry: FakeRegistry, client: RegistryClient, creds: CredentialStore
) -> None:
    registry.auth, registry.anonymous_tokens = "bearer", False
    publish(registry, "private/app", "v1", make_image("p"))
    ref = parse_reference(f"{registry.host}/private/app:v1")

    with pytest.raises(Unauthenticated) as info:
        await client.resolve(ref, platform=AMD64)
    assert f"authentication required for {registry.host}" in info.value.message
    assert f"runtimectl login {registry.host}" in info.value.message

    creds.store(registry.host, "alice", "wrong")
    with pytest.raises(Unauthenticated, match="rejected the credentials for user 'alice'"):
        await client.resolve(ref, platform=AMD64)

    creds.store(registry.host, "alice", USERS["alice"])
    image = await client.resolve(ref, platform=AMD64)
    assert image.repository == "private/app"
    token_request = registry.of("/token")[-1]
    assert (
        token_request.headers["authorization"]
        == "Basic " + base64.b64encode(b"alice:wonderland").decode()
    )


async def test_basic_auth_and_explicit_credential_beats_store(
    registry: FakeRegistry, client: RegistryClient, creds: CredentialStore, tmp_path: Path
) -> None:
    registry.auth = "basic"
    publish(registry, "app", "v1", make_image("b"))
    ref = parse_reference(f"{registry.host}/app:v1")

    with pytest.raises(Unauthenticated, match=f"run runtimectl login {registry.host}$"):
        await client.resolve(ref, platform=AMD64)

    creds.store(registry.host, "alice", "stale")
    with pytest.raises(Unauthenticated, match="rejected the credentials"):
        await client.resolve(ref, platform=AMD64)

    good = Credential("alice", USERS["alice"])
    image = await client.resolve(ref, platform=AMD64, credential=good)
    # Blobs reuse the credential that resolved the manifest, not the stale stored one.
    await client.fetch_blob(image, image.layers[0], tmp_path / "blob")
    assert (tmp_path / "blob").stat().st_size == image.layers[0].size
    assert registry.of("/token") == []


async def test_check_login(registry: FakeRegistry, client: RegistryClient) -> None:
    registry.auth, registry.anonymous_tokens = "bearer", False
    await client.check_login(registry.host, Credential("alice", USERS["alice"]))
    with pytest.raises(Unauthenticated, match="rejected the credentials"):
        await client.check_login(registry.host, Credential("alice", "nope"))
    registry.auth = "basic"
    client._challenges.clear()
    await client.check_login(registry.host, Credential("alice", USERS["alice"]))
    with pytest.raises(Unauthenticated):
        await client.check_login(registry.host, Credential("mallory", "x"))


async def test_corrupt_blob_is_data_loss_and_leaves_no_file(
    registry: FakeRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    img = make_image("c")
    publish(registry, "app", "v1", img)
    image = await client.resolve(parse_reference(f"{registry.host}/app:v1"), platform=AMD64)
    layer = image.layers[0]
    tampered = bytearray(img.layers[0])
    tampered[100] ^= 0xFF
    registry.corrupt[layer.digest] = bytes(tampered)
    dest = tmp_path / "layer.tmp"
    dest.write_bytes(b"previous attempt")

    with pytest.raises(DataLoss) as info:
        await client.fetch_blob(image, layer, dest)
    assert info.value.message == (
        f"blob {layer.digest} from {registry.host}/app failed verification: "
        f"got {_digest(bytes(tampered))}"
    )
    assert not dest.exists()

    registry.corrupt[layer.digest] = img.layers[0] + b"trailing junk"
    with pytest.raises(DataLoss, match="more than the"):
        await client.fetch_blob(image, layer, dest)
    assert not dest.exists()


async def test_manifest_verification(registry: FakeRegistry, client: RegistryClient) -> None:
    img, other = make_image("m"), make_image("other")
    digest = publish(registry, "app", "v1", img)
    registry.manifests[("app", digest)] = (other.manifest, m.OCI_MANIFEST)
    with pytest.raises(DataLoss, match=f"manifest {digest} from .* failed verification"):
        await client.resolve(parse_reference(f"{registry.host}/app@{digest}"), platform=AMD64)

    registry.bad_digest_header = True
    with pytest.raises(DataLoss, match="failed verification"):
        await client.resolve(parse_reference(f"{registry.host}/app:v1"), platform=AMD64)


async def test_missing_manifest_platform_and_schema1(
    registry: FakeRegistry, client: RegistryClient
) -> None:
    with pytest.raises(NotFound, match=f"^manifest unknown: {registry.host}/nothing:latest"):
        await client.resolve(parse_reference(f"{registry.host}/nothing"), platform=AMD64)

    publish_index(
        registry, "multi", "1", {"linux/arm/v7": make_image("a"), "linux/s390x": make_image("s")}
    )
    with pytest.raises(NotFound) as info:
        await client.resolve(parse_reference(f"{registry.host}/multi:1"), platform=AMD64)
    assert info.value.message == (
        f"no image for platform linux/amd64 in {registry.host}/multi:1, "
        "available: linux/arm/v7, linux/s390x"
    )

    old = json.dumps({"schemaVersion": 1, "name": "old", "fsLayers": []}).encode()
    registry.add_image("old", "latest", old, m.DOCKER_SCHEMA1_SIGNED)
    with pytest.raises(InvalidArgument, match="schema 1 is not supported"):
        await client.resolve(parse_reference(f"{registry.host}/old"), platform=AMD64)


async def test_secure_endpoint_does_not_fall_back_to_http(
    registry: FakeRegistry, creds: CredentialStore
) -> None:
    class StrictConfig(RegistriesConfig):
        def is_insecure(self, host: str) -> bool:
            return False

    publish(registry, "app", "v1", make_image("s"))
    client = RegistryClient(StrictConfig(), creds, user_agent="t", timeout=5.0)
    try:
        with pytest.raises(
            Unavailable, match=f"cannot reach registry {registry.host} over https"
        ) as err:
            await client.resolve(parse_reference(f"{registry.host}/app:v1"), platform=AMD64)
    finally:
        await client.aclose()
    # A plain-HTTP registry: the error says how to allow it.
    assert f"runtimed --insecure-registry {registry.host}" in err.value.message
    assert f'insecure_registries = ["{registry.host}"] in runtimed.toml' in err.value.message
    assert registry.tls_attempts == 1
    assert registry.of("/v2/") == []


async def test_https_with_self_signed_certificate(creds: CredentialStore, tmp_path: Path) -> None:
    pem = tmp_path / "registry.pem"
    pem.write_text(SELF_SIGNED_PEM)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pem)
    registry = FakeRegistry()
    await registry.start(tls)
    publish(registry, "app", "v1", make_image("tls"))
    ref = parse_reference(f"{registry.host}/app:v1")

    class StrictConfig(RegistriesConfig):
        def is_insecure(self, host: str) -> bool:
            return False

    # Loopback is insecure: TLS is used but the certificate is not checked.
    lenient = RegistryClient(RegistriesConfig(), creds, user_agent="t", timeout=5.0)
    strict = RegistryClient(StrictConfig(), creds, user_agent="t", timeout=5.0)
    try:
        image = await lenient.resolve(ref, platform=AMD64)
        await lenient.fetch_blob(image, image.config, tmp_path / "config")
        assert (tmp_path / "config").stat().st_size == image.config.size
        with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED.*--insecure-registry"):
            await strict.resolve(ref, platform=AMD64)
    finally:
        await lenient.aclose()
        await strict.aclose()
        await registry.stop()


async def test_unreachable_registry_is_unavailable(client: RegistryClient) -> None:
    with pytest.raises(Unavailable, match="cannot reach registry 127.0.0.1:1 over http"):
        await client.resolve(parse_reference("127.0.0.1:1/app"), platform=AMD64)


async def test_mirror_failure_falls_through_to_primary(
    registry: FakeRegistry, creds: CredentialStore
) -> None:
    publish(registry, "app", "v1", make_image("mirror"))
    conf = f"""
[[registry]]
location = "{registry.host}"
[[registry.mirror]]
location = "127.0.0.1:1/cache"
"""
    client = RegistryClient(from_toml(conf), creds, user_agent="t", timeout=5.0)
    try:
        image = await client.resolve(parse_reference(f"{registry.host}/app:v1"), platform=AMD64)
        assert not image.endpoint.is_mirror
        # A working mirror answers instead of the registry, under its rewritten path.
        publish(registry, "cache/app", "v1", make_image("from-mirror"))
        mirrored = (
            '[[registry]]\nlocation = "example.com"\n'
            f'[[registry.mirror]]\nlocation = "{registry.host}/cache"\n'
        )
        client._config = from_toml(mirrored)
        image = await client.resolve(parse_reference("example.com/app:v1"), platform=AMD64)
        assert image.endpoint.is_mirror and image.repository == "cache/app"
    finally:
        await client.aclose()


async def test_dropped_connection_is_retried_and_redirects_followed(
    registry: FakeRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    img = make_image("r")
    publish(registry, "app", "v1", img)
    image = await client.resolve(parse_reference(f"{registry.host}/app:v1"), platform=AMD64)
    layer = image.layers[0]
    registry.drop_blob_once.add(layer.digest)
    await client.fetch_blob(image, layer, tmp_path / "a")
    assert (tmp_path / "a").read_bytes() == img.layers[0]
    assert len(registry.of(f"/v2/app/blobs/{layer.digest}")) == 2

    registry.redirect_blobs = True
    await client.fetch_blob(image, image.layers[1], tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == img.layers[1]
    assert registry.of("/storage/")


async def test_blob_missing_is_not_found(
    registry: FakeRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    publish(registry, "app", "v1", make_image("n"))
    image = await client.resolve(parse_reference(f"{registry.host}/app:v1"), platform=AMD64)
    ghost = Descriptor(m.OCI_LAYER_GZIP, _digest(b"ghost"), 5)
    with pytest.raises(NotFound, match="BLOB_UNKNOWN"):
        await client.fetch_blob(image, ghost, tmp_path / "g")
    assert not (tmp_path / "g").exists()


async def test_downloads_respect_concurrency_limit(
    registry: FakeRegistry, creds: CredentialStore, tmp_path: Path
) -> None:
    img = make_image("c", nlayers=4, layer_size=1024)
    publish(registry, "app", "v1", img)
    registry.blob_delay = 0.05
    client = RegistryClient(
        RegistriesConfig(), creds, user_agent="t", timeout=5.0, max_concurrent_downloads=2
    )
    try:
        image = await client.resolve(parse_reference(f"{registry.host}/app:v1"), platform=AMD64)
        await asyncio.gather(
            *(client.fetch_blob(image, d, tmp_path / str(i)) for i, d in enumerate(image.layers))
        )
    finally:
        await client.aclose()
    assert registry.max_in_flight == 2
    assert [(tmp_path / str(i)).read_bytes() for i in range(4)] == img.layers


def test_parse_challenge() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'
    )
    challenge = parse_challenge(header)
    assert challenge is not None
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
    }
    assert parse_challenge("") is None


async def test_push_and_mount_scopes_are_separate_token_params(
    registry: FakeRegistry, client: RegistryClient
) -> None:
    registry.auth = "bearer"
    ep = RegistriesConfig().endpoints_for(parse_reference(f"{registry.host}/team/app:1"))[-1]
    scope = "repository:team/app:pull,push repository:team/base:pull"
    # The fake's tokens carry one scope only, so the retry is refused; the request
    # for the token is what this test reads.
    with pytest.raises(Unauthenticated):
        response = await client.request(
            ep, "HEAD", f"/v2/team/app/blobs/{_digest(b'x')}", credential=None, scope=scope
        )
        await response.aclose()
    token_request = registry.of("/token")[-1]
    assert token_request.query["scope"] == [
        "repository:team/app:pull,push",
        "repository:team/base:pull",
    ]
    assert token_request.query["service"] == ["fake-registry"]

"""A real registry for tests: Debian's `docker-registry` (distribution 2.8) on loopback,
and a small client that pushes images to it over the distribution HTTP API.

The registry runs as whoever runs the tests (no root needed), keeps its storage
in a temporary directory and logs to a file there, so a failing test can point
at the log.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from tests.support.oci import Image, Index, IndexEntry, Kind, build_index

REGISTRY_BINARY = "/usr/bin/docker-registry"
HTPASSWD_BINARY = "/usr/bin/htpasswd"


class RegistryError(RuntimeError):
    """The test registry did not start or refused a push."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Registry:
    """A `docker-registry serve` subprocess on 127.0.0.1 with filesystem storage.

    Use as a context manager, or call `start()` and `stop()` yourself. With
    `auth=(user, password)` the registry demands HTTP basic auth (htpasswd,
    bcrypt). `push()` and `push_index()` below use those credentials by default.
    """

    def __init__(self, *, auth: tuple[str, str] | None = None, workdir: Path | None = None) -> None:
        self.auth = auth
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="runtimed-registry-"))
        self.storage = self.workdir / "storage"
        self.log_path = self.workdir / "registry.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """The registry part of an image reference: 127.0.0.1:PORT."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, repo: str, tag: str | None = None, digest: str | None = None) -> str:
        """A full image reference into this registry, by tag or by digest."""
        if digest:
            return f"{self.host}/{repo}@{digest}"
        return f"{self.host}/{repo}:{tag or 'latest'}"

    def client(self, *, auth: tuple[str, str] | None | bool = True) -> httpx.Client:
        """An httpx client for this registry; `auth=True` means the registry's own
        credentials, `False`/None means none, a tuple means those."""
        creds = self.auth if auth is True else (auth or None)
        return httpx.Client(base_url=self.url, auth=creds, timeout=30.0)

    def blob_data_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (distribution 2.x layout)."""
        algo, _, hexdigest = digest.partition(":")
        return self.storage / "docker/registry/v2/blobs" / algo / hexdigest[:2] / hexdigest / "data"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no registry log)"

    # --- lifecycle -------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> Registry:
        self.storage.mkdir(parents=True, exist_ok=True)
        # Another process can grab the probed port before the registry binds it;
        # a few attempts make that race harmless.
        for _attempt in range(3):
            self.port = _free_port()
            config = self.workdir / "config.yml"
            config.write_text(self._config_yaml())
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    [REGISTRY_BINARY, "serve", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                )
            if self._wait_ready(timeout):
                return self
            if self._proc.poll() is None:
                self.stop()
                raise RegistryError(
                    f"registry did not answer on {self.url} within {timeout}s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
        raise RegistryError(f"registry exited at start; log {self.log_path}:\n{self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            with contextlib.suppress(httpx.TransportError):
                # 401 counts as ready: an auth registry answers that to everyone.
                if httpx.get(f"{self.url}/v2/", timeout=1.0).status_code in (200, 401):
                    return True
            time.sleep(0.05)
        return False

    def _config_yaml(self) -> str:
        auth = ""
        if self.auth:
            htpasswd = self.workdir / "htpasswd"
            user, password = self.auth
            line = subprocess.run(
                [HTPASSWD_BINARY, "-Bbn", user, password],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            htpasswd.write_text(line + "\n")
            auth = f"auth:\n  htpasswd:\n    realm: runtimed-test\n    path: {htpasswd}\n"
        # No blob descriptor cache: tests rewrite stored blobs behind the
        # registry's back and the registry must not remember the old ones.
        return (
            "version: 0.1\n"
            "log:\n  level: info\n  formatter: text\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            "http:\n"
            f"  addr: 127.0.0.1:{self.port}\n"
            "  secret: runtimed-test-registry\n"
            "  headers:\n    X-Content-Type-Options: [nosniff]\n"
            f"{auth}"
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def cleanup(self) -> None:
        """Stop and remove the work directory if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Registry:
        if not self.running:
            try:
                self.start()
            except BaseException:
                self.cleanup()  # __exit__ will not run; the error carries the log tail
                raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


# --- pushing ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pushed:
    """Where an image or index ended up."""

    registry_host: str
    repo: str
    tag: str | None
    digest: str
    media_type: str

    @property
    def ref(self) -> str:
        """By tag when there is one, else by digest."""
        if self.tag:
            return f"{self.registry_host}/{self.repo}:{self.tag}"
        return self.digest_ref

    @property
    def digest_ref(self) -> str:
        return f"{self.registry_host}/{self.repo}@{self.digest}"


def _check(resp: httpx.Response, *expected: int) -> httpx.Response:
    if resp.status_code not in expected:
        raise RegistryError(
            f"{resp.request.method} {resp.request.url} answered {resp.status_code} "
            f"(wanted {'/'.join(map(str, expected))}): {resp.text[:500]}"
        )
    return resp


def push_blob(client: httpx.Client, repo: str, digest: str, data: bytes) -> bool:
    """Upload one blob unless the repository has it already; True if uploaded."""
    if client.head(f"/v2/{repo}/blobs/{digest}").status_code == 200:
        return False
    started = _check(client.post(f"/v2/{repo}/blobs/uploads/"), 202)
    # Location may be relative and carries state in its query (_state=...);
    # httpx's params= would replace that query, so add the digest to it instead.
    location = httpx.URL(started.headers["Location"]).copy_add_param("digest", digest)
    done = client.put(
        location,
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    _check(done, 201)
    return True


def put_manifest(
    client: httpx.Client, repo: str, reference: str, body: bytes, media_type: str
) -> str:
    resp = _check(
        client.put(
            f"/v2/{repo}/manifests/{reference}",
            content=body,
            headers={"Content-Type": media_type},
        ),
        201,
    )
    return resp.headers.get("Docker-Content-Digest", "")


def push(
    registry: Registry,
    repo: str,
    tag: str | None,
    image: Image,
    *,
    auth: tuple[str, str] | None | bool = True,
) -> Pushed:
    """Push an image's blobs then its manifest, under `tag` or (None) by digest only."""
    with registry.client(auth=auth) as client:
        return _push_image(client, registry.host, repo, tag, image)


def _push_image(
    client: httpx.Client, host: str, repo: str, tag: str | None, image: Image
) -> Pushed:
    for digest, data in image.blobs().items():
        push_blob(client, repo, digest, data)
    served = put_manifest(client, repo, tag or image.digest, image.manifest, image.media_type)
    if served and served != image.digest:
        raise RegistryError(f"registry computed {served} for a manifest we hashed {image.digest}")
    return Pushed(host, repo, tag, image.digest, image.media_type)


def push_index(
    registry: Registry,
    repo: str,
    tag: str | None,
    entries: Sequence[IndexEntry] | Index,
    *,
    kind: Kind = "oci",
    auth: tuple[str, str] | None | bool = True,
) -> tuple[Pushed, Index]:
    """Push every platform image by digest, then the index (OCI) or manifest list
    (Docker) that names them. Entries are images or (image, "os/arch[/variant]")."""
    index = entries if isinstance(entries, Index) else build_index(entries, kind=kind)
    with registry.client(auth=auth) as client:
        for image in index.images:
            _push_image(client, registry.host, repo, None, image)
        put_manifest(client, repo, tag or index.digest, index.manifest, index.media_type)
    return Pushed(registry.host, repo, tag, index.digest, index.media_type), index

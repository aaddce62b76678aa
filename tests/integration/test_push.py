"""runtimectl push against Debian's docker-registry: mounts, skips, uploads, auth, pull-back."""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.fixtures import AUTH_PASSWORD, AUTH_USER
from tests.support.images import build_image, busybox_rootfs_layer, push
from tests.support.registry import Registry

pytestmark = pytest.mark.integration

FINAL = ("Pushed", "Layer already exists")
_DIGEST_LINE = re.compile(r"^(\S+): digest: (sha256:[0-9a-f]{64}) size: (\d+)$", re.MULTILINE)


def layer_statuses(out: str) -> dict[str, str]:
    """The last status of each layer line ("0123456789ab: Pushed")."""
    found: dict[str, str] = {}
    for line in out.splitlines():
        layer_id, sep, status = line.partition(": ")
        if sep and re.fullmatch(r"[0-9a-f]{12}", layer_id):
            found[layer_id] = status
    return found


def digest_lines(out: str) -> dict[str, tuple[str, int]]:
    """TAG -> (digest, size) from docker's closing line of each pushed tag."""
    return {tag: (digest, int(size)) for tag, digest, size in _DIGEST_LINE.findall(out)}


def registry_manifest(registry: Registry, repo: str, reference: str) -> tuple[str, bytes]:
    """The manifest a registry serves, and the digest it says it has."""
    accept = "application/vnd.oci.image.manifest.v1+json,"
    accept += "application/vnd.docker.distribution.manifest.v2+json"
    with registry.client() as client:
        resp = client.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})
        assert resp.status_code == 200, resp.text
        return resp.headers["Docker-Content-Digest"], resp.content


def skopeo_digest(ref: str, *auth: str) -> str:
    proc = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", *auth, f"docker://{ref}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout)["Digest"]


def random_rootfs(path: Path, size: int) -> Path:
    """A rootfs tarball holding one file of incompressible bytes."""
    data = random.Random(size).randbytes(size)
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("data")
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        info = tarfile.TarInfo("data/blob.bin")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def imported(daemon: Daemon, registry: Registry) -> str:
    """busybox imported from a tarball (never pulled), named into the registry."""
    return daemon.import_busybox(f"{registry.host}/push/imported:1")


def test_pulled_image_is_mounted_then_already_exists(daemon: Daemon, registry: Registry) -> None:
    source = push(registry, "push/source", "1", build_image([busybox_rootfs_layer()]))
    daemon.ok("pull", source.ref)
    target = f"{registry.host}/push/target:1"
    daemon.ok("tag", source.ref, target)

    first = daemon.ok("push", target).stdout
    assert f"The push refers to repository [{registry.host}/push/target]" in first
    statuses = layer_statuses(first)
    assert statuses and set(statuses.values()) == {"Mounted from push/source"}, first
    # The manifest goes up as pulled: same bytes, same digest.
    assert digest_lines(first)["1"][0] == source.digest
    served, body = registry_manifest(registry, "push/target", "1")
    assert served == source.digest
    assert "sha256:" + hashlib.sha256(body).hexdigest() == source.digest
    # As docker does, the pushed digest becomes one of the image's repo digests.
    doc = json.loads(daemon.ok("image", "inspect", target).stdout)[0]
    assert f"{registry.host}/push/target@{source.digest}" in doc["RepoDigests"]

    again = daemon.ok("push", target).stdout
    statuses = layer_statuses(again)
    assert statuses and set(statuses.values()) == {"Layer already exists"}, again
    assert digest_lines(again)["1"][0] == source.digest
    daemon.ok("rmi", target, source.ref)


def test_imported_image_pulls_back_identical(
    daemon: Daemon, registry: Registry, imported: str
) -> None:
    result = daemon.ok("push", imported).stdout
    statuses = layer_statuses(result)
    assert statuses and set(statuses.values()) == {"Pushed"}, result
    assert "Preparing" in result
    digest, size = digest_lines(result)["1"]
    served, body = registry_manifest(registry, "push/imported", "1")
    assert served == digest and len(body) == size
    image_id = json.loads(daemon.ok("image", "inspect", imported).stdout)[0]["Id"]

    # An independent client sees the same manifest digest.
    assert skopeo_digest(imported) == digest
    copied = daemon.root / "skopeo-copy"
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", f"docker://{imported}", f"dir:{copied}"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (copied / "manifest.json").read_bytes() == body

    # A daemon that never saw the image pulls it back by digest: same manifest, same id.
    with Daemon() as fresh:
        by_digest = f"{registry.host}/push/imported@{digest}"
        pulled_id = fresh.ok("pull", by_digest).out_lines[-1]
        assert pulled_id == image_id
        doc = json.loads(fresh.ok("image", "inspect", by_digest).stdout)[0]
        assert by_digest in doc["RepoDigests"]


def test_a_loaded_image_gets_its_blobs_on_first_push(daemon: Daemon, registry: Registry) -> None:
    # A docker-archive holds plain layer tars: the loading daemon keeps no blob to push.
    source = f"{registry.host}/push/saved:1"
    daemon.ok("import", str(random_rootfs(daemon.root / "saved.tar", 300_000)), source)
    archive = daemon.root / "saved-image.tar"
    daemon.ok("save", "-o", str(archive), source)
    daemon.ok("rmi", source)
    target = f"{registry.host}/push/loaded:1"
    with Daemon() as fresh:
        fresh.ok("load", "-i", str(archive))
        fresh.ok("tag", source, target)
        first = fresh.ok("push", target).stdout
        assert set(layer_statuses(first).values()) == {"Pushed"}, first
        digest = digest_lines(first)["1"][0]
        # The manifest made on the first push is kept: a second push sends the same one.
        again = fresh.ok("push", target).stdout
        assert set(layer_statuses(again).values()) == {"Layer already exists"}, again
        assert digest_lines(again)["1"][0] == digest
        image_id = json.loads(fresh.ok("image", "inspect", target).stdout)[0]["Id"]
    assert registry_manifest(registry, "push/loaded", "1")[0] == digest
    assert skopeo_digest(target) == digest
    with Daemon() as other:  # pulls it back by digest: the same image
        assert other.ok("pull", f"{registry.host}/push/loaded@{digest}").out_lines[-1] == image_id


def test_quiet_prints_only_the_reference(daemon: Daemon, imported: str) -> None:
    assert daemon.ok("push", "-q", imported).stdout == imported + "\n"
    name = imported.rsplit(":", 1)[0]
    daemon.ok("tag", imported, name)
    try:
        out = daemon.ok("push", name).stdout
        assert out.startswith("Using default tag: latest\n")
        assert "latest" in digest_lines(out)
    finally:
        daemon.ok("rmi", name)


def test_all_tags(daemon: Daemon, registry: Registry, imported: str) -> None:
    repo = f"{registry.host}/push/many"
    for tag in ("a", "b"):
        daemon.ok("tag", imported, f"{repo}:{tag}")
    try:
        out = daemon.ok("push", "--all-tags", repo).stdout
        pushed = digest_lines(out)
        assert sorted(pushed) == ["a", "b"], out
        assert pushed["a"] == pushed["b"]
        assert out.count("The push refers to repository") == 1
        for tag in ("a", "b"):
            assert registry_manifest(registry, "push/many", tag)[0] == pushed[tag][0]
        assert daemon.ok("push", "-a", "-q", repo).stdout == repo + "\n"
        refused = daemon.ctl("push", "-a", f"{repo}:a")
        assert refused.returncode == 1
        assert "tag can't be used with --all-tags/-a" in refused.stderr
    finally:
        daemon.ok("rmi", f"{repo}:a", f"{repo}:b")


def test_unknown_tag_and_hub_names_are_refused(daemon: Daemon, registry: Registry) -> None:
    missing = daemon.ctl("push", f"{registry.host}/push/none:nope")
    assert missing.returncode == 1
    assert (
        f"An image does not exist locally with the tag: {registry.host}/push/none" in missing.stderr
    )
    hub = daemon.ctl("push", "someapp:1")
    assert hub.returncode == 1
    assert "Docker Hub" in hub.stderr and "registry host" in hub.stderr
    by_digest = daemon.ctl("push", f"{registry.host}/push/none@sha256:{'0' * 64}")
    assert by_digest.returncode == 1 and "digest reference" in by_digest.stderr


def test_unreachable_registry(daemon: Daemon, imported: str) -> None:
    # A loopback port nothing listens on (the registry fixture's own port is taken).
    target = "127.0.0.1:9/push/nowhere:1"
    daemon.ok("tag", imported, target)
    try:
        result = daemon.ctl("push", target)
        assert result.returncode == 1
        assert "cannot reach registry 127.0.0.1:9" in result.stderr
    finally:
        daemon.ok("rmi", target)


def test_auth_registry_needs_login(daemon: Daemon, auth_registry: Registry, imported: str) -> None:
    target = f"{auth_registry.host}/push/private:1"
    daemon.ok("tag", imported, target)
    try:
        denied = daemon.ctl("push", target)
        assert denied.returncode == 1
        assert f"authentication required for {auth_registry.host}" in denied.stderr
        assert f"runtimectl login {auth_registry.host}" in denied.stderr
        daemon.ok(
            "login",
            "-u",
            AUTH_USER,
            "--password-stdin",
            auth_registry.host,
            input=AUTH_PASSWORD + "\n",
        )
        out = daemon.ok("push", target).stdout
        assert set(layer_statuses(out).values()) == {"Pushed"}, out
        digest = digest_lines(out)["1"][0]
        assert registry_manifest(auth_registry, "push/private", "1")[0] == digest
        creds = f"--creds={AUTH_USER}:{AUTH_PASSWORD}"
        assert skopeo_digest(target, creds) == digest
    finally:
        daemon.ctl("logout", auth_registry.host)
        daemon.ok("rmi", target)


def test_large_blob_goes_up_in_chunks(daemon: Daemon, registry: Registry) -> None:
    tarball = random_rootfs(daemon.root / "random-rootfs.tar", 20 * 2**20)
    target = f"{registry.host}/push/chunked:1"
    daemon.ok("import", str(tarball), target)
    try:
        out = daemon.ok("push", target).stdout
        assert set(layer_statuses(out).values()) == {"Pushed"}, out
        assert re.search(r"Pushing \[=*>? *\]", out), out
        digest = digest_lines(out)["1"][0]
        served, body = registry_manifest(registry, "push/chunked", "1")
        assert served == digest
        layer = json.loads(body)["layers"][0]
        assert layer["size"] > 20 * 2**20  # random data does not compress
        data = registry.blob_data_path(layer["digest"]).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"]
        patches = [
            line
            for line in registry.log_path.read_text().splitlines()
            if "http.request.method=PATCH" in line and "/v2/push/chunked/blobs/uploads/" in line
        ]
        assert len(patches) >= 2, "\n".join(patches)
    finally:
        daemon.ok("rmi", target)

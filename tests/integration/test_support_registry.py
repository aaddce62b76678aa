"""The test registry and the images we push into it behave like the real thing.

Everything else that pulls images trusts these scenarios, so here they are
fetched back over plain HTTP and checked byte by byte.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest

from tests.support.images import (
    PASSWD,
    PushedImages,
    big_image,
    busybox_rootfs_layer,
    push,
    rootfs_tarball,
)
from tests.support.oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Compression,
    Dir,
    File,
    Hardlink,
    Image,
    Layer,
    TarView,
    build_image,
    decompress,
    sha256_digest,
)
from tests.support.registry import Registry, RegistryError, push_blob

pytestmark = pytest.mark.integration

ACCEPT_ALL = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])

COMPRESSION_OF = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.v1.tar": "none",
}


def get_manifest(client: httpx.Client, repo: str, ref: str) -> httpx.Response:
    resp = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT_ALL})
    assert resp.status_code == 200, resp.text
    return resp


def get_blob(client: httpx.Client, repo: str, digest: str) -> bytes:
    resp = client.get(f"/v2/{repo}/blobs/{digest}", follow_redirects=True)
    assert resp.status_code == 200, resp.text
    return resp.content


def fetch_layer_tars(client: httpx.Client, repo: str, manifest: dict) -> list[bytes]:
    """Fetch every layer, check its digest and size, return the uncompressed tars."""
    tars = []
    for desc in manifest["layers"]:
        blob = get_blob(client, repo, desc["digest"])
        assert sha256_digest(blob) == desc["digest"]
        assert len(blob) == desc["size"]
        tars.append(decompress(blob, COMPRESSION_OF[desc["mediaType"]]))
    return tars


def apply_layers(tars: list[bytes]) -> dict[str, bytes | None]:
    """A reference unpacker: path -> content (None for non-regular files)."""
    tree: dict[str, bytes | None] = {}
    for tar in tars:
        view = TarView.of(tar)
        for name, info in view.members.items():
            head, _, base = name.rpartition("/")
            parent = f"/{head}" if head else ""
            if base == ".wh..wh..opq":
                tree = {p: c for p, c in tree.items() if not p.startswith(parent + "/")}
            elif base.startswith(".wh."):
                gone = f"{parent}/{base[4:]}"
                tree = {p: c for p, c in tree.items() if p != gone and not p.startswith(gone + "/")}
            else:
                tree[f"/{name}"] = view.contents.get(name) if info.isreg() else None
    return tree


def test_registry_answers_the_distribution_api(registry: Registry) -> None:
    resp = httpx.get(f"{registry.url}/v2/")
    assert resp.status_code == 200
    assert resp.headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_registry_stops_and_cleans_up() -> None:
    reg = Registry()
    with reg:
        url, workdir = reg.url, reg.workdir
        assert httpx.get(f"{url}/v2/").status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/v2/", timeout=2)
    assert not workdir.exists()


def test_busybox_manifest_and_blobs_come_back_intact(
    registry: Registry, pushed_images: PushedImages
) -> None:
    scenario = pushed_images.busybox
    assert scenario.ref == f"{registry.host}/library/busybox:1.36"
    with registry.client() as client:
        resp = get_manifest(client, "library/busybox", "1.36")
        assert resp.content == scenario.image.manifest
        assert resp.headers["Content-Type"] == DOCKER_MANIFEST
        assert resp.headers["Docker-Content-Digest"] == scenario.digest
        manifest = resp.json()
        assert len(manifest["layers"]) == 3

        config = get_blob(client, "library/busybox", manifest["config"]["digest"])
        assert sha256_digest(config) == manifest["config"]["digest"]
        tars = fetch_layer_tars(client, "library/busybox", manifest)

    assert json.loads(config)["rootfs"]["diff_ids"] == [sha256_digest(t) for t in tars]
    assert json.loads(config)["config"]["Cmd"] == ["sh"]
    tree = apply_layers(tars)
    for path, content in scenario.files.items():
        assert tree.get(path) == content, path
    for path in scenario.absent:
        assert path not in tree, path
    assert "/bin/busybox" in tree
    assert "/bin/wget" in tree


def test_busybox_base_layer_has_users_and_applet_links() -> None:
    view = TarView.of(busybox_rootfs_layer().tar)
    assert view.members["bin/busybox"].mode == 0o755
    assert view.members["bin/sh"].islnk()
    assert view.members["bin/sh"].linkname == "bin/busybox"
    assert view.members["tmp"].mode == 0o1777
    assert (view.members["home/app"].uid, view.members["home/app"].gid) == (1000, 1000)
    assert b"app:x:1000:1000:" in view.contents["etc/passwd"]
    symlinked = TarView.of(busybox_rootfs_layer(links="symlink").tar)
    assert symlinked.members["bin/ls"].issym()
    assert symlinked.members["bin/ls"].linkname == "busybox"


def test_mixed_image_keeps_zstd_and_uncompressed_layers(
    registry: Registry, pushed_images: PushedImages
) -> None:
    scenario = pushed_images.mixed
    with registry.client() as client:
        resp = get_manifest(client, "test/mixed", "1")
        assert resp.headers["Content-Type"] == OCI_MANIFEST
        manifest = resp.json()
        assert [COMPRESSION_OF[d["mediaType"]] for d in manifest["layers"]] == [
            "gzip",
            "zstd",
            "none",
        ]
        config = json.loads(get_blob(client, "test/mixed", manifest["config"]["digest"]))
        tars = fetch_layer_tars(client, "test/mixed", manifest)
    assert config["rootfs"]["diff_ids"] == [sha256_digest(t) for t in tars]
    # Same content as the Docker busybox image: identical uncompressed layers.
    assert (
        config["rootfs"]["diff_ids"]
        == pushed_images.busybox.image.config_json["rootfs"]["diff_ids"]
    )
    tree = apply_layers(tars)
    assert all(tree.get(p) == c for p, c in scenario.files.items())


@pytest.mark.parametrize(
    ("attr", "repo", "media_type", "child_type"),
    [
        ("multiarch", "test/multiarch", OCI_INDEX, OCI_MANIFEST),
        ("multiarch_docker", "test/multiarch-docker", DOCKER_MANIFEST_LIST, DOCKER_MANIFEST),
    ],
)
def test_index_lists_two_platforms_with_their_marker(
    registry: Registry,
    pushed_images: PushedImages,
    attr: str,
    repo: str,
    media_type: str,
    child_type: str,
) -> None:
    scenario = getattr(pushed_images, attr)
    with registry.client() as client:
        resp = get_manifest(client, repo, "1")
        assert resp.headers["Content-Type"] == media_type
        assert resp.headers["Docker-Content-Digest"] == scenario.pushed.digest
        entries = resp.json()["manifests"]
        platforms = {
            "/".join(filter(None, [p["os"], p["architecture"], p.get("variant")])): e["digest"]
            for e in entries
            for p in [e["platform"]]
        }
        assert set(platforms) == {"linux/amd64", "linux/arm64/v8"}
        for platform, digest in platforms.items():
            child = get_manifest(client, repo, digest)
            assert child.headers["Content-Type"] == child_type
            config = json.loads(get_blob(client, repo, child.json()["config"]["digest"]))
            arch = platform.split("/")[1]
            assert config["architecture"] == arch
            tree = apply_layers(fetch_layer_tars(client, repo, child.json()))
            assert tree[scenario.arch_file] == scenario.expected_arch(platform) == arch.encode()
            assert scenario.image_for(platform).digest == digest


def test_registry_hides_oci_manifests_from_clients_that_do_not_accept_them(
    registry: Registry, pushed_images: PushedImages
) -> None:
    # A fact about distribution 2.8 our registry client must live with: it
    # answers by what the Accept header allows, not by what is stored.
    with registry.client() as client:
        resp = client.get("/v2/test/mixed/manifests/1", headers={"Accept": DOCKER_MANIFEST})
    assert resp.status_code == 404


def test_auth_registry_wants_basic_credentials(auth_registry: Registry) -> None:
    with auth_registry.client(auth=None) as anonymous:
        resp = anonymous.get("/v2/")
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    with auth_registry.client(auth=("tester", "wrong")) as wrong:
        assert wrong.get("/v2/").status_code == 401
    with auth_registry.client() as right:
        assert right.get("/v2/").status_code == 200


def test_push_to_auth_registry_needs_the_password(auth_registry: Registry) -> None:
    image = build_image([Layer([File("hello", b"hi\n")])])
    with pytest.raises(RegistryError, match="401"):
        push(auth_registry, "test/private", "1", image, auth=None)
    pushed = push(auth_registry, "test/private", "1", image)
    assert pushed.ref == f"{auth_registry.host}/test/private:1"
    with auth_registry.client() as client:
        assert get_manifest(client, "test/private", "1").content == image.manifest


def test_corrupt_blob_is_served_with_a_wrong_digest(
    registry: Registry, pushed_images: PushedImages
) -> None:
    scenario = pushed_images.corrupt
    with registry.client() as client:
        manifest = get_manifest(client, "test/corrupt", "1").json()
        listed = manifest["layers"][-1]
        assert listed["digest"] == scenario.bad_layer_digest
        served = get_blob(client, "test/corrupt", listed["digest"])
    assert len(served) == listed["size"]  # same size: only the digest gives it away
    assert sha256_digest(served) == scenario.served_digest != scenario.bad_layer_digest
    assert b"TAMPERED" in TarView.of(served).contents["etc/corrupt-marker"]


def test_evil_images_carry_their_crafted_member(
    registry: Registry, pushed_images: PushedImages
) -> None:
    evil = pushed_images.evil
    assert {"abs-path", "dotdot", "symlink-dir", "hardlink-outside", "device-char"} <= set(
        evil.cases
    )
    with registry.client() as client:
        for case in evil.cases.values():
            repo = f"test/evil-{case.name}"
            manifest = get_manifest(client, repo, "1").json()
            crafted = TarView.of(fetch_layer_tars(client, repo, manifest)[-1])
            name = case.member.lstrip("/") if case.expect == "skipped" else case.member
            assert name in crafted.members, (case.name, list(crafted.members))
    members = TarView.of(evil.cases["symlink-dir"].image.layers[-1].tar).members
    assert list(members) == ["a", "a/pwned"]  # crafted order kept
    assert members["a"].linkname.endswith(str(evil.target_dir).lstrip("/"))
    assert (
        TarView.of(evil.cases["device-char"].image.layers[-1].tar).members["dev/evil-mem"].ischr()
    )
    assert evil.cases["abs-path"].member.startswith(str(evil.target_dir))


def test_evil_target_check_notices_an_escape(pushed_images: PushedImages) -> None:
    evil = pushed_images.evil
    evil.assert_untouched()
    escaped = evil.target_dir / "pwned"
    escaped.write_bytes(b"x")
    try:
        with pytest.raises(AssertionError, match="escaped"):
            evil.assert_untouched()
    finally:
        escaped.unlink()
    link = evil.target_dir / "link"
    link.hardlink_to(evil.victim)
    try:
        with pytest.raises(AssertionError):
            evil.assert_untouched()
    finally:
        link.unlink()


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_rootfs_tarball_is_a_plain_rootfs(tmp_path: Path, compression: Compression) -> None:
    path = rootfs_tarball(tmp_path / "rootfs.tar", compression=compression)
    view = TarView.of(decompress(path.read_bytes(), compression))
    assert view.contents["bin/busybox"] == Path("/bin/busybox").read_bytes()
    assert view.contents["etc/passwd"] == PASSWD
    assert "bin/wget" in view.members


def test_big_image_is_deterministic_and_incompressible(registry: Registry) -> None:
    first, again = big_image(total_mb=2, layers=2), big_image(total_mb=2, layers=2)
    assert first.digest == again.digest
    assert big_image(total_mb=2, layers=2, seed=1).digest != first.digest
    data_layers = first.layers[1:]
    assert len(data_layers) == 2
    assert all(layer.size >= 2**20 for layer in data_layers)  # gzip could not shrink it
    pushed = push(registry, "test/big", "small", first)
    with registry.client() as client:
        assert get_manifest(client, "test/big", "small").content == first.manifest
    assert pushed.digest_ref == f"{registry.host}/test/big@{first.digest}"


def test_layers_are_deterministic_and_link_targets_come_first() -> None:
    entries = [Hardlink("a/[", "a/z"), File("a/z", b"z", 0o755), Dir("a")]
    layer = Layer(entries)
    assert Layer(list(reversed(entries))).digest == layer.digest
    with tarfile.open(fileobj=io.BytesIO(layer.tar)) as tar:
        assert [m.name for m in tar.getmembers()] == ["a", "a/z", "a/["]
        assert {m.mtime for m in tar.getmembers()} == {1_700_000_000}


def test_pushing_again_skips_blobs_the_registry_has(registry: Registry) -> None:
    image: Image = build_image([busybox_rootfs_layer()])
    first = push(registry, "test/twice", "a", image)
    with registry.client() as client:
        assert not push_blob(client, "test/twice", image.layers[0].digest, image.layers[0].blob)
        assert push_blob(client, "test/twice", sha256_digest(b"new"), b"new")
    second = push(registry, "test/twice", None, image)
    assert first.digest == second.digest
    assert second.ref == second.digest_ref

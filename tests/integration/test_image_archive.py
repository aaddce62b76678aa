"""save and load: round trips, interchange with skopeo and podman, hostile archives."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from bench.common import PodmanEnv
from tests.support.daemon import BIN, Daemon
from tests.support.images import ImageScenario, PushedImages
from tests.support.oci import Dir, File, build_tar

pytestmark = pytest.mark.integration


def inspect(daemon: Daemon, ref: str) -> dict:
    return json.loads(daemon.ok("image", "inspect", ref).stdout)[0]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def committed(daemon: Daemon) -> dict[str, str]:
    """A base image and two commits on it: name -> image id."""
    daemon.import_busybox("arbase:1")
    daemon.ok("run", "--name", "ar1", "arbase:1", "sh", "-c", "echo one > /one && rm /etc/group")
    daemon.ok("commit", "ar1", "arfirst:1")
    daemon.ok("run", "--name", "ar2", "arfirst:1", "sh", "-c", "rm -rf /home; echo two > /two")
    daemon.ok("commit", "ar2", "arsecond:1")
    daemon.ok("tag", "arsecond:1", "arsecond:alias")
    daemon.ok("rm", "ar1", "ar2")
    return {r: inspect(daemon, r)["Id"] for r in ("arbase:1", "arfirst:1", "arsecond:1")}


def check_second(daemon: Daemon, ref: str) -> None:
    script = "cat /one /two; test ! -e /etc/group && test ! -e /home && echo gone"
    assert daemon.ok("run", "--rm", ref, "sh", "-c", script).stdout == "one\ntwo\ngone\n"


def test_save_writes_docker_and_oci_layouts(daemon: Daemon, committed: dict[str, str]) -> None:
    archive = daemon.root / "two.tar"
    daemon.ok("save", "-o", str(archive), "arfirst:1", "arsecond")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        layout = json.load(tar.extractfile("oci-layout"))  # type: ignore[arg-type]
        repositories = json.load(tar.extractfile("repositories"))  # type: ignore[arg-type]
        blobs = {
            n: tar.extractfile(n).read()  # type: ignore[union-attr]
            for n in names
            if n.startswith("blobs/sha256/") and tar.getmember(n).isfile()
        }
    assert layout == {"imageLayoutVersion": "1.0.0"}
    for name, data in blobs.items():
        assert sha256(data) == "sha256:" + name.rsplit("/", 1)[1]  # every blob is what it says
    by_tags = {tuple(m["RepoTags"]): m for m in manifest}
    assert set(by_tags) == {("arfirst:1",), ("arsecond:1", "arsecond:alias")}
    second = by_tags[("arsecond:1", "arsecond:alias")]
    assert second["Config"] == "blobs/sha256/" + committed["arsecond:1"].removeprefix("sha256:")
    assert [p.rsplit("/", 1)[1] for p in second["Layers"]] == [
        d.removeprefix("sha256:") for d in inspect(daemon, "arsecond:1")["RootFS"]["Layers"]
    ]
    names_in_index = sorted(
        m["annotations"]["io.containerd.image.name"] for m in index["manifests"]
    )
    assert names_in_index == [
        "docker.io/library/arfirst:1",
        "docker.io/library/arsecond:1",
        "docker.io/library/arsecond:alias",
    ]
    assert set(repositories) == {"arfirst", "arsecond"}
    # Shared layers are written once.
    assert len([n for n in names if n.startswith("blobs/sha256/")]) == len(blobs)


def test_save_and_load_round_trip_keeps_ids(daemon: Daemon, committed: dict[str, str]) -> None:
    archive = daemon.root / "round.tar"
    daemon.ok("save", "-o", str(archive), "arsecond:1")
    daemon.ok("tag", "arsecond:1", "arkeep:1")  # keeps the layers while the names go
    daemon.ok("rmi", "arsecond:1")
    loaded = daemon.ok("load", "-i", str(archive)).out_lines
    assert loaded == ["Loaded image: arsecond:1"]
    assert inspect(daemon, "arsecond:1")["Id"] == committed["arsecond:1"]
    check_second(daemon, "arsecond:1")
    # From stdin, compressed every way docker load accepts; the same image again.
    raw = archive.read_bytes()
    for packed in (
        gzip.compress(raw, compresslevel=1),
        bz2.compress(raw, compresslevel=1),
        lzma.compress(raw, preset=0),
        zstandard.ZstdCompressor(level=1).compress(raw),
    ):
        result = daemon.ctl("load", "-q", input=packed)
        assert result.returncode == 0, result.stderr
        assert result.out_lines == ["Loaded image: arsecond:1"]
    daemon.ok("rmi", "arkeep:1")


def test_save_to_stdout_and_untagged_load(daemon: Daemon, committed: dict[str, str]) -> None:
    proc = subprocess.run(
        [str(BIN / "runtimectl"), "-H", f"unix://{daemon.socket}", "save", committed["arfirst:1"]],
        capture_output=True,
        env=daemon.env,
        check=True,
    )
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] is None
    result = daemon.ctl("load", input=proc.stdout)
    assert result.out_lines == [f"Loaded image ID: {committed['arfirst:1']}"]
    missing = daemon.ctl("save", "-o", str(daemon.root / "none.tar"), "no-such-image:1")
    assert missing.returncode == 1 and "No such image: no-such-image:1" in missing.stderr
    assert not (daemon.root / "none.tar").exists()


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"skopeo {' '.join(args)}:\n{proc.stderr}"
    return proc


def test_skopeo_reads_what_we_save(
    daemon: Daemon, committed: dict[str, str], tmp_path: Path
) -> None:
    archive = tmp_path / "one.tar"
    daemon.ok("save", "-o", str(archive), "arsecond:1")
    info = json.loads(skopeo("inspect", f"docker-archive:{archive}").stdout)
    assert info["Layers"] == inspect(daemon, "arsecond:1")["RootFS"]["Layers"]
    config = json.loads(skopeo("inspect", "--config", "--raw", f"docker-archive:{archive}").stdout)
    assert config["rootfs"]["diff_ids"] == info["Layers"]
    skopeo("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'oci'}:second")
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    blob = tmp_path / "oci" / "blobs" / "sha256"
    manifest = json.loads((blob / manifest_digest.removeprefix("sha256:")).read_text())
    # skopeo rewrites the config as an OCI one on the way; the layers stay ours.
    copied = json.loads((blob / manifest["config"]["digest"].removeprefix("sha256:")).read_text())
    assert copied["rootfs"]["diff_ids"] == info["Layers"]
    for layer in manifest["layers"]:
        data = (blob / layer["digest"].removeprefix("sha256:")).read_bytes()
        assert sha256(data) == layer["digest"]
    # Several images in one archive: skopeo picks them by name.
    both = tmp_path / "both.tar"
    daemon.ok("save", "-o", str(both), "arfirst:1", "arsecond:1")
    first = json.loads(skopeo("inspect", f"docker-archive:{both}:arfirst:1").stdout)
    assert first["Layers"] == inspect(daemon, "arfirst:1")["RootFS"]["Layers"]


@pytest.fixture(scope="module")
def podman() -> Iterator[PodmanEnv]:
    env = PodmanEnv()
    try:
        env.start()
        yield env
    finally:
        env.cleanup()


def test_podman_loads_what_we_save(
    daemon: Daemon, committed: dict[str, str], podman: PodmanEnv, tmp_path: Path
) -> None:
    archive = tmp_path / "for-podman.tar"
    daemon.ok("save", "-o", str(archive), "arfirst:1", "arsecond:1")
    out = podman.podman("load", "-i", str(archive)).stdout
    assert "arsecond:1" in out and "arfirst:1" in out
    for ref in ("arfirst:1", "arsecond:1"):
        got = podman.podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
        assert "sha256:" + got.removeprefix("sha256:") == committed[ref]
    files = podman.podman(
        "run", "--rm", "--network", "none", "arsecond:1", "sh", "-c", "cat /one /two"
    ).stdout
    assert files == "one\ntwo\n"


def _from_registry(
    daemon: Daemon, scenario: ImageScenario, transport: str, tmp_path: Path, name: str
) -> Path:
    target = tmp_path / "from-skopeo.tar"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{scenario.ref}",
        f"{transport}:{target}:{name}",
    )
    return target


def _config_digest_in(archive: Path) -> str:
    """The image id an archive's own metadata gives (skopeo rewrites configs it converts)."""
    with tarfile.open(archive) as tar:

        def read(name: str) -> bytes:
            member = tar.extractfile(name)
            assert member is not None
            return member.read()

        if "manifest.json" in tar.getnames():
            return sha256(read(json.loads(read("manifest.json"))[0]["Config"]))
        digest = json.loads(read("index.json"))["manifests"][0]["digest"]
        manifest = json.loads(read("blobs/sha256/" + digest.removeprefix("sha256:")))
        return manifest["config"]["digest"]


# zstd layers have no docker-archive form: skopeo refuses that pair itself.
@pytest.mark.parametrize(
    ("which", "transport"),
    [("busybox", "docker-archive"), ("busybox", "oci-archive"), ("mixed", "oci-archive")],
)
def test_we_load_what_skopeo_writes(
    daemon: Daemon, pushed_images: PushedImages, tmp_path: Path, transport: str, which: str
) -> None:
    scenario: ImageScenario = getattr(pushed_images, which)
    name = f"fromskopeo/{which}-{transport}:1"
    archive = _from_registry(daemon, scenario, transport, tmp_path, name)
    out = daemon.ok("load", "-i", str(archive)).out_lines
    assert out == [f"Loaded image: {name}"]
    expected = _config_digest_in(archive)
    if transport == "docker-archive":
        assert expected == scenario.image.config_digest
    assert inspect(daemon, name)["Id"] == expected
    for path, content in scenario.files.items():
        assert daemon.ok("run", "--rm", name, "cat", path).stdout.encode() == content
    absent = " && ".join(f"test ! -e {p}" for p in scenario.absent)
    daemon.ok("run", "--rm", name, "sh", "-c", absent)
    daemon.ok("rmi", name)


# --- hostile archives -----------------------------------------------------------------------


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _device(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info, None


LAYER = build_tar([Dir("x"), File("x/hello", b"hello\n")])


def _config(diff_ids: list[str]) -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/x/hello"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()


def _docker_archive(
    layer: bytes = LAYER,
    diff_id: str | None = None,
    config_name: str | None = None,
    tag: str = "hostile:1",
    extra: list[tuple[tarfile.TarInfo, bytes | None]] | None = None,
) -> bytes:
    config = _config([diff_id or sha256(layer)])
    config_path = config_name or f"blobs/sha256/{sha256(config)[7:]}"
    layer_path = f"blobs/sha256/{sha256(layer)[7:]}"
    manifest = [{"Config": config_path, "RepoTags": [tag], "Layers": [layer_path]}]
    return _tar(
        [
            _file(config_path, config),
            _file(layer_path, layer),
            _file("manifest.json", json.dumps(manifest).encode()),
            *(extra or []),
        ]
    )


def _oci_archive(manifest_bytes: bytes, manifest_digest: str) -> bytes:
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest_bytes),
            }
        ],
    }
    return _tar(
        [
            _file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            _file("index.json", json.dumps(index).encode()),
            _file(f"blobs/sha256/{manifest_digest[7:]}", manifest_bytes),
        ]
    )


def _escaping_layer() -> bytes:
    return _tar([_file("../../outside", b"boom")])


def _two_images_second_bad() -> bytes:
    good_config = _config([sha256(LAYER)])
    bad_layer = _escaping_layer()
    bad_config = _config([sha256(bad_layer)])
    manifest = [
        {
            "Config": f"{sha256(good_config)[7:]}.json",
            "RepoTags": ["hostile-good:1"],
            "Layers": ["good/layer.tar"],
        },
        {
            "Config": f"{sha256(bad_config)[7:]}.json",
            "RepoTags": ["hostile-bad:1"],
            "Layers": ["bad/layer.tar"],
        },
    ]
    return _tar(
        [
            _file(f"{sha256(good_config)[7:]}.json", good_config),
            _file(f"{sha256(bad_config)[7:]}.json", bad_config),
            _file("good/layer.tar", LAYER),
            _file("bad/layer.tar", bad_layer),
            _file("manifest.json", json.dumps(manifest).encode()),
        ]
    )


HOSTILE = {
    "escaping member name": (
        _tar([_file("../manifest.json", b"[]")]),
        "climbs out of the archive",
    ),
    "absolute member name": (_tar([_file("/manifest.json", b"[]")]), "absolute path"),
    "manifest symlink out": (
        _tar([_link("manifest.json", "/etc/passwd")]),
        "symlink out of the archive",
    ),
    "manifest symlink climbing": (
        _tar([_link("manifest.json", "../../etc/passwd")]),
        "links out of the archive",
    ),
    "symlink loop": (_tar([_link("manifest.json", "a"), _link("a", "manifest.json")]), "links"),
    "device member": (_tar([_device("manifest.json")]), "device"),
    "layer not matching its diff id": (
        _docker_archive(diff_id=sha256(b"something else")),
        "unpacked to diff_id",
    ),
    "config not matching its name": (
        _docker_archive(config_name="blobs/sha256/" + "0" * 64),
        "does not match its digest",
    ),
    "layer escaping the root": (_docker_archive(layer=_escaping_layer()), "unsafe"),
    "oversized manifest": (
        _tar([_file("manifest.json", b" " * (17 << 20))]),
        "too large for image metadata",
    ),
    "oci manifest not matching its digest": (
        _oci_archive(b'{"schemaVersion":2}', "sha256:" + "1" * 64),
        "does not match its digest",
    ),
    "truncated archive": (_docker_archive()[:2048], "beyond the end of the archive"),
    "not an image archive": (_tar([_file("hello.txt", b"hi")]), "neither a docker-archive"),
    "not a tar at all": (b"this is not a tar file, not even close" * 20, "not a valid tar"),
    "one good image, one bad": (_two_images_second_bad(), "unsafe"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_and_leave_nothing(daemon: Daemon, case: str) -> None:
    data, expected = HOSTILE[case]
    before_images = daemon.ok("images", "-a", "-q", "--no-trunc").stdout
    layers = daemon.data_dir / "layers"
    before_layers = sorted(p.name for p in layers.iterdir()) if layers.exists() else []
    result = daemon.ctl("load", input=data)
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("Error response from daemon: load: "), result.stderr
    assert expected in result.stderr
    assert daemon.ok("images", "-a", "-q", "--no-trunc").stdout == before_images
    after_layers = sorted(p.name for p in layers.iterdir()) if layers.exists() else []
    assert after_layers == before_layers
    ingest = daemon.data_dir / "content" / "ingest"
    assert not ingest.exists() or not any(ingest.iterdir())


def test_hostile_archive_sanity_a_clean_one_loads(daemon: Daemon) -> None:
    """The hostile cases differ from this one archive only in what makes them hostile."""
    data = _docker_archive(tag="hostile-clean:1")
    result = daemon.ctl("load", input=data)
    assert result.out_lines == ["Loaded image: hostile-clean:1"], result.stderr
    doc = inspect(daemon, "hostile-clean:1")
    assert doc["Id"] == sha256(_config([sha256(LAYER)]))
    assert doc["Config"]["Cmd"] == ["/x/hello"]
    daemon.ok("rmi", "hostile-clean:1")


def test_load_errors_for_files(daemon: Daemon) -> None:
    missing = daemon.ctl("load", "-i", str(daemon.root / "nope.tar"))
    assert missing.returncode == 1
    assert "no such file or directory" in missing.stderr
    assert shutil.which("skopeo")  # the interchange tests above need it

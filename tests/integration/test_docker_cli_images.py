"""The docker CLI making and moving images through runtimed's Docker API: commit, diff,
export, history, save and load, push, the classic builder; and resources (update, pause)."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator

import pytest

from tests.support.daemon import Daemon
from tests.support.dockercli import DockerCli
from tests.support.images import ImageScenario, push_busybox
from tests.support.oci import File, Layer, build_image
from tests.support.registry import Registry, push

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def busybox(registry: Registry) -> ImageScenario:
    return push_busybox(registry)


@pytest.fixture(scope="module")
def docker(daemon: Daemon, busybox: ImageScenario) -> DockerCli:
    cli = DockerCli(daemon)
    cli.ok("pull", busybox.ref)
    return cli


@pytest.fixture
def clean(docker: DockerCli) -> Iterator[None]:
    yield
    ids = docker("ps", "-aq").stdout.split()
    if ids:
        docker("rm", "-f", *ids)


def test_commit_diff_export_history(
    docker: DockerCli, busybox: ImageScenario, daemon: Daemon, clean: None
) -> None:
    docker.ok(
        "run", "--name", "maker", busybox.ref, "sh", "-c", "echo made > /made.txt; rm /etc/motd"
    )
    diff = docker.ok("diff", "maker").stdout.splitlines()
    assert "A /made.txt" in diff and "D /etc/motd" in diff and "C /etc" in diff
    image_id = docker.ok("commit", "-m", "from a test", "maker", "made/by:commit").stdout.strip()
    assert image_id.startswith("sha256:")
    out = docker.ok("run", "--rm", "made/by:commit", "cat", "/made.txt").stdout
    assert out == "made\n"
    history = docker.ok("history", "--format", "{{.Comment}}|{{.CreatedBy}}", "made/by:commit")
    assert history.stdout.splitlines()[0].startswith("from a test|")
    exported = daemon.root / "export.tar"
    docker.ok("export", "-o", str(exported), "maker")
    with tarfile.open(exported) as tar:
        names = set(tar.getnames())
        member = tar.extractfile("made.txt")
        assert member is not None and member.read() == b"made\n"
    assert "etc/motd" not in names and "bin/busybox" in names
    docker.ok("rmi", "made/by:commit")


def test_push(docker: DockerCli, busybox: ImageScenario, registry: Registry) -> None:
    target = registry.ref("pushed/box", "7")
    docker.ok("tag", busybox.ref, target)
    out = docker.ok("push", target).stdout
    assert f"The push refers to repository [{registry.host}/pushed/box]" in out
    assert "7: digest: sha256:" in out and " size: " in out
    with registry.client() as client:
        resp = client.get(
            f"{registry.url}/v2/pushed/box/manifests/7",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
    assert resp.status_code == 200 and len(resp.json()["layers"]) == 3
    docker.ok("rmi", target)


def test_save_and_load(docker: DockerCli, registry: Registry, daemon: Daemon) -> None:
    # An image of its own: loading layers another image has re-registers them.
    image = push(registry, "test/saveme", "1", build_image([Layer([File("etc/saved", b"s\n")])]))
    docker.ok("pull", image.ref)
    docker.ok("tag", image.ref, "saved/box:1")
    image_id = docker.ok("inspect", "-f", "{{.Id}}", "saved/box:1").stdout
    archive = daemon.root / "saved.tar"
    docker.ok("save", "-o", str(archive), "saved/box:1")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["saved/box:1"]
    docker.ok("rmi", "saved/box:1", image.ref)
    assert docker("inspect", "saved/box:1").returncode == 1
    loaded = docker.ok("load", "-i", str(archive)).stdout
    assert loaded == "Loaded image: saved/box:1\n"
    assert docker.ok("inspect", "-f", "{{.Id}}", "saved/box:1").stdout == image_id
    docker.ok("rmi", "saved/box:1")


def test_classic_build(docker: DockerCli, busybox: ImageScenario, daemon: Daemon) -> None:
    context = daemon.root / "build-ctx"
    context.mkdir()
    (context / "greeting.txt").write_text("built here\n")
    (context / "Dockerfile").write_text(
        f"FROM {busybox.ref}\n"
        "COPY greeting.txt /greeting.txt\n"
        "ARG WHO=nobody\n"
        'RUN echo "for $WHO" >> /greeting.txt\n'
        'CMD ["cat", "/greeting.txt"]\n'
    )
    docker.env["DOCKER_BUILDKIT"] = "0"
    try:
        out = docker.ok(
            "build", "-t", "built/box:1", "--build-arg", "WHO=tests", str(context)
        ).stdout
    finally:
        docker.env.pop("DOCKER_BUILDKIT")
    assert "Step 1/5 : FROM" in out
    assert "Successfully built " in out and "Successfully tagged built/box:1" in out
    assert docker.ok("run", "--rm", "built/box:1").stdout == "built here\nfor tests\n"
    broken = context / "Dockerfile"
    broken.write_text(f"FROM {busybox.ref}\nRUN exit 9\n")
    docker.env["DOCKER_BUILDKIT"] = "0"
    try:
        failed = docker("build", str(context))
    finally:
        docker.env.pop("DOCKER_BUILDKIT")
    assert failed.returncode == 1 and "9" in failed.stderr
    docker.ok("rmi", "built/box:1")


def test_update_and_pause(docker: DockerCli, busybox: ImageScenario, clean: None) -> None:
    docker.ok("run", "-d", "--name", "limited", "--memory", "64m", busybox.ref, "sleep", "300")
    fmt = "{{.HostConfig.Memory}}"
    assert docker.ok("inspect", "-f", fmt, "limited").stdout == f"{64 << 20}\n"
    assert docker.ok("update", "--memory", "96m", "limited").stdout == "limited\n"
    assert docker.ok("inspect", "-f", fmt, "limited").stdout == f"{96 << 20}\n"
    assert docker.ok("pause", "limited").stdout == "limited\n"
    assert docker.ok("inspect", "-f", "{{.State.Status}}", "limited").stdout == "paused\n"
    assert docker.ok("unpause", "limited").stdout == "limited\n"
    assert docker.ok("inspect", "-f", "{{.State.Status}}", "limited").stdout == "running\n"


def test_load_refuses_garbage(docker: DockerCli) -> None:
    garbage = io.BytesIO(b"this is no archive")
    result = docker("load", input=garbage.getvalue())
    assert result.returncode == 1 and "Error response from daemon" in result.stderr

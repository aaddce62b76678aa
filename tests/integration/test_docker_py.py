"""docker-py (the `docker` package) against runtimed's Docker API: the high-level client and
the low-level APIClient's streaming calls."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import docker
import pytest
from docker.utils.socket import frames_iter

from tests.support.daemon import Daemon
from tests.support.dockercli import docker_socket
from tests.support.images import ImageScenario, push_busybox
from tests.support.registry import Registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def busybox(registry: Registry) -> ImageScenario:
    return push_busybox(registry)


@pytest.fixture(scope="module")
def client(daemon: Daemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=f"unix://{docker_socket(daemon)}", timeout=120)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def image(client: docker.DockerClient, busybox: ImageScenario) -> str:
    pulled = client.images.pull(busybox.ref)
    assert busybox.ref in pulled.tags
    return busybox.ref


@pytest.fixture
def clean(client: docker.DockerClient) -> Iterator[None]:
    yield
    for container in client.containers.list(all=True):
        container.remove(force=True)


def test_ping_and_version(client: docker.DockerClient) -> None:
    assert client.ping() is True
    version = client.version()
    assert version["ApiVersion"] == "1.50" and version["Os"] == "linux"
    assert client.info()["OSType"] == "linux"


def test_run_wait_logs(client: docker.DockerClient, image: str, clean: None) -> None:
    assert client.containers.run(image, ["echo", "hi"], remove=True) == b"hi\n"
    with pytest.raises(docker.errors.ContainerError) as failed:
        client.containers.run(image, ["sh", "-c", "echo bad >&2; exit 3"], remove=True)
    assert failed.value.exit_status == 3
    container = client.containers.run(
        image, ["sh", "-c", "echo out; echo err >&2; exit 2"], detach=True, labels={"t": "1"}
    )
    assert container.wait(timeout=60) == {"StatusCode": 2, "Error": None}
    assert container.logs(stdout=True, stderr=False) == b"out\n"
    assert container.logs(stdout=False, stderr=True) == b"err\n"
    container.reload()
    assert container.status == "exited" and container.labels == {"t": "1"}
    assert [c.id for c in client.containers.list(all=True, filters={"label": "t=1"})] == [
        container.id
    ]
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("no-such-container")


def test_logs_stream_follow(client: docker.DockerClient, image: str, clean: None) -> None:
    container = client.containers.run(
        image, ["sh", "-c", "echo one; sleep 1; echo two"], detach=True
    )
    lines = list(container.logs(stream=True, follow=True))
    assert b"".join(lines) == b"one\ntwo\n"


def test_attach_socket(client: docker.DockerClient, image: str, clean: None) -> None:
    container = client.containers.create(image, ["cat"], stdin_open=True)
    sock = container.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
    raw: socket.socket = sock._sock  # noqa: SLF001 - docker-py hands out the socket this way
    container.start()
    raw.sendall(b"through the socket\n")
    raw.shutdown(socket.SHUT_WR)
    frames = b"".join(data for _stream, data in frames_iter(raw, tty=False))
    assert frames == b"through the socket\n"
    sock.close()
    assert container.wait(timeout=60)["StatusCode"] == 0


def test_exec_run(client: docker.DockerClient, image: str, clean: None) -> None:
    container = client.containers.run(image, ["sleep", "300"], detach=True)
    cmd = ["sh", "-c", "echo out; echo err >&2; exit 3"]
    result = container.exec_run(cmd)
    assert result.exit_code == 3
    assert sorted(result.output.splitlines()) == [b"err", b"out"]
    demuxed = container.exec_run(cmd, demux=True)
    assert demuxed.output == (b"out\n", b"err\n")
    streamed = container.exec_run(["sh", "-c", "echo a; sleep 0.5; echo b"], stream=True)
    assert streamed.exit_code is None
    assert b"".join(streamed.output) == b"a\nb\n"
    pairs = container.exec_run(cmd, stream=True, demux=True)
    outs = list(pairs.output)
    assert b"".join(o for o, _ in outs if o) == b"out\n"
    assert b"".join(e for _, e in outs if e) == b"err\n"
    tty = container.exec_run(["sh", "-c", "echo term"], tty=True)
    assert (tty.exit_code, tty.output) == (0, b"term\r\n")
    assert container.exec_run(["nosuch"]).exit_code == 127


def test_images_pull_tag_remove(client: docker.DockerClient, image: str) -> None:
    img = client.images.get(image)
    assert img.tag("mine/box", "v1") is True
    assert "mine/box:v1" in client.images.get("mine/box:v1").tags
    assert img.id in [i.id for i in client.images.list()]
    client.images.remove("mine/box:v1")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("mine/box:v1")
    assert image in client.images.get(image).tags


def test_networks_and_volumes(client: docker.DockerClient, image: str, clean: None) -> None:
    net = client.networks.create("pynet", labels={"from": "py"})
    try:
        assert client.networks.get(net.id).name == "pynet"
        container = client.containers.run(image, ["sleep", "300"], detach=True)
        net.connect(container, aliases=["pal"])
        net.reload()
        assert [c.id for c in net.containers] == [container.id]
        net.disconnect(container)
        net.reload()
        assert net.containers == []
        container.remove(force=True)
    finally:
        net.remove()
    assert "pynet" not in [n.name for n in client.networks.list()]
    volume = client.volumes.create("pyvol", labels={"a": "b"})
    assert client.volumes.get("pyvol").attrs["Labels"] == {"a": "b"}
    out = client.containers.run(
        image,
        ["sh", "-c", "echo v > /v/f; cat /v/f"],
        volumes={"pyvol": {"bind": "/v"}},
        remove=True,
    )
    assert out == b"v\n"
    volume.remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("pyvol")


def test_low_level_streaming(daemon: Daemon, image: str, busybox: ImageScenario) -> None:
    api = docker.APIClient(base_url=f"unix://{docker_socket(daemon)}", version="auto")
    try:
        assert api.api_version == "1.50"
        progress = list(api.pull(busybox.ref, stream=True, decode=True))
        assert progress[0] == {"status": "Pulling from library/busybox", "id": "1.36"}
        assert any(p.get("status", "").startswith("Digest: sha256:") for p in progress)
        cid = api.create_container(image, ["sh", "-c", "echo x; echo y >&2; sleep 1; echo z"])["Id"]
        attached = api.attach(cid, stream=True, demux=True)  # before the start: nothing lost
        api.start(cid)
        chunks = list(attached)
        out = b"".join(o for o, _ in chunks if o)
        err = b"".join(e for _, e in chunks if e)
        assert (out, err) == (b"x\nz\n", b"y\n")
        assert api.wait(cid)["StatusCode"] == 0
        logs = b"".join(api.logs(cid, stream=True, follow=True, stderr=False))
        assert logs == b"x\nz\n"
        replay = api.attach(cid, stream=False, logs=True, demux=True)
        assert replay == (b"x\nz\n", b"y\n")
        api.remove_container(cid)
        cid = api.create_container(image, ["sleep", "300"])["Id"]
        api.start(cid)
        exec_id = api.exec_create(cid, ["sh", "-c", "exit 6"])["Id"]
        assert api.exec_start(exec_id) == b""
        inspected = api.exec_inspect(exec_id)
        assert (inspected["ExitCode"], inspected["Running"]) == (6, False)
        api.remove_container(cid, force=True)
    finally:
        api.close()


def test_events_while_a_container_runs(
    client: docker.DockerClient, image: str, clean: None
) -> None:
    since = int(time.time()) - 1
    container = client.containers.run(image, ["sh", "-c", "exit 5"], detach=True, name="evpy")
    assert container.wait(timeout=60)["StatusCode"] == 5
    events = client.events(
        since=since, until=int(time.time()) + 1, filters={"container": "evpy"}, decode=True
    )
    actions = [(e["Type"], e["Action"]) for e in events]
    assert actions[:2] == [("container", "create"), ("container", "start")]
    die = [
        e
        for e in client.events(
            since=since,
            until=int(time.time()) + 1,
            decode=True,
            filters={"event": "die", "container": "evpy"},
        )
    ]
    assert die[0]["Actor"]["Attributes"]["exitCode"] == "5"
    assert die[0]["Actor"]["Attributes"]["name"] == "evpy"

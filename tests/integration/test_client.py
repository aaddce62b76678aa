"""runtimed.client against a real daemon: the blocking and asyncio flavours, docker-py's
calls and shapes, errors with their gRPC codes."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from runtimed.client import (
    AlreadyExists,
    AsyncClient,
    Client,
    Conflict,
    ContainerError,
    ImageNotFound,
    NotFound,
    PullProgress,
    TLSParameterError,
    Unavailable,
)
from tests.support.daemon import Daemon
from tests.support.images import push_busybox
from tests.support.registry import Registry

pytestmark = pytest.mark.integration

IMAGE = "clientbox:1"


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with Daemon() as d:
        d.import_busybox(IMAGE)
        yield d


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with Client(f"unix://{daemon.socket}") as c:
        yield c
    # Nothing a test made outlives it.
    with Client(f"unix://{daemon.socket}") as c:
        for container in c.containers.list(all=True):
            container.remove(force=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_returns_output_and_removes(client: Client) -> None:
    assert client.ping() is True
    out = client.containers.run(IMAGE, "sh -c 'echo hello; echo oops >&2'", remove=True)
    assert out == b"hello\n"  # stdout only, as docker-py's default
    assert client.containers.list(all=True) == []
    both = client.containers.run(IMAGE, ["sh", "-c", "echo a; echo b >&2"], stderr=True)
    assert isinstance(both, bytes) and sorted(both.splitlines()) == [b"a", b"b"]
    [kept] = client.containers.list(all=True)
    assert kept.status == "exited" and kept.image_ref == IMAGE


def test_run_with_a_failing_command_raises_container_error(client: Client) -> None:
    with pytest.raises(ContainerError) as err:
        client.containers.run(IMAGE, "sh -c 'echo broken >&2; exit 3'", remove=True)
    assert err.value.exit_status == 3
    assert err.value.stderr == b"broken\n"
    assert "returned non-zero exit status 3: broken" in str(err.value)
    assert client.containers.list(all=True) == []  # removed all the same


def test_detached_container_lifecycle(client: Client, tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("served by runtimed\n")
    www.chmod(0o755)
    port = free_port()
    web = client.containers.run(
        IMAGE,
        "httpd -f -p 80 -h /www",
        detach=True,
        name="client-web",
        ports={"80/tcp": ("127.0.0.1", port)},
        volumes={str(www): {"bind": "/www", "mode": "ro"}},
        environment={"GREETING": "hi there"},
        labels={"team": "client"},
    )
    assert (web.name, web.status, web.labels) == ("client-web", "running", {"team": "client"})
    assert web.ports["80/tcp"][0]["HostPort"] == str(port)
    assert client.containers.get("client-web") == web
    assert [c.name for c in client.containers.list(filters={"label": "team=client"})] == [
        "client-web"
    ]
    # Published port and bind mount: the page, through 127.0.0.1.
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
    assert body == b"served by runtimed\n"
    # exec_run: exit code and output, merged and demultiplexed.
    assert web.exec_run("sh -c 'echo $GREETING'") == (0, b"hi there\n")
    code, (out, err) = web.exec_run(["sh", "-c", "echo o; echo e >&2; exit 4"], demux=True)
    assert (code, out, err) == (4, b"o\n", b"e\n")
    code, chunks = web.exec_run("sh -c 'echo one; echo two'", stream=True)
    assert code is None and b"".join(chunks) == b"one\ntwo\n"
    with pytest.raises(AlreadyExists) as dup:
        client.containers.create(IMAGE, "true", name="client-web")
    assert dup.value.code == grpc.StatusCode.ALREADY_EXISTS and dup.value.status_code == 409
    with pytest.raises(Conflict):  # running: not without force
        web.remove()
    web.stop(timeout=1)
    assert web.wait()["StatusCode"] != 0
    web.reload()
    assert web.status == "exited"
    web.remove()
    with pytest.raises(NotFound) as missing:
        client.containers.get("client-web")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND


def test_logs_as_bytes_and_as_a_stream(client: Client) -> None:
    box = client.containers.run(
        IMAGE, "sh -c 'for i in 1 2 3; do echo line $i; sleep 0.2; done'", detach=True
    )
    chunks = box.logs(stream=True)
    assert not isinstance(chunks, bytes)
    assert b"".join(chunks) == b"line 1\nline 2\nline 3\n"  # followed until the exit
    assert box.wait() == {"StatusCode": 0, "Error": None}
    assert box.logs(tail=1) == b"line 3\n"
    stamped = box.logs(timestamps=True)
    assert isinstance(stamped, bytes)
    assert [line.split(b" ", 1)[1] for line in stamped.splitlines()] == [
        b"line 1",
        b"line 2",
        b"line 3",
    ]
    assert stamped.split(b" ", 1)[0].endswith(b"Z")


def test_images_networks_volumes(client: Client, registry: Registry) -> None:
    ref = push_busybox(registry).ref
    steps: list[PullProgress] = []
    image = client.images.pull(ref, progress=steps.append)
    assert ref in image.tags and image.id.startswith("sha256:")
    assert any(s.layer and s.status == "Pull complete" for s in steps), steps
    assert image.tag("client/retagged", "v1") is True
    assert "client/retagged:v1" in client.images.get("client/retagged:v1").tags
    assert any(i.id == image.id for i in client.images.list())
    assert client.images.remove("client/retagged:v1") == [{"Untagged": "client/retagged:v1"}]
    with pytest.raises(ImageNotFound):
        client.images.get("client/retagged:v1")
    with pytest.raises(ImageNotFound) as missing:
        client.images.remove("client/never:1")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND

    net = client.networks.create("client-net", labels={"k": "v"})
    vol = client.volumes.create("client-vol", labels={"k": "v"})
    try:
        assert client.networks.get("client-net").attrs["Labels"] == {"k": "v"}
        assert [n.name for n in client.networks.list(names=["client-net"])] == ["client-net"]
        assert client.volumes.get("client-vol").attrs["Labels"] == {"k": "v"}
        box = client.containers.run(
            IMAGE, "sleep 60", detach=True, network="client-net", volumes=["client-vol:/data"]
        )
        net.reload()
        assert [c.id for c in net.containers] == [box.id]
        # The named volume is shared: what one container writes, another reads.
        assert box.exec_run("sh -c 'echo kept > /data/f'").exit_code == 0
        out = client.containers.run(IMAGE, "cat /data/f", volumes={"client-vol": "/data"})
        assert out == b"kept\n"
        box.remove(force=True)
    finally:
        for container in client.containers.list(all=True):
            container.remove(force=True)
        net.remove()
        vol.remove()
    assert "client-net" not in [n.name for n in client.networks.list()]
    assert "client-vol" not in [v.name for v in client.volumes.list()]


def test_unknown_options_and_no_daemon(client: Client, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unexpected keyword arguments: colour"):
        client.containers.create(IMAGE, "true", colour="blue")
    with Client(f"unix://{tmp_path}/absent.sock") as nowhere, pytest.raises(Unavailable):
        nowhere.ping()
    with pytest.raises(TLSParameterError, match="only with mutual TLS"):
        Client("tcp://127.0.0.1:2376")


def test_async_client(daemon: Daemon) -> None:
    async def scenario() -> None:
        async with AsyncClient(f"unix://{daemon.socket}") as client:
            assert await client.ping() is True
            out = await client.containers.run(IMAGE, "echo async", remove=True)
            assert out == b"async\n"
            box = await client.containers.run(
                IMAGE, "sh -c 'echo a; sleep 0.3; echo b; sleep 30'", detach=True, name="aio"
            )
            assert box.status == "running"
            seen = b""
            async for chunk in box.log_stream():
                seen += chunk
                if seen == b"a\nb\n":
                    break
            assert (await box.exec_run("echo in")) == (0, b"in\n")
            await box.kill()
            assert (await box.wait())["StatusCode"] == 137
            await box.remove()
            with pytest.raises(NotFound):
                await client.containers.get("aio")
            with pytest.raises(ContainerError) as err:
                await client.containers.run(IMAGE, "sh -c 'exit 2'", remove=True)
            assert err.value.exit_status == 2

    asyncio.run(scenario())

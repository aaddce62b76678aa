"""The Docker API's parts without a daemon: HTTP/1.1 and hijacking on a real unix socket,
routing and versions, request translation, Docker's formats."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from pathlib import Path

import pytest

from runtimed.core.execs import ExecConfig, ExecRegistry
from runtimed.dockerapi.archive import go_file_mode, stat_header
from runtimed.dockerapi.createconfig import build_plan, parse_bind
from runtimed.dockerapi.errors import HttpError, error_response
from runtimed.dockerapi.execs import exec_failure_code
from runtimed.dockerapi.http import (
    HIJACKED,
    Connection,
    Reply,
    Request,
    Response,
    StreamResponse,
    json_response,
)
from runtimed.dockerapi.images import progress_message, registry_credential
from runtimed.dockerapi.router import Router
from runtimed.dockerapi.stdio import frame
from runtimed.errors import FailedPrecondition, InvalidArgument, NotFound
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.images.service import PullEvent

# -- an HTTP server on a unix socket, with handlers of the test's own ----------------------


async def _serve(path: Path, handle) -> asyncio.Server:  # noqa: ANN001
    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await Connection(reader, writer, handle, lambda: [("Api-Version", "1.50")]).serve()
        finally:
            writer.close()

    return await asyncio.start_unix_server(accept, path=str(path))


async def _exchange(path: Path, raw: bytes, *, half_close: bool = False) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(raw)
    await writer.drain()
    if half_close:
        writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def test_keep_alive_lengths_and_chunked_bodies(tmp_path: Path) -> None:
    async def handle(request: Request) -> Reply:
        if request.path == "/echo":
            body = await request.body()
            return json_response({"got": body.decode(), "q": request.arg("q")})
        if request.path == "/stream":

            async def chunks():  # noqa: ANN202
                yield b"one\n"
                yield b"two\n"

            return StreamResponse(chunks(), content_type="text/plain")
        return Response(status=404, body=b"{}")

    sock = tmp_path / "s"
    server = await _serve(sock, handle)
    async with server:
        data = await _exchange(
            sock,
            b"POST /echo?q=x%20y HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
            b"GET /stream HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
        )
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"Api-Version: 1.50" in first
    body, _, second = rest.partition(b"HTTP/1.1 ")
    assert json.loads(body) == {"got": "abc", "q": "x y"}
    assert b"Transfer-Encoding: chunked" in second
    assert second.endswith(b"4\r\none\n\r\n4\r\ntwo\n\r\n0\r\n\r\n")


async def test_hijack_survives_half_close(tmp_path: Path) -> None:
    """The docker CLI ends its input with a half-close and reads the output to the end."""

    async def handle(request: Request) -> Reply:
        conn = await request.hijack("application/vnd.docker.raw-stream")
        received = b""
        while data := await conn.read():
            received += data
        await asyncio.sleep(0.05)
        await conn.write(b"echo:" + received)
        return HIJACKED

    sock = tmp_path / "s"
    server = await _serve(sock, handle)
    async with server:
        data = await _exchange(
            sock,
            b"POST /attach HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
            b"Content-Length: 0\r\n\r\nearly-input",
            half_close=True,
        )
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
    assert b"Upgrade: tcp" in head
    assert body == b"echo:early-input"


async def test_hangup_cancels_a_waiting_handler(tmp_path: Path) -> None:
    cancelled = asyncio.Event()

    async def handle(request: Request) -> Reply:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return json_response({})

    sock = tmp_path / "s"
    server = await _serve(sock, handle)
    async with server:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b"POST /containers/x/wait HTTP/1.1\r\nHost: d\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        await asyncio.wait_for(cancelled.wait(), 5)


# -- routing -------------------------------------------------------------------------------


def _request(method: str, target: str) -> Request:
    import h11

    event = h11.Request(method=method, target=target, headers=[("Host", "d")])
    return Request(None, event)  # type: ignore[arg-type]


async def _ok(request: Request) -> Reply:
    return json_response({})


def test_router_versions_params_and_errors() -> None:
    router = Router()
    router.add("GET", "/images/{name*}/json", _ok)
    router.add("DELETE", "/images/{name*}", _ok)
    router.add("GET", "/containers/{id}/json", _ok)
    req = _request("GET", "/v1.41/images/127.0.0.1:5000/library/busybox:1.36/json")
    assert router.resolve(req) is _ok
    assert req.version == "1.41" and req.params == {"name": "127.0.0.1:5000/library/busybox:1.36"}
    req = _request("GET", "/containers/abc/json")
    router.resolve(req)
    assert req.version is None and req.params == {"id": "abc"}
    with pytest.raises(HttpError) as too_new:
        router.resolve(_request("GET", "/v1.51/containers/abc/json"))
    assert too_new.value.status == 400
    assert too_new.value.message == (
        "client version 1.51 is too new. Maximum supported API version is 1.50"
    )
    with pytest.raises(HttpError) as too_old:
        router.resolve(_request("GET", "/v1.12/containers/abc/json"))
    assert "Minimum supported API version is 1.24" in too_old.value.message
    with pytest.raises(HttpError) as missing:
        router.resolve(_request("GET", "/v1.50/nothing"))
    assert (missing.value.status, missing.value.message) == (404, "page not found")


def test_query_filters_and_flags() -> None:
    req = _request(
        "GET",
        '/containers/json?all=1&size=false&filters={"label":{"a=b":true},"status":["exited"]}',
    )
    assert req.flag("all") and not req.flag("size") and not req.flag("absent")
    assert req.filters() == {"label": ["a=b"], "status": ["exited"]}
    with pytest.raises(InvalidArgument):
        _request("GET", "/x?filters=nope").filters()


def test_errors_map_to_docker_statuses() -> None:
    cases = [
        (NotFound("No such container: x"), 404),
        (InvalidArgument("bad"), 400),
        (FailedPrecondition("running"), 409),
        (HttpError(501, "later"), 501),
    ]
    for err, status in cases:
        response = error_response(err)
        assert response.status == status
        assert json.loads(response.body) == {"message": err.message}


# -- translation of a create request -------------------------------------------------------


def test_create_translates_the_docker_cli_body() -> None:
    body = {
        "Image": "busybox",
        "Cmd": ["echo", "hi"],
        "Entrypoint": None,
        "Env": ["A=1"],
        "Tty": True,
        "OpenStdin": True,
        "StdinOnce": True,
        "Labels": {"k": "v"},
        "Volumes": {"/anon": {}},
        "StopTimeout": 3,
        "HostConfig": {
            "Binds": ["/srv:/srv:ro,rslave", "data:/data:nocopy"],
            "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
            "NetworkMode": "default",
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}},
            "CapAdd": ["NET_ADMIN"],
            "CapDrop": ["MKNOD"],
            "Privileged": False,
            "ReadonlyRootfs": True,
            "Tmpfs": {"/run": "size=1m,exec"},
            "Sysctls": {"net.ipv4.ip_forward": "1"},
            "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}],
            "Memory": 64 << 20,
            "NanoCpus": 500_000_000,
            "BlkioDeviceReadBps": [{"Path": "/dev/sda", "Rate": 1024}],
            "PidsLimit": None,
            "MemorySwappiness": None,
            "SecurityOpt": ["seccomp=unconfined", "label=disable"],
            "Init": None,
        },
        "NetworkingConfig": {"EndpointsConfig": {"other": {"Aliases": ["x"]}}},
    }
    plan = build_plan(body, name="/web")
    req = plan.request
    assert (req.name, req.image, req.cmd, req.entrypoint) == (
        "web",
        "busybox",
        ["echo", "hi"],
        None,
    )
    assert req.tty and req.stdin and req.stdin_once and req.read_only
    assert req.restart_policy.name == "on-failure" and req.restart_policy.max_retries == 2
    assert req.stop_timeout == 3 and req.log_opts == {"max-size": "1m"}
    assert [(b.source, b.destination, b.readonly, b.propagation) for b in req.binds] == [
        ("/srv", "/srv", True, "rslave")
    ]
    mounts = {m["target"]: m for m in req.extras["volumes"]["mounts"]}
    assert mounts["/data"]["source"] == "data" and mounts["/data"]["nocopy"]
    assert mounts["/anon"]["source"] == "" and mounts["/run"]["type"] == "tmpfs"
    assert mounts["/run"]["options"] == ["size=1m", "exec"]
    net = req.extras["network"]
    assert net["network"] == "" and net["ports"][0]["host_port"] == 8080
    assert net["ports"][0]["host_ip"] == "127.0.0.1"
    assert plan.more_networks == {"other": {"Aliases": ["x"]}}
    assert req.cap_add == ["NET_ADMIN"] and req.cap_drop == ["MKNOD"]
    assert req.sysctls == {"net.ipv4.ip_forward": "1"}
    res = plan.resources
    assert (res.memory, res.nano_cpus, res.pids_limit) == (64 << 20, 500_000_000, 0)
    assert [(d.path, d.value) for d in res.device_read_bps] == [("/dev/sda", 1024)]
    assert [(u.name, u.soft, u.hard) for u in res.ulimits] == [("nofile", 100, 200)]
    assert req.seccomp == "unconfined"


def test_create_entrypoint_overrides() -> None:
    assert build_plan({"Image": "b", "Entrypoint": [""]}).request.entrypoint == []
    assert build_plan({"Image": "b", "Entrypoint": "sh"}).request.entrypoint == ["sh"]
    assert build_plan({"Image": "b", "Cmd": []}).request.cmd is None


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ({"Devices": [{"PathOnHost": "/dev/null"}]}, "HostConfig.Devices is not supported"),
        ({"Init": True}, "HostConfig.Init is not supported"),
        ({"IpcMode": "host"}, "HostConfig.IpcMode=host is not supported"),
        ({"SecurityOpt": ["apparmor=custom"]}, "SecurityOpt 'apparmor=custom'"),
        ({"Binds": ["relative:/x"]}, None),
        ({"Binds": ["/a:b"]}, "mount path must be absolute"),
        ({"RestartPolicy": {"Name": "always"}, "AutoRemove": True}, "cannot specify both"),
    ],
)
def test_create_refuses_what_runtimed_cannot_do(host: dict, words: str | None) -> None:
    body = {"Image": "busybox", "HostConfig": host}
    if words is None:
        build_plan(body)  # a named volume called "relative": fine
        return
    with pytest.raises(InvalidArgument) as refused:
        build_plan(body)
    assert words in refused.value.message


def test_bind_specs() -> None:
    bind = parse_bind("/host:/ctr:ro")
    assert isinstance(bind, pb.Bind) and bind.readonly and bind.propagation == "rprivate"
    volume = parse_bind("vol:/ctr")
    assert isinstance(volume, pb.MountSpec) and volume.source == "vol"
    with pytest.raises(InvalidArgument, match="invalid mode: bogus"):
        parse_bind("/a:/b:bogus")
    with pytest.raises(InvalidArgument, match="destination can't be '/'"):
        parse_bind("/a:/")


# -- formats -------------------------------------------------------------------------------


def test_stream_framing() -> None:
    assert frame(1, b"hi") == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    assert frame(2, b"x" * 300)[:8] == b"\x02\x00\x00\x00\x00\x00\x01\x2c"


def test_path_stat_is_go_file_mode() -> None:
    assert go_file_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert go_file_mode(stat.S_IFREG | 0o4644) == (1 << 23) | 0o644
    assert go_file_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    header = stat_header(
        {"name": "f", "size": 3, "mode": stat.S_IFREG | 0o600, "mtime": 0, "linkTarget": ""}
    )
    assert json.loads(base64.urlsafe_b64decode(header)) == {
        "name": "f",
        "size": 3,
        "mode": 0o600,
        "mtime": "1970-01-01T00:00:00Z",
        "linkTarget": "",
    }


def test_pull_progress_lines() -> None:
    assert progress_message(PullEvent(status="1.36: Pulling from library/busybox")) == {
        "status": "Pulling from library/busybox",
        "id": "1.36",
    }
    assert progress_message(
        PullEvent(status="Downloading", layer_id="abc", current=5, total=10)
    ) == {"status": "Downloading", "progressDetail": {"current": 5, "total": 10}, "id": "abc"}
    assert progress_message(PullEvent(status="Pull complete", layer_id="abc")) == {
        "status": "Pull complete",
        "progressDetail": {},
        "id": "abc",
    }


def test_registry_auth_header() -> None:
    doc = base64.urlsafe_b64encode(json.dumps({"username": "u", "password": "p"}).encode())
    req = _request("POST", "/images/create")
    req.headers["x-registry-auth"] = doc.decode().rstrip("=")
    cred = registry_credential(req)
    assert cred is not None and (cred.username, cred.password) == ("u", "p")
    req.headers["x-registry-auth"] = base64.b64encode(b"{}").decode()
    assert registry_credential(req) is None


def test_exec_failures_as_docker_codes() -> None:
    missing = b"executable file `nosuch` not found in $PATH: No such file or directory"
    assert exec_failure_code(255, missing) == 127
    assert exec_failure_code(255, b"open executable: Permission denied") == 126
    assert exec_failure_code(255, b"the program said so") == 255
    assert exec_failure_code(3, missing) == 3


class _FakeContainers:
    def __init__(self, running: bool) -> None:
        self.running = running

    def get(self, ref: str):  # noqa: ANN201
        if ref != "c1":
            raise NotFound(f"No such container: {ref}")
        return type("C", (), {"id": "c1", "running": self.running})()

    def list(self) -> list:
        return [self.get("c1")]


def test_exec_instances() -> None:
    registry = ExecRegistry(_FakeContainers(running=True))  # type: ignore[arg-type]
    instance = registry.create("c1", ExecConfig(cmd=["true"]))
    assert registry.get(instance.id) is instance and registry.of_container("c1") == [instance]
    registry.exited(instance.id, b'{"exit_code": 4}')
    assert (instance.exit_code, instance.running) == (4, False)
    with pytest.raises(NotFound, match="No such exec instance: nope"):
        registry.get("nope")
    with pytest.raises(InvalidArgument, match="No exec command specified"):
        registry.create("c1", ExecConfig(cmd=[]))
    stopped = ExecRegistry(_FakeContainers(running=False))  # type: ignore[arg-type]
    with pytest.raises(FailedPrecondition, match="is not running"):
        stopped.create("c1", ExecConfig(cmd=["true"]))

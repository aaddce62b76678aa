"""The streaming server over real sockets, with a stand-in for the containers: tokens,
protocol negotiation, SPDY and WebSocket sessions, statuses and port forwarding.
(The real thing, with crun and crictl, is tests/integration/test_cri_streaming.py.)"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from runtimed.core.shim_client import EXIT, STDERR, STDOUT
from runtimed.errors import InvalidArgument, NotFound
from runtimed.oci.spec import NamespacePaths
from runtimed.streaming import spdy
from runtimed.streaming.address import parse_address
from runtimed.streaming.remotecommand import encode_status, exit_failure, sizes, success
from runtimed.streaming.requests import AttachRequest, ExecRequest, PortForwardRequest
from runtimed.streaming.server import StreamServer
from runtimed.streaming.tokens import RequestCache

# -- stand-ins --------------------------------------------------------------------------------


class FakeProcess:
    """A shim exec stream: `cat` echoes stdin until it ends; `exit N` ends with N;
    `print OUT ERR` writes both and ends."""

    def __init__(self, args: list[str]) -> None:
        self.frames: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.sizes: list[tuple[int, int]] = []
        self.closed = False
        if args[0] == "exit":
            self._exit(int(args[1]))
        elif args[0] == "print":
            self.frames.put_nowait((STDOUT, args[1].encode()))
            self.frames.put_nowait((STDERR, args[2].encode()))
            self._exit(0)

    def _exit(self, code: int) -> None:
        self.frames.put_nowait((EXIT, json.dumps({"exit_code": code}).encode()))

    async def read(self) -> tuple[int, bytes] | None:
        return await self.frames.get()

    async def write_stdin(self, data: bytes) -> None:
        self.frames.put_nowait((STDOUT, data))

    async def close_stdin(self) -> None:
        self._exit(0)

    async def resize(self, rows: int, cols: int) -> None:
        self.sizes.append((rows, cols))
        if (rows, cols) == (1, 1):
            self._exit(0)

    async def close(self) -> None:
        self.closed = True


@dataclass
class FakeContainers:
    started: list[FakeProcess] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)

    async def exec(self, ref: str, args: list[str], **_options: object) -> FakeProcess:
        if ref != "c1":
            raise NotFound(f"No such container: {ref}")
        proc = FakeProcess(args)
        self.started.append(proc)
        return proc

    async def kill_exec(self, ref: str, exec_id: str) -> None:
        self.killed.append(exec_id)


class FakeSandboxes:
    """Every pod is on the host's network: port forwarding reaches this test's servers."""

    node_network = None  # no rootless namespace to listen in as well

    def get(self, ref: str) -> str:
        if ref != "pod1":
            raise NotFound(f"pod sandbox {ref!r} not found")
        return ref

    def namespaces(self, _sandbox: str) -> NamespacePaths:
        return NamespacePaths(network=None, host_network=True)


@pytest.fixture
async def server() -> AsyncIterator[StreamServer]:
    srv = StreamServer(
        "127.0.0.1:0",
        containers=FakeContainers(),  # type: ignore[arg-type]
        sandboxes=FakeSandboxes(),  # type: ignore[arg-type]
    )
    await srv.start()
    yield srv
    await srv.aclose()


# -- a small SPDY client --------------------------------------------------------------------


class SpdyClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.compressor = spdy.HeaderCompressor()
        self.frames = spdy.FrameReader()
        self.pending: list[spdy.Frame] = []
        self.next_id = 1

    @classmethod
    async def connect(
        cls, url: str, protocols: list[str]
    ) -> tuple[SpdyClient | None, int, dict[str, str]]:
        """Upgrade; (client, status, response headers); no client unless 101."""
        host_port, path = url.removeprefix("http://").split("/", 1)
        host, port = host_port.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        offered = "".join(f"X-Stream-Protocol-Version: {p}\r\n" for p in protocols)
        writer.write(
            f"POST /{path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Length: 0\r\n"
            f"Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n{offered}\r\n".encode()
        )
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        status = int(head.split()[1])
        headers = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
        if status != 101:
            writer.close()
            return None, status, headers
        return cls(reader, writer), status, headers

    def open(self, headers: dict[str, str], fin: bool = False) -> int:
        stream_id, self.next_id = self.next_id, self.next_id + 2
        self.writer.write(spdy.encode_syn_stream(self.compressor, stream_id, headers, fin=fin))
        return stream_id

    def send(self, stream_id: int, data: bytes, fin: bool = False) -> None:
        self.writer.write(spdy.encode_data(stream_id, data, fin))

    async def frame(self) -> spdy.Frame | None:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), 10)
            if not data:
                return None
            self.pending += self.frames.feed(data)
        return self.pending.pop(0)

    async def collect(self, until_fin: set[int]) -> dict[int, bytes]:
        """Data per stream until every stream in `until_fin` has ended."""
        data: dict[int, bytes] = {}
        ended: set[int] = set()
        while not until_fin <= ended:
            frame = await self.frame()
            assert frame is not None, f"connection closed; have {data}"
            if isinstance(frame, spdy.Data):
                data[frame.stream_id] = data.get(frame.stream_id, b"") + frame.data
                if frame.fin:
                    ended.add(frame.stream_id)
            elif isinstance(frame, spdy.RstStream):
                ended.add(frame.stream_id)
        return data


# -- tokens, addresses, statuses ------------------------------------------------------------


def test_tokens_are_single_use_and_expire() -> None:
    now = [100.0]
    cache = RequestCache(ttl=60, max_in_flight=2, clock=lambda: now[0])
    first = cache.insert(ExecRequest("c1", ["true"]))
    second = cache.insert(ExecRequest("c1", ["false"]))
    assert first != second and len(first) >= 24
    with pytest.raises(Exception, match="waiting for their clients"):
        cache.insert(ExecRequest("c1", ["x"]))
    assert cache.consume(first) == ExecRequest("c1", ["true"])
    assert cache.consume(first) is None
    now[0] += 61
    assert cache.consume(second) is None
    assert len(cache) == 0


@pytest.mark.parametrize(
    "address, parsed",
    [("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:10250", ("::1", 10250)), ("127.1.2.3:5", None)],
)
def test_stream_address(address: str, parsed: tuple[str, int] | None) -> None:
    if parsed is None:  # any 127/8 address is loopback
        assert parse_address(address)[0] == "127.1.2.3"
    else:
        assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["0.0.0.0:0", "192.0.2.1:80", "localhost:1", "127.0.0.1"])
def test_stream_address_refused(address: str) -> None:
    with pytest.raises(InvalidArgument, match="stream_address"):
        parse_address(address)


def test_status_encodings() -> None:
    assert json.loads(encode_status(exit_failure(3), True)) == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: exit status 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
    assert encode_status(success(), False) == b""
    assert encode_status(exit_failure(3), False).startswith(b"command terminated")


async def test_sizes_from_a_stream_of_json() -> None:
    class Chunks:
        def __init__(self, *chunks: bytes) -> None:
            self.chunks = list(chunks)

        async def read(self) -> bytes:
            return self.chunks.pop(0) if self.chunks else b""

    source = Chunks(b'{"Width":80,"Hei', b'ght":24}\n{"Width":100,"Height":30}\n', b"{bad}")
    assert [s async for s in sizes(source)] == [(80, 24), (100, 30)]


def test_requests_are_checked_when_urls_are_made() -> None:
    srv = StreamServer("127.0.0.1:0", containers=None, sandboxes=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="tty and stderr"):
        srv.get_exec(ExecRequest("c1", ["sh"], tty=True, stderr=True))
    with pytest.raises(InvalidArgument, match="one of stdin, stdout, or stderr"):
        srv.get_attach(AttachRequest("c1", stdout=False, stderr=False))
    with pytest.raises(InvalidArgument, match="cmd"):
        srv.get_exec(ExecRequest("c1", []))
    with pytest.raises(InvalidArgument, match="pod_sandbox_id"):
        srv.get_port_forward(PortForwardRequest(""))
    assert srv.get_exec(ExecRequest("c1", ["true"])).startswith("http://127.0.0.1:0/exec/")


# -- SPDY sessions -----------------------------------------------------------------------------


async def test_spdy_exec_v4(server: StreamServer) -> None:
    url = server.get_exec(ExecRequest("c1", ["cat"], stdin=True))
    client, status, headers = await SpdyClient.connect(
        url, ["v4.channel.k8s.io", "v3.channel.k8s.io"]
    )
    assert client is not None and status == 101
    assert headers["X-Stream-Protocol-Version"] == "v4.channel.k8s.io"
    error = client.open({"streamType": "error"}, fin=True)
    stdin = client.open({"streamType": "stdin"})
    stdout = client.open({"streamType": "stdout"})
    stderr = client.open({"streamType": "stderr"})
    client.writer.write(spdy.encode_ping(1))
    client.send(stdin, b"hello ")
    client.send(stdin, b"world", fin=True)
    replies, pong = [], None
    while len(replies) < 4 or pong is None:
        frame = await client.frame()
        if isinstance(frame, spdy.SynReply):
            replies.append(frame.stream_id)
        elif isinstance(frame, spdy.Ping):
            pong = frame.ping_id
        elif isinstance(frame, spdy.Data):
            client.pending.insert(0, frame)
            break
    assert pong == 1
    data = await client.collect({error, stdout, stderr})
    assert data.get(stdout) == b"hello world"
    assert json.loads(data[error]) == {"metadata": {}, "status": "Success"}
    assert isinstance(await client.frame(), spdy.GoAway)
    client.writer.close()


async def test_spdy_exit_codes_and_old_protocols(server: StreamServer) -> None:
    for protocol, expected in (
        ("v4.channel.k8s.io", json.dumps(exit_failure(5), separators=(",", ":")).encode()),
        ("v2.channel.k8s.io", b"command terminated with non-zero exit code: exit status 5"),
    ):
        url = server.get_exec(ExecRequest("c1", ["exit", "5"]))
        client, _, headers = await SpdyClient.connect(url, [protocol])
        assert client is not None and headers["X-Stream-Protocol-Version"] == protocol
        error = client.open({"streamType": "error"}, fin=True)
        stdout = client.open({"streamType": "stdout"})
        stderr = client.open({"streamType": "stderr"})
        data = await client.collect({error, stdout, stderr})
        assert data[error] == expected
        client.writer.close()


async def test_spdy_tty_resizes(server: StreamServer) -> None:
    url = server.get_exec(ExecRequest("c1", ["sh"], tty=True, stderr=False))
    client, _, _ = await SpdyClient.connect(url, ["v4.channel.k8s.io"])
    assert client is not None
    error = client.open({"streamType": "error"}, fin=True)
    stdout = client.open({"streamType": "stdout"})
    resize = client.open({"streamType": "resize"})
    client.send(resize, b'{"Width":100,"Height":30}\n{"Width":1,')
    client.send(resize, b'"Height":1}\n')  # the stand-in ends on this size
    data = await client.collect({error, stdout})
    assert json.loads(data[error])["status"] == "Success"
    containers = server.containers
    assert containers.started[-1].sizes == [(30, 100), (1, 1)]  # type: ignore[attr-defined]
    client.writer.close()


async def test_spdy_client_that_hangs_up_kills_its_exec(server: StreamServer) -> None:
    url = server.get_exec(ExecRequest("c1", ["sleep"]))
    client, _, _ = await SpdyClient.connect(url, ["v4.channel.k8s.io"])
    assert client is not None
    for kind in ("error", "stdout", "stderr"):
        client.open({"streamType": kind})
    for _ in range(3):
        assert isinstance(await client.frame(), spdy.SynReply)
    client.writer.close()
    containers = server.containers
    for _ in range(100):
        if containers.killed:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.02)
    assert len(containers.killed) == 1  # type: ignore[attr-defined]


async def test_urls_work_once_and_need_an_upgrade(server: StreamServer) -> None:
    url = server.get_exec(ExecRequest("c1", ["exit", "0"]))
    client, status, headers = await SpdyClient.connect(url, ["v9.channel.k8s.io"])
    assert client is None and status == 403
    assert "v4.channel.k8s.io" in headers["X-Accepted-Stream-Protocol-Versions"]
    # The token went with the first connection, whatever came of it.
    client, status, _ = await SpdyClient.connect(url, ["v4.channel.k8s.io"])
    assert client is None and status == 404
    for path in ("/exec", "/exec/a/b", "/nothing/x"):
        client, status, _ = await SpdyClient.connect(server.base_url + path, [])
        assert status == 404
    plain = server.get_exec(ExecRequest("c1", ["exit", "0"]))
    host, port = server.host, server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {plain.split(str(port), 1)[1]} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert (await reader.readline()).startswith(b"HTTP/1.1 400 ")
    writer.close()
    # A port-forward URL is no exec URL.
    forward = server.get_port_forward(PortForwardRequest("pod1"))
    client, status, _ = await SpdyClient.connect(
        forward.replace("/portforward/", "/exec/"), ["v4.channel.k8s.io"]
    )
    assert status == 404


async def test_spdy_exec_error_is_reported(server: StreamServer) -> None:
    url = server.get_exec(ExecRequest("gone", ["true"]))
    client, _, _ = await SpdyClient.connect(url, ["v4.channel.k8s.io"])
    assert client is not None
    error = client.open({"streamType": "error"}, fin=True)
    client.open({"streamType": "stdout"})
    client.open({"streamType": "stderr"})
    data = await client.collect({error})
    status = json.loads(data[error])
    assert status["status"] == "Failure" and "No such container: gone" in status["message"]
    client.writer.close()


# -- WebSocket sessions -------------------------------------------------------------------------


async def ws_session(url: str, protocol: str, send: list[bytes]) -> list[bytes]:
    received = []
    async with websockets.connect(url.replace("http://", "ws://"), subprotocols=[protocol]) as ws:
        assert ws.subprotocol == protocol
        for message in send:
            await ws.send(message)
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in ws:
                received.append(message)
    return received


async def test_websocket_v5_exec(server: StreamServer) -> None:
    url = server.get_exec(ExecRequest("c1", ["cat"], stdin=True))
    received = await ws_session(url, "v5.channel.k8s.io", [b"\x00abc", b"\x00def", b"\xff\x00"])
    # An empty "connected" message on stdout first, as kubelet sends.
    assert received[0] == b"\x01"
    assert b"".join(m[1:] for m in received[1:-1] if m[:1] == b"\x01") == b"abcdef"
    assert received[-1] == b'\x03{"metadata":{},"status":"Success"}'


async def test_websocket_v4_exec_streams(server: StreamServer) -> None:
    url = server.get_exec(ExecRequest("c1", ["print", "out", "err"]))
    received = await ws_session(url, "v4.channel.k8s.io", [])
    assert received[:3] == [b"\x01", b"\x01out", b"\x02err"]
    assert json.loads(received[3][1:])["status"] == "Success"


async def test_websocket_unknown_subprotocol_is_refused(server: StreamServer) -> None:
    url = server.get_exec(ExecRequest("c1", ["exit", "0"]))
    with pytest.raises(websockets.InvalidStatus) as refused:
        await ws_session(url, "base64.channel.k8s.io", [])
    assert refused.value.response.status_code == 400


# -- port forwarding --------------------------------------------------------------------------


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    srv = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield srv.sockets[0].getsockname()[1]
    srv.close()


async def test_spdy_port_forward_pairs_streams(server: StreamServer, echo_port: int) -> None:
    url = server.get_port_forward(PortForwardRequest("pod1"))
    client, _, headers = await SpdyClient.connect(url, ["portforward.k8s.io"])
    assert client is not None and headers["X-Stream-Protocol-Version"] == "portforward.k8s.io"
    pairs = []
    for request_id, port in (("0", echo_port), ("1", 9)):  # 9: nothing listens
        base = {"port": str(port), "requestID": request_id}
        error = client.open({**base, "streamType": "error"}, fin=True)
        data = client.open({**base, "streamType": "data"})
        pairs.append((error, data))
    (ok_error, ok_data), (bad_error, bad_data) = pairs
    payload = bytes(range(256)) * 4096
    client.send(ok_data, payload, fin=True)
    data = await client.collect({ok_data, ok_error, bad_error, bad_data})
    assert data.get(ok_data) == payload
    assert data.get(ok_error) == b""  # no error, only the end of the stream
    assert data[bad_error].startswith(b"error forwarding port 9 to pod pod1: ")
    client.writer.close()


async def test_websocket_port_forward_channels(server: StreamServer, echo_port: int) -> None:
    url = server.get_port_forward(PortForwardRequest("pod1", ports=[echo_port]))
    async with websockets.connect(
        url.replace("http://", "ws://"), subprotocols=["v4.channel.k8s.io"]
    ) as ws:
        port_prefix = b"%c" % 0 + struct.pack("<H", echo_port)
        assert await ws.recv() == port_prefix
        assert await ws.recv() == b"\x01" + struct.pack("<H", echo_port)
        await ws.send(b"\x00ping")
        assert await ws.recv() == b"\x00ping"


async def test_port_forward_tunnelled_in_websocket(server: StreamServer, echo_port: int) -> None:
    """SPDY inside WebSocket binary messages, as newer client-go and crictl tunnel it (the
    subprotocol has a "/", which the websockets client refuses to offer: a raw handshake)."""
    url = server.get_port_forward(PortForwardRequest("pod1"))
    host_port, path = url.removeprefix("http://").split("/", 1)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\r\n" in head
    ws = ClientProtocol(parse_uri(f"ws://{host_port}/"), state=State.OPEN)
    compressor, frames = spdy.HeaderCompressor(), spdy.FrameReader()
    base = {"port": str(echo_port), "requestID": "0"}
    for message in (
        spdy.encode_syn_stream(compressor, 1, {**base, "streamType": "error"}, fin=True),
        spdy.encode_syn_stream(compressor, 3, {**base, "streamType": "data"}),
        spdy.encode_data(3, b"through the tunnel", fin=True),
    ):
        ws.send_binary(message)
    writer.write(b"".join(ws.data_to_send()))
    echoed, ended = b"", False
    while not ended:
        ws.receive_data(await asyncio.wait_for(reader.read(65536), 10))
        for event in ws.events_received():
            for frame in frames.feed(event.data):
                if isinstance(frame, spdy.Data) and frame.stream_id == 3:
                    echoed += frame.data
                    ended = frame.fin
    assert echoed == b"through the tunnel"
    writer.close()


async def test_port_forward_to_a_missing_pod(server: StreamServer) -> None:
    url = server.get_port_forward(PortForwardRequest("nopod"))
    client, _, _ = await SpdyClient.connect(url, ["portforward.k8s.io"])
    assert client is not None
    base = {"port": "80", "requestID": "0"}
    error = client.open({**base, "streamType": "error"}, fin=True)
    client.open({**base, "streamType": "data"})
    data = await client.collect({error})
    assert b"pod sandbox 'nopod' not found" in data[error]
    client.writer.close()

"""The CRI streaming server: the URLs Exec, Attach and PortForward hand out, served.

Each RPC stores its request under a random token and answers with
http://127.0.0.1:PORT/{exec,attach,portforward}/TOKEN. The client connects
there within the token's lifetime (one minute, kubelet's default) and upgrades
the connection to SPDY/3.1 or to a WebSocket; the token is used up on the
first connection, whatever comes of it, so a URL works once.

One asyncio listener on the daemon's loop: h11 reads the HTTP request,
`websockets` does the WebSocket handshake and framing, spdy.py the SPDY one.
Only loopback addresses are accepted: the token is the only credential and
the connection is plain HTTP. The same address is also served inside runtimed's
rootless network namespace, where a kubelet beside a rootless runtime runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import h11
import structlog
from websockets.datastructures import Headers as WsHeaders
from websockets.exceptions import NegotiationError
from websockets.http11 import Request as WsRequest
from websockets.protocol import State
from websockets.server import ServerProtocol

from runtimed.core.containers import ContainerService
from runtimed.core.sandboxes import SandboxService
from runtimed.errors import InvalidArgument
from runtimed.streaming import portforward, remotecommand
from runtimed.streaming.address import parse_address
from runtimed.streaming.nsthread import run_in_netns
from runtimed.streaming.portforward import PodDialer
from runtimed.streaming.remotecommand import Channels
from runtimed.streaming.requests import (
    AttachRequest,
    ExecRequest,
    PortForwardRequest,
    StreamRequest,
)
from runtimed.streaming.spdyconn import SpdySession, SpdyStream, TcpWire
from runtimed.streaming.tokens import TOKEN_TTL, RequestCache
from runtimed.streaming.websocket import WsChannels, WsConnection, WsWire

log = structlog.get_logger(__name__)

# kubelet's streamCreationTimeout: how long the client may take to open its streams.
STREAM_CREATION_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0
_LIMIT = 256 * 1024  # a connection's read buffer
MAX_MESSAGE = 16 << 20

# Remote command protocols, best first, with their version number. client-go offers v5
# over SPDY too; there it is v4 (SPDY has its own half-close for stdin).
_REMOTECOMMAND = {
    "v5.channel.k8s.io": 5,
    "v4.channel.k8s.io": 4,
    "v3.channel.k8s.io": 3,
    "v2.channel.k8s.io": 2,
    "channel.k8s.io": 1,
}
_REMOTECOMMAND_NAMES = list(_REMOTECOMMAND)
PORT_FORWARD = "portforward.k8s.io"
TUNNEL_PORT_FORWARD = "SPDY/3.1+" + PORT_FORWARD
_WS_PORT_FORWARD = [TUNNEL_PORT_FORWARD, "v4.channel.k8s.io"]
_KINDS = {"exec": ExecRequest, "attach": AttachRequest, "portforward": PortForwardRequest}

# WebSocket channel numbers of a remote command.
_STDIN, _STDOUT, _STDERR, _ERROR, _RESIZE = range(5)


def _check_stdio(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> None:
    if tty and stderr:
        raise InvalidArgument("tty and stderr cannot both be true")
    if not (stdin or stdout or stderr):
        raise InvalidArgument("one of stdin, stdout, or stderr must be set")


class StreamServer:
    """Hands out streaming URLs and serves them; lives on the daemon's event loop."""

    def __init__(
        self,
        address: str,
        *,
        containers: ContainerService,
        sandboxes: SandboxService,
        token_ttl: float = TOKEN_TTL,
    ) -> None:
        self.host, self.port = parse_address(address)
        self.containers = containers
        self.sandboxes = sandboxes
        self.dialer = PodDialer(sandboxes)
        self.cache = RequestCache(token_ttl)
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        host = await asyncio.start_server(self._accept, self.host, self.port, limit=_LIMIT)
        self._servers.append(host)
        self.port = host.sockets[0].getsockname()[1]
        log.info("streaming_server_started", url=self.base_url)
        await self._listen_in_node_network()

    async def _listen_in_node_network(self) -> None:
        """The same address inside runtimed's rootless network namespace, where a kubelet
        beside a rootless runtime runs (runtimectl unshare --rootless-netns): the URLs we
        hand out then work there as on the host. Best effort: the port may be taken."""
        netns = self.sandboxes.node_network
        if netns is None or not Path(netns).exists():
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        address = (self.host, self.port)

        def listener() -> socket.socket:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
                sock.listen(128)
            except OSError:
                sock.close()
                raise
            return sock

        try:
            sock = await run_in_netns(str(netns), listener, socket.socket.close)
        except OSError as exc:
            log.warning("streaming_server_not_in_node_network", netns=str(netns), error=str(exc))
            return
        self._servers.append(await asyncio.start_server(self._accept, sock=sock, limit=_LIMIT))
        log.info("streaming_server_in_node_network", url=self.base_url, netns=str(netns))

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def aclose(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for server in self._servers:
            await server.wait_closed()

    # -- handing out URLs (the CRI RPCs) -----------------------------------------------------

    def _url(self, kind: str, request: StreamRequest) -> str:
        return f"{self.base_url}/{kind}/{self.cache.insert(request)}"

    def get_exec(self, request: ExecRequest) -> str:
        if not request.container_id:
            raise InvalidArgument("missing required container_id")
        if not request.cmd:
            raise InvalidArgument("missing required cmd")
        _check_stdio(request.tty, request.stdin, request.stdout, request.stderr)
        return self._url("exec", request)

    def get_attach(self, request: AttachRequest) -> str:
        if not request.container_id:
            raise InvalidArgument("missing required container_id")
        _check_stdio(request.tty, request.stdin, request.stdout, request.stderr)
        return self._url("attach", request)

    def get_port_forward(self, request: PortForwardRequest) -> str:
        if not request.pod_sandbox_id:
            raise InvalidArgument("missing required pod_sandbox_id")
        return self._url("portforward", request)

    # -- connections -------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the server is closing; asyncio's stream callback would log a cancel
        except Exception:
            log.exception("streaming_connection_failed")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        http = h11.Connection(h11.SERVER)
        try:
            event = await asyncio.wait_for(_next_request(http, reader), REQUEST_TIMEOUT)
        except TimeoutError:
            return
        except h11.RemoteProtocolError as exc:
            _respond(writer, http, 400, f"bad request: {exc}")
            return
        if not isinstance(event, h11.Request):
            return
        target = urlsplit(event.target.decode("ascii", "replace"))
        parts = target.path.strip("/").split("/")
        kind_cls = _KINDS.get(parts[0]) if len(parts) == 2 else None
        if event.method not in (b"GET", b"POST") or kind_cls is None:
            _respond(writer, http, 404, "404 page not found")
            return
        request = self.cache.consume(parts[1])
        if not isinstance(request, kind_cls):
            _respond(writer, http, 404, "404 page not found")
            return
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
        upgrade = next((v.strip().lower() for n, v in headers if n == "upgrade"), "")
        if upgrade == "websocket":
            await self._websocket(reader, writer, http, event, headers, request)
        elif upgrade == "spdy/3.1":
            await self._spdy(reader, writer, http, headers, request)
        else:
            _respond(writer, http, 400, "unable to upgrade: missing upgrade headers in request")

    # -- SPDY ----------------------------------------------------------------------------------

    async def _spdy(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        http: h11.Connection,
        headers: list[tuple[str, str]],
        request: StreamRequest,
    ) -> None:
        offered = [
            p.strip()
            for n, v in headers
            if n == "x-stream-protocol-version"
            for p in v.split(",")
            if p.strip()
        ]
        server = [PORT_FORWARD] if isinstance(request, PortForwardRequest) else _REMOTECOMMAND_NAMES
        protocol = next((p for p in offered if p in server), None)
        if protocol is None and offered:
            _respond(
                writer,
                http,
                403,
                f"unable to upgrade: unable to negotiate protocol: client supports "
                f"{offered}, server supports {server}",
                [("X-Accepted-Stream-Protocol-Versions", ", ".join(server))],
            )
            return
        reply = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]
        if protocol:
            reply.append(("X-Stream-Protocol-Version", protocol))
        writer.write(http.send(h11.InformationalResponse(status_code=101, headers=reply)))
        session = SpdySession(TcpWire(reader, writer, http.trailing_data[0]))
        await self._run_spdy(session, request, protocol or server[-1])

    async def _run_spdy(self, session: SpdySession, request: StreamRequest, protocol: str) -> None:
        log.debug("streaming_session", transport="spdy", protocol=protocol, request=request)
        reading = asyncio.create_task(session.run())
        try:
            if isinstance(request, PortForwardRequest):
                await portforward.serve_spdy(session, self.dialer, request.pod_sandbox_id)
            else:
                await self._spdy_remotecommand(session, request, _REMOTECOMMAND[protocol])
            await session.finish()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading

    async def _spdy_remotecommand(
        self, session: SpdySession, request: ExecRequest | AttachRequest, version: int
    ) -> None:
        want = remotecommand.wanted(
            request.tty, request.stdin, request.stdout, request.stderr, resize=version >= 3
        )
        streams = await _collect_streams(session, want)
        if streams is None:
            log.info("streaming_streams_missing", want=sorted(want))
            return
        channels = Channels(
            error=streams[remotecommand.ERROR],
            stdin=streams.get(remotecommand.STDIN),
            stdout=streams.get(remotecommand.STDOUT_T),
            stderr=streams.get(remotecommand.STDERR_T),
            resize=streams.get(remotecommand.RESIZE),
        )
        await self._remotecommand(request, channels, version, session.ended)

    async def _remotecommand(
        self,
        request: ExecRequest | AttachRequest,
        channels: Channels,
        version: int,
        hangup: asyncio.Event,
    ) -> None:
        if isinstance(request, AttachRequest):
            await remotecommand.serve_attach(
                self.containers, request, channels, structured=version >= 4, hangup=hangup
            )
        else:
            await remotecommand.serve_exec(
                self.containers, request, channels, structured=version >= 4, hangup=hangup
            )

    # -- WebSocket -----------------------------------------------------------------------------

    async def _websocket(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        http: h11.Connection,
        event: h11.Request,
        headers: list[tuple[str, str]],
        request: StreamRequest,
    ) -> None:
        forwarding = isinstance(request, PortForwardRequest)
        server = _WS_PORT_FORWARD if forwarding else _REMOTECOMMAND_NAMES

        def select(_protocol: ServerProtocol, offered: list[str]) -> str | None:
            for candidate in server:
                if candidate in offered:
                    return candidate
            if not offered and forwarding:
                return None  # kubelet's legacy port forwarding: channels, no subprotocol
            raise NegotiationError(f"no supported subprotocol among {offered}; want {server}")

        # h11 has parsed the request already: one protocol object answers the handshake,
        # a second, born open, does the framing (the first would parse frames as HTTP).
        handshake = _Handshake(select_subprotocol=select)
        response = handshake.accept(
            WsRequest(path=event.target.decode("ascii", "replace"), headers=WsHeaders(headers))
        )
        handshake.send_response(response)
        writer.write(b"".join(handshake.data_to_send()))
        if response.status_code != 101:
            return
        ws = WsConnection(ServerProtocol(state=State.OPEN, max_size=MAX_MESSAGE), reader, writer)
        ws.feed(http.trailing_data[0])
        chosen = handshake.subprotocol or ""
        log.debug("streaming_session", transport="websocket", protocol=chosen, request=request)
        if isinstance(request, PortForwardRequest):
            if chosen == TUNNEL_PORT_FORWARD:
                await self._run_spdy(SpdySession(WsWire(ws)), request, PORT_FORWARD)
                return
            ports = request.ports or _query_ports(event.target)
            await portforward.serve_websocket(ws, self.dialer, request.pod_sandbox_id, ports)
            return
        await self._ws_remotecommand(ws, request, _REMOTECOMMAND[chosen])

    async def _ws_remotecommand(
        self, ws: WsConnection, request: ExecRequest | AttachRequest, version: int
    ) -> None:
        stderr = request.stderr and not request.tty
        inputs = {_STDIN} if request.stdin else set()
        if request.tty:
            inputs.add(_RESIZE)
        channels = WsChannels(ws, inputs, close_messages=version >= 5)
        reading = asyncio.create_task(channels.run())
        try:
            # As kubelet: an empty message on the first output channel says "connected".
            first = _STDOUT if request.stdout else _STDERR if stderr else _ERROR
            await channels.writer(first).write(b"")
            await self._remotecommand(
                request,
                Channels(
                    error=channels.writer(_ERROR),
                    stdin=channels.inputs.get(_STDIN),
                    stdout=channels.writer(_STDOUT) if request.stdout else None,
                    stderr=channels.writer(_STDERR) if stderr else None,
                    resize=channels.inputs.get(_RESIZE),
                ),
                version,
                channels.hangup,
            )
        finally:
            await ws.close(reading)
            reading.cancel()


class _Handshake(ServerProtocol):
    """Subprotocols as client-go offers them: `SPDY/3.1+portforward.k8s.io` has a "/",
    which RFC 6455's token grammar (and so the library's parser) does not allow."""

    def process_subprotocol(self, headers: WsHeaders) -> str | None:
        offered = [
            part.strip()
            for value in headers.get_all("Sec-WebSocket-Protocol")
            for part in value.split(",")
            if part.strip()
        ]
        return self.select_subprotocol(offered)


# -- helpers ---------------------------------------------------------------------------------------


async def _next_request(http: h11.Connection, reader: asyncio.StreamReader) -> object:
    while (event := http.next_event()) is h11.NEED_DATA:
        http.receive_data(await reader.read(64 * 1024))
    return event


def _respond(
    writer: asyncio.StreamWriter,
    http: h11.Connection,
    status: int,
    text: str,
    extra: list[tuple[str, str]] | None = None,
) -> None:
    body = (text + "\n").encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *(extra or []),
    ]
    with contextlib.suppress(h11.LocalProtocolError):
        writer.write(http.send(h11.Response(status_code=status, headers=headers)))
        writer.write(http.send(h11.Data(data=body)))
        writer.write(http.send(h11.EndOfMessage()))


def _query_ports(target: bytes) -> list[int]:
    query = parse_qs(urlsplit(target.decode("ascii", "replace")).query)
    ports = []
    for value in query.get("port", []):
        for part in value.split(","):
            with contextlib.suppress(ValueError):
                ports.append(int(part))
    return [p for p in ports if 0 < p < 65536]


async def _collect_streams(session: SpdySession, want: set[str]) -> dict[str, SpdyStream] | None:
    """The streams a remote command needs, by type; None if the client did not open them in
    time or hung up. Extra or repeated streams are reset."""
    got: dict[str, SpdyStream] = {}

    async def collect() -> bool:
        while not want <= got.keys():
            stream = await session.next_stream()
            if stream is None:
                return False
            kind = stream.header("streamtype")
            if kind in want and kind not in got:
                got[kind] = stream
            else:
                stream.reset()
        return True

    try:
        complete = await asyncio.wait_for(collect(), STREAM_CREATION_TIMEOUT)
    except TimeoutError:
        complete = False
    return got if complete else None

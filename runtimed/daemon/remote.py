"""Remote access: the daemon's tcp:// listeners, only ever with mutual TLS.

Two APIs, one TLS setup (dockerd's --tlsverify/--tlscacert/--tlscert/--tlskey):

- `-H tcp://ADDR:PORT` serves the gRPC API (Engine, CRI, health). grpc-core terminates
  TLS itself (`grpc.ssl_server_credentials(require_client_auth=True)`): its sockets are
  its own, and its TLS is C all the way.
- `--docker-host tcp://ADDR:PORT` serves the Docker Engine REST API. We bind the socket
  and build an `ssl.SSLContext` that demands a client certificate, and hand both to
  `runtimed.dockerapi.serve_socket(runtime, sock, ssl_context=...)`, which returns
  something with `async aclose()` (an aiohttp `SockSite` fits).

Separate ports, not one port split by ALPN (h2 for gRPC, http/1.1 for Docker): grpc.aio
owns its listening sockets, so a shared port would mean terminating TLS in Python and
relaying every gRPC byte through the event loop. Two ports keep each API on its own
server's fast path; both take the same certificates.

Plain TCP is refused at start: whoever reaches the port would own every container (and,
through bind mounts, the user's files).
"""

from __future__ import annotations

import importlib
import importlib.util
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from runtimed.config import Config
from runtimed.errors import FailedPrecondition, InvalidArgument
from runtimed.hosts import Host, TlsFiles, default_cert_dir, parse_host, server_files

if TYPE_CHECKING:
    import grpc

log = structlog.get_logger(__name__)

DOCKER_API_MODULE = "runtimed.dockerapi"
GRPC, DOCKER = "grpc", "docker"


class Closer(Protocol):
    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Listener:
    api: str  # GRPC | DOCKER
    host: Host

    @property
    def flag(self) -> str:
        return "-H" if self.api == GRPC else "--docker-host"


@dataclass(frozen=True)
class TlsMaterial:
    """The daemon's PEM files, read once and checked: a bad file fails the start in one line."""

    files: TlsFiles
    ca: bytes
    cert: bytes
    key: bytes

    @classmethod
    def load(cls, files: TlsFiles) -> TlsMaterial:
        data = {}
        for what, flag, path in (
            ("ca", "--tlscacert", files.ca),
            ("cert", "--tlscert", files.cert),
            ("key", "--tlskey", files.key),
        ):
            try:
                data[what] = path.read_bytes()
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
                raise FailedPrecondition(
                    f"cannot use {flag} {path}: {reason} (runtimectl tls generate makes "
                    "a CA and certificates)"
                ) from None
        material = cls(files=files, **data)
        material.server_context()  # parses all three: a wrong file is named now, not later
        return material

    def server_context(self) -> ssl.SSLContext:
        """TLS 1.2+, a client certificate signed by our CA required; http/1.1 (the Docker API)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            ctx.load_verify_locations(cadata=self.ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise FailedPrecondition(f"--tlscacert {self.files.ca}: not a PEM CA: {exc}") from None
        try:
            ctx.load_cert_chain(self.files.cert, self.files.key)
        except (ssl.SSLError, OSError) as exc:
            raise FailedPrecondition(
                f"--tlscert {self.files.cert} / --tlskey {self.files.key}: not a matching PEM "
                f"certificate and key: {exc}"
            ) from None
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def grpc_credentials(self) -> grpc.ServerCredentials:
        import grpc

        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True
        )


@dataclass
class RemoteAccess:
    """The tcp:// listeners a daemon was asked for, checked before anything starts."""

    listeners: list[Listener]
    tls: TlsMaterial | None
    _closers: list[Closer] = field(default_factory=list)

    @classmethod
    def plan(cls, config: Config) -> RemoteAccess:
        listeners = _listeners(GRPC, config.tcp_hosts) + _listeners(DOCKER, config.docker_tcp_hosts)
        if not listeners:
            return cls([], None)
        if not config.tlsverify:
            first = listeners[0]
            raise InvalidArgument(
                f"refusing {first.flag} {first.host} without --tlsverify: runtimed serves TCP "
                "only with mutual TLS (whoever reaches a plain port would control your "
                "containers); add --tlsverify --tlscacert CA --tlscert CERT --tlskey KEY "
                "(runtimectl tls generate makes them)"
            )
        if any(lis.api == DOCKER for lis in listeners) and not _docker_api_available():
            raise FailedPrecondition(
                "cannot serve --docker-host: this runtimed has no Docker API "
                f"({DOCKER_API_MODULE} is not installed)"
            )
        return cls(listeners, TlsMaterial.load(tls_files(config)))

    def check_bind(self) -> None:
        """Fail now, in one line, if an address cannot be bound (grpc would only say
        "Failed to bind" after everything else had started)."""
        for lis in self.listeners:
            if lis.host.port:  # port 0 takes any free one
                _bind(lis).close()

    def add_grpc_ports(self, server: grpc.aio.Server) -> None:
        for lis in self.listeners:
            if lis.api != GRPC:
                continue
            assert self.tls is not None
            try:
                port = server.add_secure_port(lis.host.authority, self.tls.grpc_credentials())
            except RuntimeError as exc:
                raise FailedPrecondition(f"cannot listen on {lis.host}: {exc}") from None
            if port == 0:  # older grpcio reports a failed bind this way
                raise FailedPrecondition(f"cannot listen on {lis.host}")
            log.info("tcp_listening", api=GRPC, address=lis.host.address, port=port, tls=True)

    async def start_docker(self, runtime: Any) -> None:
        docker = [lis for lis in self.listeners if lis.api == DOCKER]
        if not docker:
            return
        assert self.tls is not None
        serve_socket = importlib.import_module(DOCKER_API_MODULE).serve_socket
        context = self.tls.server_context()
        for lis in docker:
            sock = _bind(lis)
            port = sock.getsockname()[1]
            self._closers.append(await serve_socket(runtime, sock, ssl_context=context))
            log.info("tcp_listening", api=DOCKER, address=lis.host.address, port=port, tls=True)

    async def aclose(self) -> None:
        while self._closers:
            await self._closers.pop().aclose()


def tls_files(config: Config) -> TlsFiles:
    """The flags' files; where none is given, `runtimectl tls generate`'s in the default dir."""
    default = server_files(default_cert_dir())
    return TlsFiles(
        config.tlscacert or default.ca,
        config.tlscert or default.cert,
        config.tlskey or default.key,
    ).absolute()


def _listeners(api: str, values: Sequence[str]) -> list[Listener]:
    flag = "-H" if api == GRPC else "--docker-host"
    found = []
    for value in values:
        host = parse_host(value)
        if not host.is_tcp:
            raise InvalidArgument(f"{flag} {value}: a tcp://ADDRESS:PORT address is needed here")
        found.append(Listener(api, host))
    return found


def _docker_api_available() -> bool:
    try:
        return importlib.util.find_spec(DOCKER_API_MODULE) is not None
    except ImportError:
        return False


def _bind(lis: Listener) -> socket.socket:
    host = lis.host
    family = socket.AF_INET6 if ":" in host.address else socket.AF_INET
    try:
        if host.address not in ("0.0.0.0", "::"):
            infos = socket.getaddrinfo(host.address, host.port, type=socket.SOCK_STREAM)
            family = infos[0][0]
        return socket.create_server((host.address, host.port), family=family, backlog=128)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise FailedPrecondition(f"cannot listen on {lis.flag} {host}: {reason}") from None


def resolved_tls_args(config: Config) -> list[str]:
    """The TLS paths as flags for the daemon's child (it runs as root of the user namespace,
    where the default directory would be another one)."""
    if not (config.tcp_hosts or config.docker_tcp_hosts):
        return []
    files = tls_files(config)
    return ["--tlscacert", str(files.ca), "--tlscert", str(files.cert), "--tlskey", str(files.key)]

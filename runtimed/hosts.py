"""How clients and the daemon name an endpoint: `unix:///PATH` or `tcp://ADDR:PORT`, and the
TLS files that go with a TCP one.

Shared by runtimed (its -H listeners), runtimectl and runtimed.client. Stdlib only and
no dataclasses (that import alone costs runtimectl 5 ms): runtimectl loads this on
every command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from runtimed.errors import InvalidArgument
from runtimed.paths import config_dir, default_socket

# dockerd's port for TLS; 2375 is its plain-TCP one, which we never serve.
DEFAULT_TLS_PORT = 2376
# docker's file names in DOCKER_CERT_PATH, so one directory serves both clients.
CA_FILE, CERT_FILE, KEY_FILE = "ca.pem", "cert.pem", "key.pem"
# What `runtimectl tls generate` names the daemon's pair, next to the client's.
SERVER_CERT_FILE, SERVER_KEY_FILE = "server-cert.pem", "server-key.pem"


class Host(NamedTuple):
    """A parsed -H value: `scheme` is "unix" (with `path`) or "tcp" (`address`, `port`)."""

    scheme: str
    path: str = ""
    address: str = ""
    port: int = 0

    @property
    def is_tcp(self) -> bool:
        return self.scheme == "tcp"

    @property
    def authority(self) -> str:
        """`ADDR:PORT`, with an IPv6 address in brackets (as a URL or grpc target has it)."""
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{address}:{self.port}"

    def __str__(self) -> str:
        return f"tcp://{self.authority}" if self.is_tcp else f"unix://{self.path}"


class TlsFiles(NamedTuple):
    """PEM files of one side of a mutual TLS connection: the CA that signs the peer, and
    our own certificate and key."""

    ca: Path
    cert: Path
    key: Path

    def absolute(self) -> TlsFiles:
        return TlsFiles(self.ca.absolute(), self.cert.absolute(), self.key.absolute())


def parse_host(value: str) -> Host:
    """`unix:///path`, `unix://path`, a bare path, or `tcp://ADDR[:PORT]` (docker's -H forms
    we serve; the port defaults to 2376, docker's TLS port)."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "unix", value
    if scheme == "unix":
        if not rest:
            raise InvalidArgument(f"invalid host {value!r}: empty socket path, use unix:///PATH")
        return Host("unix", path=rest)
    if scheme != "tcp":
        raise InvalidArgument(
            f"unsupported host {value}: use unix:///PATH or tcp://ADDRESS:PORT (with TLS)"
        )
    return _parse_tcp(value, rest)


def _parse_tcp(value: str, rest: str) -> Host:
    rest = rest.rstrip("/")
    if rest.startswith("["):  # [v6]:port
        close = rest.find("]")
        address, tail = rest[1:close], rest[close + 1 :]
        if close < 0 or (tail and not tail.startswith(":")):
            raise InvalidArgument(f"invalid host {value}: use tcp://[IPV6]:PORT")
        port_text = tail[1:]
    elif rest.count(":") > 1:
        raise InvalidArgument(f"invalid host {value}: put an IPv6 address in brackets")
    else:
        address, _, port_text = rest.partition(":")
    if "/" in port_text:
        raise InvalidArgument(f"invalid host {value}: no path after the port")
    if not address:
        raise InvalidArgument(f"invalid host {value}: no address (use 0.0.0.0 for all)")
    try:
        port = int(port_text) if port_text else DEFAULT_TLS_PORT
    except ValueError:
        raise InvalidArgument(f"invalid host {value}: {port_text!r} is not a port") from None
    if not 0 <= port < 65536:
        raise InvalidArgument(f"invalid host {value}: port {port} is out of range")
    return Host("tcp", address=address, port=port)


def default_cert_dir() -> Path:
    """Where `runtimectl tls generate` writes and clients look: $XDG_CONFIG_HOME/runtimed/tls."""
    return config_dir() / "tls"


def client_files(directory: Path) -> TlsFiles:
    """A client's files in a cert directory, as docker names them (ca.pem, cert.pem, key.pem)."""
    return TlsFiles(directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE)


def server_files(directory: Path) -> TlsFiles:
    return TlsFiles(directory / CA_FILE, directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE)


class ClientSettings(NamedTuple):
    """What a client connects to and with which files (None: no TLS, unix sockets only)."""

    host: Host
    tls: TlsFiles | None


def client_settings(
    host: str | None = None,
    *,
    tlsverify: bool | None = None,
    cacert: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    environ: dict[str, str] | os._Environ[str] | None = None,
) -> ClientSettings:
    """Flags first, then RUNTIMED_HOST, RUNTIMED_TLS_VERIFY and RUNTIMED_CERT_PATH (docker's
    DOCKER_* rules: any non-empty TLS_VERIFY turns verification on), then the defaults.

    A tcp:// host needs TLS: the daemon speaks nothing else on TCP, and a client that tried
    plain TCP would only hang in the handshake; refused here with a line that says why.
    """
    env = os.environ if environ is None else environ
    value = host or env.get("RUNTIMED_HOST") or ""
    parsed = parse_host(value) if value else Host("unix", path=str(default_socket()))
    verify = tlsverify or bool(env.get("RUNTIMED_TLS_VERIFY"))
    if not parsed.is_tcp:
        return ClientSettings(parsed, None)
    if not verify:
        raise InvalidArgument(
            f"cannot use {parsed}: runtimed serves TCP only with mutual TLS; give --tlsverify "
            "(or set RUNTIMED_TLS_VERIFY=1) with the client's certificate"
        )
    cert_dir = Path(env.get("RUNTIMED_CERT_PATH") or default_cert_dir())
    files = client_files(cert_dir)
    return ClientSettings(
        parsed,
        TlsFiles(
            Path(cacert) if cacert else files.ca,
            Path(cert) if cert else files.cert,
            Path(key) if key else files.key,
        ),
    )

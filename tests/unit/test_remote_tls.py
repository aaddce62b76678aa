"""Mutual TLS on tcp://: the daemon's own credentials (grpc-core for the gRPC API, an
ssl.SSLContext for the Docker API's listener) against grpcio, runtimectl's transport and
stdlib clients; accepted with the right client certificate, refused with any other."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from runtimed.cli.client import Client, CliError, TlsFlags, describe_rpc_error
from runtimed.cli.rpc import ConnectError, RpcError, StatusCode
from runtimed.config import Config
from runtimed.daemon.remote import RemoteAccess, TlsMaterial
from runtimed.errors import FailedPrecondition, InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.gen.runtimed.v1 import engine_pb2_grpc
from runtimed.hosts import Host, TlsFiles, client_settings, parse_host
from tests.support.pki import Pki, make_pki


class Echo(engine_pb2_grpc.EngineServicer):
    def Version(self, request, context):  # noqa: N802
        return pb.VersionResponse(version="tls-ok")

    def ContainerLogs(self, request, context):  # noqa: N802
        for i in range(3):
            yield pb.LogEntry(stream="stdout", data=f"line {i}\n".encode() * 5000)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def grpc_port(pki: Pki) -> Iterator[int]:
    """A gRPC server with the daemon's credentials (RemoteAccess's) on loopback."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    engine_pb2_grpc.add_EngineServicer_to_server(Echo(), server)
    port = server.add_secure_port("127.0.0.1:0", TlsMaterial.load(pki.server).grpc_credentials())
    server.start()
    yield port
    server.stop(0)


def grpcio_version(port: int, files: TlsFiles | None, ca: Path) -> str:
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=files.key.read_bytes() if files else None,
        certificate_chain=files.cert.read_bytes() if files else None,
    )
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        stub = engine_pb2_grpc.EngineStub(channel)
        return stub.Version(pb.VersionRequest(), timeout=10).version


def ctl_client(port: int, files: TlsFiles) -> Client:
    return Client.connect(
        f"tcp://127.0.0.1:{port}",
        TlsFlags(True, str(files.ca), str(files.cert), str(files.key)),
    )


def test_grpcio_with_the_right_client_certificate(pki: Pki, grpc_port: int) -> None:
    assert grpcio_version(grpc_port, pki.client, pki.client.ca) == "tls-ok"


@pytest.mark.parametrize("kind", ["none", "self-signed", "expired", "another CA"])
def test_grpcio_without_a_good_certificate_is_refused(pki: Pki, grpc_port: int, kind: str) -> None:
    files = None if kind == "none" else pki.refused[kind]
    with pytest.raises(grpc.RpcError) as err:
        grpcio_version(grpc_port, files, pki.client.ca)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_runtimectl_transport_unary_and_streaming(pki: Pki, grpc_port: int) -> None:
    client = ctl_client(grpc_port, pki.client)
    try:
        assert client.engine.Version(pb.VersionRequest()).version == "tls-ok"
        entries = list(client.engine.ContainerLogs(pb.ContainerLogsRequest(id="x")))
        assert [e.data for e in entries] == [f"line {i}\n".encode() * 5000 for i in range(3)]
        # Several calls at once share the one TLS connection (reader and writers in threads).
        results: list[str] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(client.engine.Version(pb.VersionRequest()).version)
            )
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == ["tls-ok"] * 8
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["self-signed", "expired", "another CA"])
def test_runtimectl_transport_refused_with_a_bad_certificate(
    pki: Pki, grpc_port: int, kind: str
) -> None:
    client = ctl_client(grpc_port, pki.refused[kind])
    try:
        with pytest.raises(ConnectError) as err:
            client.engine.Version(pb.VersionRequest(), timeout=10)
    finally:
        client.close()
    line = describe_rpc_error(err.value, client.socket).message
    assert line.startswith(f"Cannot talk to runtimed at tcp://127.0.0.1:{grpc_port}: ")
    assert "the daemon refused our client certificate" in line


def test_runtimectl_refuses_a_daemon_its_ca_did_not_sign(pki: Pki, grpc_port: int) -> None:
    foreign = pki.refused["another CA"]
    files = TlsFiles(foreign.cert, pki.client.cert, pki.client.key)  # trusts only another CA
    client = ctl_client(grpc_port, files)
    with pytest.raises(ConnectError) as err:
        client.engine.Version(pb.VersionRequest(), timeout=10)
    client.close()
    assert "the daemon's certificate is not trusted" in str(err.value.reason)


def test_runtimectl_missing_files_and_plain_tcp_are_one_line(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(CliError, match="cannot use --tlscert .*/absent.pem: no such file"):
        Client.connect(
            "tcp://127.0.0.1:1",
            TlsFlags(True, str(pki.client.ca), str(tmp_path / "absent.pem"), str(pki.client.key)),
        )
    with pytest.raises(CliError, match="serves TCP only with mutual TLS; give --tlsverify"):
        Client.connect("tcp://127.0.0.1:1", TlsFlags())


def test_nothing_listening_on_tcp_reads_as_not_running(pki: Pki) -> None:
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ctl_client(port, pki.client)
    with pytest.raises(RpcError) as err:
        client.engine.Version(pb.VersionRequest(), timeout=10)
    assert err.value.code() is StatusCode.UNAVAILABLE
    line = describe_rpc_error(err.value, client.socket).message
    assert line.startswith(f"Cannot connect to runtimed at tcp://127.0.0.1:{port}: is runtimed")


# --- the Docker API listener's context --------------------------------------------------


def handshake(context: ssl.SSLContext, files: TlsFiles | None, ca: Path) -> tuple[bool, str | None]:
    """(did the server accept us, ALPN) for one connection to a server using `context`."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[bool] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"hello")
                accepted.append(True)
        except (ssl.SSLError, OSError):
            accepted.append(False)

    thread = threading.Thread(target=serve)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(ca))
    if files is not None:
        client_ctx.load_cert_chain(str(files.cert), str(files.key))
    client_ctx.set_alpn_protocols(["http/1.1"])
    alpn = None
    try:
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            alpn = tls.selected_alpn_protocol()
            tls.recv(5)
    except (ssl.SSLError, OSError):
        pass
    thread.join(10)
    listener.close()
    return accepted == [True], alpn


def test_docker_listener_context_demands_our_ca(pki: Pki) -> None:
    context = TlsMaterial.load(pki.server).server_context()
    assert handshake(context, pki.client, pki.client.ca) == (True, "http/1.1")
    for kind in (None, "self-signed", "expired", "another CA"):
        files = None if kind is None else pki.refused[kind]
        accepted, _ = handshake(context, files, pki.client.ca)
        assert not accepted, kind


# --- planning the listeners -------------------------------------------------------------


def test_plain_tcp_is_refused_at_start_saying_why(pki: Pki) -> None:
    cfg = Config(tcp_hosts=["tcp://127.0.0.1:2376"])
    with pytest.raises(InvalidArgument) as err:
        RemoteAccess.plan(cfg)
    assert "refusing -H tcp://127.0.0.1:2376 without --tlsverify" in err.value.message
    assert "only with mutual TLS" in err.value.message


def test_plan_names_a_missing_or_wrong_file(pki: Pki, tmp_path: Path) -> None:
    cfg = Config(
        tcp_hosts=["tcp://127.0.0.1:0"],
        tlsverify=True,
        tlscacert=pki.server.ca,
        tlscert=tmp_path / "absent.pem",
        tlskey=pki.server.key,
    )
    with pytest.raises(FailedPrecondition, match="cannot use --tlscert .*absent.pem: no such"):
        RemoteAccess.plan(cfg)
    cfg.tlscert = pki.client.cert  # a certificate that does not go with the key
    with pytest.raises(FailedPrecondition, match="not a matching PEM certificate and key"):
        RemoteAccess.plan(cfg)
    cfg.tlscert = pki.server.cert
    plan = RemoteAccess.plan(cfg)
    assert [(lis.api, str(lis.host)) for lis in plan.listeners] == [("grpc", "tcp://127.0.0.1:0")]


def test_a_port_in_use_is_refused_before_start(pki: Pki) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        cfg = Config(
            tcp_hosts=[f"tcp://127.0.0.1:{port}"],
            tlsverify=True,
            tlscacert=pki.server.ca,
            tlscert=pki.server.cert,
            tlskey=pki.server.key,
        )
        with pytest.raises(FailedPrecondition, match=f"cannot listen on -H tcp://127.0.0.1:{port}"):
            RemoteAccess.plan(cfg).check_bind()


def test_docker_host_needs_the_docker_api(pki: Pki) -> None:
    import importlib.util

    cfg = Config(
        docker_tcp_hosts=["tcp://127.0.0.1:0"],
        tlsverify=True,
        tlscacert=pki.server.ca,
        tlscert=pki.server.cert,
        tlskey=pki.server.key,
    )
    if importlib.util.find_spec("runtimed.dockerapi") is None:
        with pytest.raises(FailedPrecondition, match="has no Docker API"):
            RemoteAccess.plan(cfg)
    else:
        assert [lis.api for lis in RemoteAccess.plan(cfg).listeners] == ["docker"]


# --- naming hosts -------------------------------------------------------------------------


def test_parse_host_forms() -> None:
    assert parse_host("unix:///run/x.sock") == Host("unix", path="/run/x.sock")
    assert parse_host("/run/y.sock") == Host("unix", path="/run/y.sock")
    assert parse_host("tcp://127.0.0.1:2400") == Host("tcp", address="127.0.0.1", port=2400)
    assert parse_host("tcp://example.org") == Host("tcp", address="example.org", port=2376)
    v6 = parse_host("tcp://[::1]:2377")
    assert v6 == Host("tcp", address="::1", port=2377) and str(v6) == "tcp://[::1]:2377"
    for bad, message in (
        ("ssh://me@host", "unsupported host"),
        ("tcp://:2376", "no address"),
        ("tcp://h:http", "not a port"),
        ("tcp://h:70000", "out of range"),
        ("tcp://::1:2376", "brackets"),
        ("unix://", "empty socket path"),
    ):
        with pytest.raises(InvalidArgument, match=message):
            parse_host(bad)


def test_client_settings_follow_docker_env_rules(tmp_path: Path) -> None:
    env = {"RUNTIMED_HOST": "tcp://10.0.0.1:2376", "RUNTIMED_TLS_VERIFY": "1"}
    env["RUNTIMED_CERT_PATH"] = str(tmp_path)
    settings = client_settings(environ=env)
    assert settings.host == Host("tcp", address="10.0.0.1", port=2376)
    assert settings.tls == TlsFiles(
        tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    )
    # Flags win over the environment, file by file.
    flagged = client_settings("tcp://h:1", cert=str(tmp_path / "mine.pem"), environ=env)
    assert flagged.tls is not None and flagged.tls.cert == tmp_path / "mine.pem"
    assert flagged.tls.key == tmp_path / "key.pem"
    with pytest.raises(InvalidArgument, match="--tlsverify"):
        client_settings(environ={"RUNTIMED_HOST": "tcp://h:1", "RUNTIMED_TLS_VERIFY": ""})
    assert client_settings("unix:///x.sock", environ=env).tls is None


# --- runtimectl tls generate --------------------------------------------------------------


def test_tls_generate_writes_a_usable_set(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cryptography import x509

    from runtimed.cli.main import main

    out = tmp_path / "certs"
    assert (
        main(["tls", "generate", "--dir", str(out), "--host", "daemon.example", "--days", "30"])
        == 0
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "ca-key.pem",
        "ca.pem",
        "cert.pem",
        "key.pem",
        "server-cert.pem",
        "server-key.pem",
    ]
    for key in ("ca-key.pem", "key.pem", "server-key.pem"):
        assert (out / key).stat().st_mode & 0o777 == 0o600
    server = x509.load_pem_x509_certificate((out / "server-cert.pem").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "daemon.example" in sans.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert 30 <= lifetime.days <= 31
    assert str(out / "ca.pem") in capsys.readouterr().out
    # The set works: the daemon's material loads, and a client context takes the client's.
    TlsMaterial.load(TlsFiles(out / "ca.pem", out / "server-cert.pem", out / "server-key.pem"))
    # Run again: existing files are kept unless --force.
    before = (out / "ca.pem").read_bytes()
    assert main(["tls", "generate", "--dir", str(out)]) == 1
    assert "ca.pem exists: pick another --dir, or --force" in capsys.readouterr().err
    assert (out / "ca.pem").read_bytes() == before
    assert main(["tls", "generate", "--dir", str(out), "--force"]) == 0
    assert (out / "ca.pem").read_bytes() != before


async def test_docker_listener_hook(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """The contract runtimed.dockerapi fills: serve_socket(runtime, sock, ssl_context=ctx)
    returns something with aclose(); the socket is bound, the context demands our CA."""
    import asyncio
    import importlib.machinery
    import sys
    import types

    calls: list[tuple[object, int]] = []

    async def serve_socket(runtime: object, sock: socket.socket, *, ssl_context: ssl.SSLContext):
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, sock=sock, ssl=ssl_context)
        calls.append((runtime, sock.getsockname()[1]))

        class Closer:
            async def aclose(self) -> None:
                server.close()
                await server.wait_closed()

        return Closer()

    fake = types.ModuleType("runtimed.dockerapi")
    fake.__spec__ = importlib.machinery.ModuleSpec("runtimed.dockerapi", None)
    fake.serve_socket = serve_socket  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "runtimed.dockerapi", fake)
    cfg = Config(
        docker_tcp_hosts=["tcp://127.0.0.1:0"],
        tlsverify=True,
        tlscacert=pki.server.ca,
        tlscert=pki.server.cert,
        tlskey=pki.server.key,
    )
    remote = RemoteAccess.plan(cfg)
    runtime = object()
    await remote.start_docker(runtime)
    [(seen, port)] = calls
    assert seen is runtime

    def get(files: TlsFiles | None) -> bytes:
        ctx = ssl.create_default_context(cafile=str(pki.client.ca))
        if files is not None:
            ctx.load_cert_chain(str(files.cert), str(files.key))
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                return tls.recv(1024)
        except (ssl.SSLError, OSError):  # refused (TLS 1.3: after our side's handshake)
            return b""

    assert (await asyncio.to_thread(get, pki.client)).endswith(b"\r\n\r\nOK")
    for files in (None, pki.refused["expired"]):
        assert await asyncio.to_thread(get, files) == b"", files
    await remote.aclose()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

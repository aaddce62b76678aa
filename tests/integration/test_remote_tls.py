"""runtimed on tcp:// with mutual TLS: runtimectl (flags and RUNTIMED_* variables) and a
grpcio client work with the right certificate, the daemon refuses others, and plain TCP
is refused at start. Listeners bind to 127.0.0.1 only."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import grpc
import pytest

from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.gen.runtimed.v1 import engine_pb2_grpc
from runtimed.hosts import TlsFiles
from tests.integration.test_error_lines import one_line, runtimectl, runtimed
from tests.support.daemon import BIN, CliResult, Daemon
from tests.support.pki import Pki, make_pki

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def remote(pki: Pki) -> Iterator[tuple[Daemon, int]]:
    port = free_port()
    tls = ("--tlscacert", str(pki.server.ca), "--tlscert", str(pki.server.cert))
    daemon = Daemon(
        extra_args=(
            "-H",
            f"tcp://127.0.0.1:{port}",
            "--tlsverify",
            *tls,
            "--tlskey",
            str(pki.server.key),
        )
    )
    with daemon:
        daemon.import_busybox("tlsbox:1")
        yield daemon, port


def remote_ctl(
    port: int, files: TlsFiles, *args: str, env: dict[str, str] | None = None
) -> CliResult:
    """runtimectl against the tcp:// listener only (no unix socket in sight)."""
    flags = ["--tlscacert", str(files.ca), "--tlscert", str(files.cert), "--tlskey", str(files.key)]
    proc = subprocess.run(
        [str(BIN / "runtimectl"), "-H", f"tcp://127.0.0.1:{port}", "--tlsverify", *flags, *args],
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_runtimectl_flags_over_tls(remote: tuple[Daemon, int], pki: Pki) -> None:
    daemon, port = remote
    daemon.ok("run", "-d", "--name", "tls-sleeper", "tlsbox:1", "sleep", "300")
    try:
        result = remote_ctl(port, pki.client, "ps", "--format", "{{.Names}} {{.State}}")
        assert result.returncode == 0, result.stderr
        assert result.out_lines == ["tls-sleeper running"]
        run = remote_ctl(port, pki.client, "run", "--rm", "tlsbox:1", "sh", "-c", "echo hi; exit 3")
        assert (run.returncode, run.stdout) == (3, "hi\n"), run.stderr
    finally:
        daemon.ok("rm", "-f", "tls-sleeper")


def test_runtimectl_environment_over_tls(remote: tuple[Daemon, int], pki: Pki) -> None:
    _, port = remote
    env = {
        "RUNTIMED_HOST": f"tcp://127.0.0.1:{port}",
        "RUNTIMED_TLS_VERIFY": "1",
        "RUNTIMED_CERT_PATH": str(pki.cert_dir),
    }
    result = runtimectl("run", "--rm", "tlsbox:1", "echo", "from env", env=env)
    assert (result.returncode, result.stdout) == (0, "from env\n"), result.stderr
    # Without RUNTIMED_TLS_VERIFY the tcp:// host is refused before anything is sent.
    env["RUNTIMED_TLS_VERIFY"] = ""
    for command, code in ((["ps"], 1), (["run", "tlsbox:1"], 125)):
        line = one_line(runtimectl(*command, env=env), code)
        assert "runtimed serves TCP only with mutual TLS; give --tlsverify" in line


@pytest.mark.parametrize("kind", ["expired", "another CA", "self-signed"])
def test_runtimectl_with_a_refused_certificate_is_one_line(
    remote: tuple[Daemon, int], pki: Pki, kind: str
) -> None:
    _, port = remote
    for command, code in ((["ps"], 1), (["run", "--rm", "tlsbox:1", "true"], 125)):
        line = one_line(remote_ctl(port, pki.refused[kind], *command), code)
        assert line.startswith(f"Cannot talk to runtimed at tcp://127.0.0.1:{port}: "), line
        assert "the daemon refused our client certificate" in line


def grpc_version(port: int, pki: Pki, files: TlsFiles | None) -> str:
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.client.ca.read_bytes(),
        private_key=files.key.read_bytes() if files else None,
        certificate_chain=files.cert.read_bytes() if files else None,
    )
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        reply = engine_pb2_grpc.EngineStub(channel).Version(pb.VersionRequest(), timeout=20)
        return reply.version


def test_grpcio_client_over_tls(remote: tuple[Daemon, int], pki: Pki) -> None:
    daemon, port = remote
    assert (
        grpc_version(port, pki, pki.client) == daemon.engine().Version(pb.VersionRequest()).version
    )
    for files in (None, pki.refused["expired"], pki.refused["another CA"]):
        with pytest.raises(grpc.RpcError) as err:
            grpc_version(port, pki, files)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_plain_tcp_is_refused_at_start(tmp_path) -> None:
    port = free_port()
    args = ("--data-dir", str(tmp_path / "data"), "--socket", str(tmp_path / "run" / "d.sock"))
    line = one_line(runtimed(*args, "-H", f"tcp://127.0.0.1:{port}"), 1)
    assert line.startswith(f"runtimed: refusing -H tcp://127.0.0.1:{port} without --tlsverify")
    assert "only with mutual TLS" in line
    # Nothing was started: the port is still free and no socket was made.
    with socket.create_server(("127.0.0.1", port)):
        pass
    assert not (tmp_path / "run" / "d.sock").exists()


def test_python_client_from_env_over_tls(remote: tuple[Daemon, int], pki: Pki) -> None:
    from runtimed.client import Client, Unavailable

    _, port = remote
    env = {
        "RUNTIMED_HOST": f"tcp://127.0.0.1:{port}",
        "RUNTIMED_TLS_VERIFY": "1",
        "RUNTIMED_CERT_PATH": str(pki.cert_dir),
    }
    with Client.from_env(env) as client:
        assert client.containers.run("tlsbox:1", "echo over tls", remove=True) == b"over tls\n"
    refused = {**env, "RUNTIMED_CERT_PATH": str(pki.refused["another CA"].ca.parent)}
    with Client.from_env(refused) as client, pytest.raises(Unavailable) as err:
        client.ping()
    assert err.value.status_code == 503

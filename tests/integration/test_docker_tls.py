"""The Docker API on tcp:// with mutual TLS: the docker CLI with --tlsverify (and with
DOCKER_TLS_VERIFY / DOCKER_CERT_PATH) works with the right client certificate and is
refused without one. The listener binds to 127.0.0.1 only."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.support.daemon import CliResult, Daemon
from tests.support.dockercli import free_port, require
from tests.support.pki import Pki, make_pki

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_daemon(pki: Pki) -> Iterator[tuple[Daemon, int]]:
    port = free_port()
    daemon = Daemon(
        extra_args=(
            "--docker-host",
            f"tcp://127.0.0.1:{port}",
            "--tlsverify",
            "--tlscacert",
            str(pki.server.ca),
            "--tlscert",
            str(pki.server.cert),
            "--tlskey",
            str(pki.server.key),
        )
    )
    with daemon:
        daemon.import_busybox("tlsbox:1")
        yield daemon, port


def _docker(
    daemon: Daemon, *args: str, env: dict[str, str] | None = None, input: bytes = b""
) -> CliResult:
    base = {k: v for k, v in daemon.env.items() if not k.startswith("DOCKER_")}
    base["DOCKER_CONFIG"] = str(daemon.root / "docker-tls-config")
    proc = subprocess.run(
        [require("docker"), *args],
        input=input,
        capture_output=True,
        timeout=120,
        env={**base, **(env or {})},
    )
    return CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_docker_cli_with_tlsverify(tls_daemon: tuple[Daemon, int], pki: Pki) -> None:
    daemon, port = tls_daemon
    files = pki.client
    flags = [
        "--tlsverify",
        "--tlscacert", str(files.ca), "--tlscert", str(files.cert), "--tlskey", str(files.key),
        "-H", f"tcp://127.0.0.1:{port}",
    ]  # fmt: skip
    version = _docker(daemon, *flags, "version", "--format", "{{.Server.APIVersion}}")
    assert (version.returncode, version.stdout) == (0, "1.50\n"), version.stderr
    run = _docker(daemon, *flags, "run", "--rm", "tlsbox:1", "echo", "over tls")
    assert (run.returncode, run.stdout) == (0, "over tls\n"), run.stderr
    piped = _docker(daemon, *flags, "run", "--rm", "-i", "tlsbox:1", "cat", input=b"in\n")
    assert (piped.returncode, piped.stdout) == (0, "in\n"), piped.stderr


def test_docker_environment_over_tls(tls_daemon: tuple[Daemon, int], pki: Pki) -> None:
    daemon, port = tls_daemon
    env = {
        "DOCKER_HOST": f"tcp://127.0.0.1:{port}",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(pki.cert_dir),
    }
    images = _docker(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}", env=env)
    assert (images.returncode, images.stdout) == (0, "tlsbox:1\n"), images.stderr


def test_docker_without_a_client_certificate_is_refused(
    tls_daemon: tuple[Daemon, int], pki: Pki
) -> None:
    daemon, port = tls_daemon
    flags = ["--tls", "--tlscacert", str(pki.client.ca), "-H", f"tcp://127.0.0.1:{port}"]
    refused = _docker(daemon, *flags, "version", "--format", "{{.Server.APIVersion}}")
    assert refused.returncode == 1 and refused.stdout.strip() == ""
    assert "tls" in refused.stderr.lower() or "certificate" in refused.stderr.lower()

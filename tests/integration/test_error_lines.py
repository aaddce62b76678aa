"""What a user sees when something is wrong: one line on stderr, docker's exit code, and
no traceback; messages that repeat a user's input repeat it at a readable length.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from runtimed.gen.runtime.v1 import api_pb2 as cri
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from tests.support.daemon import BIN, CliResult, Daemon

pytestmark = pytest.mark.integration

HUGE = "a" * 120_000
# Long enough for any message that names what it refuses, far below 120k.
SHORT = 600


def one_line(result: CliResult, code: int) -> str:
    """The single stderr line of a failed command, after checking its exit code."""
    detail = f"exit {result.returncode}, stderr:\n{result.stderr[:2000]}"
    assert result.returncode == code, detail
    assert "Traceback" not in result.stderr, detail
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, detail
    return lines[0]


def runtimectl(*args: str, env: dict[str, str] | None = None) -> CliResult:
    proc = subprocess.run(
        [str(BIN / "runtimectl"), *args],
        capture_output=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    return CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def runtimed(*args: str) -> CliResult:
    """runtimed that should refuse to start; killed (and the test failed) if it serves."""
    proc = subprocess.Popen(
        [str(BIN / "runtimed"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"runtimed {' '.join(args)} started instead of refusing")
    return CliResult(proc.returncode, out.decode(), err.decode())


@pytest.fixture
def locked_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory the test user may not enter (nor write in)."""
    path = tmp_path / "locked"
    path.mkdir()
    path.chmod(0)
    yield path
    path.chmod(0o700)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "read-only"
    path.mkdir()
    path.chmod(0o500)
    yield path
    path.chmod(0o700)


@pytest.fixture
def image(daemon: Daemon) -> str:
    return daemon.import_busybox("errbox:1")


def test_sockets_runtimectl_cannot_use_are_one_line(tmp_path: Path, locked_dir: Path) -> None:
    # A socket file no one may connect to (mode 000), and one in a directory we may not enter.
    closed = tmp_path / "closed.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(closed))
    closed.chmod(0)
    cases = [
        (["-H", f"unix://{locked_dir}/x.sock"], {}, "permission denied while trying to connect"),
        (["-H", f"unix://{closed}"], {}, "permission denied while trying to connect"),
        (["-H", "tcp://127.0.0.1:2375"], {}, "serves TCP only with mutual TLS"),
        ([], {"RUNTIMED_HOST": "tcp://127.0.0.1:2375"}, "serves TCP only with mutual TLS"),
        (["-H", "unix://"], {}, "empty socket path"),
        (["-H", "ssh://me@host"], {}, "unsupported host ssh://me@host"),
        (["-H", f"unix://{tmp_path}/absent.sock"], {}, "is runtimed running?"),
    ]
    for host, env, expected in cases:
        # docker's codes for a daemon it cannot talk to: 1, and 125 from run and create.
        for command, code in ((["ps"], 1), (["run", "busybox"], 125), (["create", "x"], 125)):
            line = one_line(runtimectl(*host, *command, env=env), code)
            assert expected in line, (host, command, line)


def test_import_of_a_file_runtimectl_cannot_read_is_one_line(
    daemon: Daemon, tmp_path: Path, locked_dir: Path
) -> None:
    secret = tmp_path / "secret.tar"
    secret.write_bytes(b"not even a tarball")
    secret.chmod(0)
    line = one_line(daemon.ctl("import", str(secret), "never:1"), 125)
    assert line == f"open {secret}: permission denied"
    line = one_line(daemon.ctl("import", str(locked_dir / "x.tar"), "never:1"), 125)
    assert line == f"open {locked_dir}/x.tar: permission denied"
    line = one_line(daemon.ctl("import", str(tmp_path), "never:1"), 125)
    assert line == f"open {tmp_path}: is a directory"
    assert daemon.ctl("image", "inspect", "never:1").returncode == 1


def test_runtimed_refuses_paths_it_may_not_use_in_one_line(
    tmp_path: Path, read_only_dir: Path, locked_dir: Path
) -> None:
    ok_data, ok_socket = tmp_path / "data", tmp_path / "run" / "d.sock"
    a_file = tmp_path / "file"
    a_file.write_text("")
    cases = [
        ("--data-dir", read_only_dir / "data", ok_socket, "permission denied"),
        ("--data-dir", locked_dir / "data", ok_socket, "permission denied"),
        ("--data-dir", a_file / "data", ok_socket, "not a directory"),
        ("--socket", ok_data, read_only_dir / "d.sock", "permission denied"),
        ("--socket", ok_data, read_only_dir / "sub" / "d.sock", "permission denied"),
        ("--socket", ok_data, locked_dir / "d.sock", "permission denied"),
        ("--socket", ok_data, a_file / "d.sock", "not a directory"),
    ]
    for flag, data_dir, sock, reason in cases:
        result = runtimed("--data-dir", str(data_dir), "--socket", str(sock))
        line = one_line(result, 1)
        named = data_dir if flag == "--data-dir" else sock
        assert line.startswith(f"runtimed: cannot use {flag} {named}: {reason}"), line
        assert not ok_socket.exists()
    result = runtimed("--data-dir", str(ok_data), "--socket", "tcp://127.0.0.1:2375")
    assert "only unix:///PATH sockets (tcp:// is for -H)" in one_line(result, 1)


def test_a_120k_name_is_refused_with_a_short_message_by_runtimectl(
    daemon: Daemon, image: str
) -> None:
    cases = [
        (("create", "--name", HUGE, image), 125, "Invalid container name (aaaa"),
        (("run", "--name", HUGE, image, "true"), 125, "Invalid container name (aaaa"),
        (("volume", "create", HUGE), 1, 'volume name "aaaa'),
        (("network", "create", HUGE), 1, "invalid network name 'aaaa"),
        (("pull", HUGE), 1, "invalid reference format"),
        (("tag", image, HUGE), 1, "invalid reference format"),
        (("rm", HUGE), 1, "No such container: aaaa"),
        (("volume", "inspect", HUGE), 1, "no such volume"),
        (("network", "inspect", HUGE), 1, "not found"),
    ]
    for args, code, expected in cases:
        result = daemon.ctl(*args)
        line = one_line(result, code)
        assert expected in line and len(line) < SHORT, (args[:2], line[:SHORT])
    listed = daemon.ok("ps", "-a", "--format", "{{.Names}}").stdout
    assert "aaaa" not in listed


def test_a_120k_name_is_invalid_argument_with_a_short_message_over_grpc(
    daemon: Daemon, image: str
) -> None:
    engine = daemon.engine()
    refused = [
        lambda: engine.CreateContainer(pb.CreateContainerRequest(image=image, name=HUGE)),
        lambda: engine.CreateVolume(pb.CreateVolumeRequest(name=HUGE)),
        lambda: engine.CreateNetwork(pb.CreateNetworkRequest(name=HUGE)),
    ]
    for call in refused:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()[:SHORT]
        assert len(err.value.details()) < SHORT
    with pytest.raises(grpc.RpcError) as err:
        engine.InspectContainer(pb.ContainerRef(id=HUGE))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(err.value.details()) < SHORT


def test_a_malformed_request_is_invalid_argument(daemon: Daemon) -> None:
    channel = daemon.channel()
    for method in (
        "/runtimed.v1.Engine/InspectContainer",
        "/runtimed.v1.Engine/CreateContainer",
        "/runtime.v1.RuntimeService/Version",
    ):
        call = channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        with pytest.raises(grpc.RpcError) as err:
            call(b"\xff\xff\xff\xff", timeout=10)  # a varint that never ends
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.value)
        assert err.value.details().startswith("malformed request: "), err.value.details()
    # The daemon is none the worse for it.
    assert daemon.cri_runtime().Version(cri.VersionRequest(), timeout=10).runtime_name

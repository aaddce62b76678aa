"""The daemon's life: rootless start, refusals that say how to fix, health, clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.daemon import BIN, Daemon
from tests.support.images import PushedImages

pytestmark = pytest.mark.integration


def test_runs_in_a_user_namespace_and_stops_cleanly() -> None:
    d = Daemon().start()
    try:
        assert stat.S_IMODE(d.socket.stat().st_mode) == 0o600
        assert stat.S_IMODE(d.socket.parent.stat().st_mode) == 0o700
        health = health_pb2_grpc.HealthStub(d.channel())
        reply = health.Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        info = d.ok("info").stdout
        uid_map = next(line for line in info.splitlines() if "UID map:" in line)
        # root of the namespace is us; 1.. come from /etc/subuid.
        assert uid_map.split(":", 1)[1].split()[:3] == ["0", str(os.getuid()), "1"]
        code = d.stop()
        assert code == 0
        assert not d.socket.exists()
        assert '"daemon_stopped"' in d.log()
    finally:
        d.cleanup()


def test_second_daemon_on_same_data_dir_is_refused() -> None:
    first = Daemon().start()
    try:
        second = subprocess.run(
            [
                str(BIN / "runtimed"),
                "--data-dir",
                str(first.data_dir),
                "--socket",
                str(first.root / "other.sock"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1
        assert "another runtimed" in second.stderr and str(first.data_dir) in second.stderr
        assert first.ok("version").returncode == 0  # the first one is unharmed
    finally:
        first.cleanup()


def test_socket_in_use_is_refused(tmp_path) -> None:  # noqa: ANN001
    first = Daemon().start()
    try:
        second = subprocess.run(
            [
                str(BIN / "runtimed"),
                "--data-dir",
                str(tmp_path / "data"),
                "-H",
                f"unix://{first.socket}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1
        assert "in use" in second.stderr
    finally:
        first.cleanup()


def test_cli_without_daemon_says_how_to_start_it(tmp_path) -> None:  # noqa: ANN001
    result = subprocess.run(
        [str(BIN / "runtimectl"), "-H", f"unix://{tmp_path}/none.sock", "images"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "is runtimed running? start it with: runtimed" in result.stderr
    env = dict(os.environ, RUNTIMED_HOST=f"unix://{tmp_path}/env.sock")
    result = subprocess.run(
        [str(BIN / "runtimectl"), "version"], capture_output=True, text=True, env=env, timeout=30
    )
    assert f"{tmp_path}/env.sock" in result.stderr


def test_bad_config_is_refused(tmp_path) -> None:  # noqa: ANN001
    cfg = tmp_path / "runtimed.toml"
    cfg.write_text('storage_driver = "zfs"\n')
    result = subprocess.run(
        [
            str(BIN / "runtimed"),
            "--config",
            str(cfg),
            "--data-dir",
            str(tmp_path / "d"),
            "--socket",
            str(tmp_path / "s.sock"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "storage_driver" in result.stderr and "zfs" in result.stderr


def test_vfs_storage_driver_by_config(tmp_path) -> None:  # noqa: ANN001
    cfg = tmp_path / "runtimed.toml"
    cfg.write_text('storage_driver = "vfs"\n')
    d = Daemon(extra_args=("--config", str(cfg))).start()
    try:
        assert "Storage Driver: vfs" in d.ok("info").stdout
    finally:
        d.cleanup()


def test_health_reports_not_serving_after_stop() -> None:
    d = Daemon().start()
    channel = grpc.insecure_channel(f"unix:{d.socket}")
    try:
        d.stop()
        with pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
    finally:
        channel.close()
        d.cleanup()


def test_a_socket_directory_the_user_named_is_used_as_it_is(tmp_path) -> None:  # noqa: ANN001
    """`--socket DIR/x.sock`: DIR keeps its mode (it may be $HOME), the socket is 0600."""
    d = Daemon()
    shared = d.root / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    d.socket = shared / "x.sock"
    try:
        d.start()
        assert stat.S_IMODE(shared.stat().st_mode) == 0o755
        assert stat.S_IMODE(d.socket.stat().st_mode) == 0o600
        assert d.ok("version").returncode == 0
    finally:
        d.cleanup()
    # Not a socket: refused, and left alone.
    precious = tmp_path / "notes.txt"
    precious.write_text("mine")
    result = _runtimed(tmp_path, "--socket", str(precious))
    assert result.returncode == 1 and "exists and is not a socket" in result.stderr
    assert precious.read_text() == "mine"


def test_a_socket_in_a_directory_of_someone_elses(tmp_path) -> None:  # noqa: ANN001
    """/tmp is root's: it is used (not chmodded, which would fail), the socket is 0600;
    where the user may not write at all, one line says why, not a traceback."""
    d = Daemon(extra_args=("--run-dir", str(tmp_path / "run")))
    d.socket = Path(f"/tmp/runtimed-test-{os.getpid()}-{tmp_path.name}.sock")
    try:
        d.start()
        assert stat.S_IMODE(Path("/tmp").stat().st_mode) == 0o1777
        assert stat.S_IMODE(d.socket.stat().st_mode) == 0o600
        assert d.ok("version").returncode == 0
    finally:
        d.cleanup()
        _stop_holder(tmp_path / "run")
    assert not d.socket.exists()
    result = _runtimed(tmp_path, "--socket", "/etc/runtimed-test.sock")
    assert result.returncode == 1, result
    assert "cannot use --socket /etc/runtimed-test.sock: permission denied" in result.stderr
    assert "Traceback" not in result.stderr
    _stop_holder(tmp_path / "etc-run")


def _runtimed(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "runtimed"),
            "--data-dir",
            str(tmp_path / "data"),
            "--run-dir",
            str(tmp_path / "etc-run"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _stop_holder(run_dir: Path) -> None:
    """The shim launcher holds the namespaces past the daemon: ours goes with the test."""
    with contextlib.suppress(OSError, ValueError):
        os.kill(int((run_dir / "ns-holder.pid").read_text()), signal.SIGKILL)


def test_no_task_is_leaked_by_pulls_and_runs(pushed_images: PushedImages) -> None:
    """asyncio reports a task that was garbage-collected while pending ("Task was
    destroyed but it is pending!"): pulls, attached runs whose start fails (the client
    hangs up while the daemon waits for the container) and runs that work leave none."""
    d = Daemon().start()
    try:
        ref = pushed_images.busybox.ref
        d.ok("pull", ref)
        for _ in range(5):
            assert d.ctl("run", "--rm", ref, "/no/such/program").returncode == 127
            assert d.ok("run", "--rm", ref, "echo", "ok").stdout == "ok\n"
            d.ok("pull", ref)
            d.ok("ps", "-a")
        assert d.stop() == 0
        assert "Task was destroyed" not in d.log(), d.log()
    finally:
        d.cleanup()

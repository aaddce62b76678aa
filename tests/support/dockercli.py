"""Real Docker clients pointed at a test daemon's Docker API socket.

The docker CLI comes from PATH (deploy/setup-host.sh installs Debian's docker.io
client where none is there); docker-compose is Debian's 1.29; docker-py is the
`docker` package of the test venv.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import socket
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.support.daemon import CliResult, Daemon
from tests.support.terminal import spawn_on_terminal


def docker_socket(daemon: Daemon) -> Path:
    """Where the daemon serves the Docker API by default: docker.sock beside its socket."""
    return daemon.socket.parent / "docker.sock"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool} is not on PATH: deploy/setup-host.sh installs it (Debian's "
            f"{'docker.io' if tool == 'docker' else tool} package); these tests drive the "
            "real client"
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DockerCli:
    """The docker CLI with DOCKER_HOST on the daemon's docker.sock and a config of its own."""

    def __init__(self, daemon: Daemon) -> None:
        self.binary = require("docker")
        self.daemon = daemon
        self.host = f"unix://{docker_socket(daemon)}"
        config = daemon.root / "docker-cli-config"
        config.mkdir(exist_ok=True)
        self.env = {
            **daemon.env,
            "DOCKER_HOST": self.host,
            "DOCKER_CONFIG": str(config),
            "DOCKER_CLI_HINTS": "false",
        }
        self.env.pop("DOCKER_CONTEXT", None)

    def __call__(
        self, *args: str, input: bytes | str | None = None, timeout: float = 120
    ) -> CliResult:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            [self.binary, *args],
            input=data,
            capture_output=True,
            timeout=timeout,
            env=self.env,
        )
        return CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def ok(self, *args: str, **kwargs: object) -> CliResult:
        result = self(*args, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, (
            f"docker {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
        return result


class PtyClient:
    """A client program on the follower side of a pty; the test types and reads the leader."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int = 24, cols: int = 80):
        self.leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = spawn_on_terminal(argv, follower, env)
        os.close(follower)
        self.screen = b""

    def type(self, text: str | bytes) -> None:
        os.write(self.leader, text.encode() if isinstance(text, str) else text)

    def expect(self, needle: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while needle.encode() not in self.screen:
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} never appeared; screen so far: {self.screen[-500:]!r}"
            ready, _, _ = select.select([self.leader], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.leader, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                self.screen += chunk
        assert needle.encode() in self.screen, f"{needle!r} not in {self.screen[-500:]!r}"
        # What came after the needle is kept for the next expect.
        head, found, self.screen = self.screen.partition(needle.encode())
        return (head + found).decode(errors="replace")

    def close(self, timeout: float = 20) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            os.close(self.leader)

"""`runtimectl run -it IMAGE sh` is a real shell on a real terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import termios
import time
from pathlib import Path

import pytest

from tests.support.daemon import BIN, Daemon
from tests.support.terminal import spawn_on_terminal
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class Terminal:
    """runtimectl on the follower side of a pty; the test types and reads on the leader."""

    def __init__(self, daemon: Daemon, *args: str, rows: int = 24, cols: int = 80) -> None:
        self.leader, follower = pty.openpty()
        self.set_size(rows, cols, follower)
        self.proc = spawn_on_terminal(
            [str(BIN / "runtimectl"), "-H", f"unix://{daemon.socket}", *args], follower, daemon.env
        )
        os.close(follower)
        self.screen = b""

    def set_size(self, rows: int, cols: int, fd: int | None = None) -> None:
        fcntl.ioctl(
            self.leader if fd is None else fd,
            termios.TIOCSWINSZ,
            struct.pack("HHHH", rows, cols, 0, 0),
        )

    def type(self, text: str) -> None:
        os.write(self.leader, text.encode())

    def expect(self, needle: str, timeout: float = 10.0) -> str:
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
        text = self.screen.decode(errors="replace")
        self.screen = b""
        return text

    def close(self) -> int:
        try:
            return self.proc.wait(15)
        finally:
            os.close(self.leader)


@pytest.fixture(scope="module")
def image(daemon: Daemon) -> str:
    return daemon.import_busybox("bb:tty")


def test_interactive_shell(daemon: Daemon, image: str) -> None:
    term = Terminal(daemon, "run", "-it", "--name", "shell", image, "sh")
    try:
        term.expect("# ")
        term.type("echo sum-$((40+2))\r")
        assert "sum-42" in term.expect("# ")
        term.type("tty\r")
        assert "/dev/pts/" in term.expect("# ")
        # ctrl-c reaches the container's foreground process, not runtimectl.
        term.type("sleep 100\r")
        time.sleep(0.3)
        term.type("\x03")
        term.expect("# ")
        assert term.proc.poll() is None
        # The window size follows the terminal.
        term.set_size(40, 100)
        term.proc.send_signal(signal.SIGWINCH)

        # The resize travels runtimectl -> daemon -> shim: ask until it has arrived.
        def resized() -> bool:
            term.type("echo size-$(stty size)-end\r")
            return "size-40 100-end" in term.expect("# ")

        wait_for(resized, timeout=10, what="the new window size in the container")
        term.type("exit 5\r")
        assert term.close() == 5
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    doc = json.loads(daemon.ok("inspect", "shell").stdout)[0]
    assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 5
    daemon.ok("rm", "shell")


def test_detach_keys_leave_the_container_running(daemon: Daemon, image: str) -> None:
    term = Terminal(daemon, "run", "-it", "--name", "detached", image, "sh")
    try:
        term.expect("# ")
        term.type("\x10\x11")  # ctrl-p ctrl-q
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    assert json.loads(daemon.ok("inspect", "detached").stdout)[0]["State"]["Running"]
    again = Terminal(daemon, "attach", "detached")
    try:
        again.type("echo back-again\r")
        assert "back-again" in again.expect("back-again")
        again.type("exit\r")
        assert again.close() == 0
    finally:
        if again.proc.poll() is None:
            again.proc.kill()
    daemon.ok("rm", "-f", "detached")

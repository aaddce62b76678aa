"""The pseudo-terminal of a `-t` container: crun sends us its master end.

crun connects to the socket given as --console-socket and passes the pty
master as SCM_RIGHTS ancillary data. The socket is bound at a name relative
to the shim's working directory (its state dir), which keeps it short for
sun_path however deep the state dir is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import termios


class ConsoleSocket:
    __slots__ = ("name", "sock")

    def __init__(self, name: str) -> None:
        self.name = name
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(name)
        self.sock.listen(1)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self, timeout: float | None = None) -> int:
        """Accept crun's connection and return the pty master (non-blocking, close-on-exec)."""
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(timeout)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 4, socket.MSG_CMSG_CLOEXEC)
        if not fds:
            raise OSError("the runtime connected to the console socket but sent no terminal")
        for extra in fds[1:]:
            os.close(extra)
        master = fds[0]
        os.set_inheritable(master, False)
        os.set_blocking(master, False)
        return master

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.name)


def set_size(master: int, rows: int, cols: int) -> None:
    """TIOCSWINSZ on the master: the kernel sends SIGWINCH to the foreground group."""
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

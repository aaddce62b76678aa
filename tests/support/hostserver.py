"""A TCP server on the host for containers to reach (host.containers.internal): on its
loopback, or on another of the host's own addresses; each connection is handed to a
function of the test's, in a thread of its own."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class LoopbackServer:
    def __init__(
        self,
        handle: Callable[[socket.socket], None],
        *,
        backlog: int = 64,
        host: str = "127.0.0.1",
    ) -> None:
        self.sock = socket.create_server((host, 0), backlog=backlog)
        self.port: int = self.sock.getsockname()[1]
        self._handle = handle
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(60)
            self._handle(conn)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""A TCP server on the host's loopback for containers to reach (host.containers.internal):
each connection is handed to a function of the test's, in a thread of its own."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class LoopbackServer:
    def __init__(self, handle: Callable[[socket.socket], None], *, backlog: int = 64) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=backlog)
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

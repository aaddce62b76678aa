"""Socket facts the network log drivers share."""

from __future__ import annotations

import select
import socket


def peer_open(sock: socket.socket) -> bool:
    """False once a stream's peer has closed (it reads EOF): sending would lose data."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        return False

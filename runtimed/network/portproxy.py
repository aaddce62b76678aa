"""The forwarder of one container's (or pod's) published ports.

    python -m runtimed.network.portproxy SPEC_JSON

The daemon binds the host-side sockets itself (so "port in use" is its error
to report, before the container starts) and hands them over as inherited
fds. This process then enters the rootless network namespace, where the
container's address is routable, and relays:

- TCP: each accepted connection gets a connection to CONTAINER_IP:PORT made
  in the rootless namespace, and two threads move the bytes with splice(2)
  through a pipe, so the data never enters Python (zero copy; this is what
  keeps a published port well above 1 Gbit/s).
- UDP: each client address gets a connected socket towards the container;
  replies go back to that client from the published socket; idle flows are
  dropped after a while.

It exits on SIGTERM, or when its lifeline file disappears. Standard library
only: it starts on every `run -p`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass

from runtimed.network import helperproc

MARKER = "runtimed.network.portproxy"
_CHUNK = 1 << 20
_F_SETPIPE_SZ = 1031
_UDP_IDLE = 60.0
_CONNECT_TIMEOUT = 5.0


def _pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, _F_SETPIPE_SZ, _CHUNK)
    return r, w


class _Connection:
    """A client socket and its peer in the container; closed when both directions end."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (client, upstream)
        self._left = 2
        self._lock = threading.Lock()

    def pump(self, src: socket.socket, dst: socket.socket) -> None:
        r, w = _pipe()
        try:
            while True:
                n = os.splice(src.fileno(), w, _CHUNK, flags=os.SPLICE_F_MOVE)
                if n == 0:
                    break
                while n:
                    n -= os.splice(r, dst.fileno(), n, flags=os.SPLICE_F_MOVE)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)  # pass the half-close on
        except OSError:
            # A reset on either side ends both directions.
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        finally:
            os.close(r)
            os.close(w)
            self._done()

    def _done(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            for sock in self.sockets:
                sock.close()


def _serve_tcp(client: socket.socket, target: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(target, timeout=_CONNECT_TIMEOUT)
    except OSError:
        # Nothing listens in the container: the client sees a reset, as with a closed port.
        with contextlib.suppress(OSError):
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        client.close()
        return
    upstream.settimeout(None)
    for sock in (client, upstream):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = _Connection(client, upstream)
    back = threading.Thread(target=conn.pump, args=(upstream, client), daemon=True)
    back.start()
    conn.pump(client, upstream)


@dataclass
class _Flow:
    sock: socket.socket
    published: socket.socket
    client: tuple
    last: float


class Proxy:
    def __init__(self, target_ip: str, listeners: list[tuple[socket.socket, str, int]]) -> None:
        self.target_ip = target_ip
        self.sel = selectors.DefaultSelector()
        self.flows: dict[tuple[int, tuple], _Flow] = {}
        for sock, proto, port in listeners:
            sock.setblocking(False)
            self.sel.register(sock, selectors.EVENT_READ, (proto, port))

    def run(self, lifeline: str) -> None:
        last_check = time.monotonic()
        while True:
            for key, _ in self.sel.select(timeout=1.0):
                data = key.data
                if isinstance(data, _Flow):
                    self._udp_reply(data)
                elif data[0] == "tcp":
                    self._accept(key.fileobj, data[1])  # type: ignore[arg-type]
                else:
                    self._udp_request(key.fileobj, data[1])  # type: ignore[arg-type]
            now = time.monotonic()
            if now - last_check >= 1.0:
                last_check = now
                if not helperproc.lifeline_alive(lifeline):
                    return
                self._expire(now)

    def _accept(self, listener: socket.socket, port: int) -> None:
        for _ in range(64):  # drain the backlog a little per wakeup
            try:
                client, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            client.setblocking(True)
            threading.Thread(
                target=_serve_tcp, args=(client, (self.target_ip, port)), daemon=True
            ).start()

    def _udp_request(self, published: socket.socket, port: int) -> None:
        try:
            data, client = published.recvfrom(65535)
        except OSError:
            return
        key = (published.fileno(), client)
        flow = self.flows.get(key)
        if flow is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.connect((self.target_ip, port))
            except OSError:
                sock.close()
                return
            sock.setblocking(False)
            flow = _Flow(sock, published, client, time.monotonic())
            self.flows[key] = flow
            self.sel.register(sock, selectors.EVENT_READ, flow)
        flow.last = time.monotonic()
        with contextlib.suppress(OSError):
            flow.sock.send(data)

    def _udp_reply(self, flow: _Flow) -> None:
        try:
            data = flow.sock.recv(65535)
        except OSError:
            return
        flow.last = time.monotonic()
        with contextlib.suppress(OSError):
            flow.published.sendto(data, flow.client)

    def _expire(self, now: float) -> None:
        for key, flow in list(self.flows.items()):
            if now - flow.last > _UDP_IDLE:
                self.sel.unregister(flow.sock)
                flow.sock.close()
                del self.flows[key]


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    listeners = []
    for item in spec["sockets"]:
        family = socket.AF_INET6 if ":" in item["host_ip"] else socket.AF_INET
        kind = socket.SOCK_STREAM if item["protocol"] == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(family, kind, fileno=item["fd"])
        listeners.append((sock, item["protocol"], int(item["container_port"])))
    try:
        helperproc.enter_netns(spec["netns"])
    except OSError as exc:
        print(exc, file=sys.stderr)
        return 1
    helperproc.detach()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    Proxy(spec["target_ip"], listeners).run(spec["lifeline"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

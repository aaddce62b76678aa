"""The forwarder of one container's (or pod's) published ports.

    python -m runtimed.network.portproxy SPEC_JSON

The daemon binds the host-side sockets itself (so "port in use" is its error
to report, before the container starts) and hands them over as inherited
fds. This process then enters the rootless network namespace, where the
container's address is routable, and relays:

- TCP: each accepted connection gets a connection to CONTAINER_IP:PORT made
  in the rootless namespace; one epoll loop moves the bytes of every
  connection with non-blocking splice(2) through a pipe per direction, so the
  data never enters Python (zero copy: this keeps a published port at several
  Gbit/s) and no thread is started per connection (starting one costs about
  a millisecond here, which capped connections at a few hundred a second).
- UDP: each client address gets a connected socket towards the container;
  replies go back to that client from the published socket; idle flows are
  dropped after a while.

In egress mode (one per daemon) it takes the containers' outbound TCP that the
rootless namespace's firewall redirects to it and opens each connection itself
from that namespace, through the uplink. A connection to the uplink's address
for the host (host.containers.internal) is opened instead from the host's
network namespace, to the spec's `host_target`: the host's loopback when
runtimed.toml allows it (host_loopback = true), else the host's own address,
where only services bound to it or to every address answer. That is where
slirp4netns and pasta would have taken it, minus their user-space TCP
(measured here: slirp4netns moves about 3 Gbit/s at full CPU; a socket pair on
loopback, several times that).

It exits on SIGTERM, or when its lifeline file disappears. Standard library
only: it starts on every `run -p`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import queue
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from runtimed.network import helperproc

MARKER = "runtimed.network.portproxy"
_CHUNK = 1 << 20
_F_SETPIPE_SZ = 1031
_UDP_IDLE = 60.0
_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_SO_ORIGINAL_DST = 80

T = TypeVar("T")


def _pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, _F_SETPIPE_SZ, _CHUNK)
    return r, w


class _Direction:
    """Bytes from `src` to `dst` through a pipe, with splice(2): they never enter Python."""

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src, self.dst = src, dst
        self.r, self.w = _pipe()
        self.buffered = 0  # bytes in the pipe, not yet written to dst
        self.eof = False
        self.done = False

    def pump(self) -> None:
        """Move what can move now without blocking; raises OSError on a broken peer."""
        while not self.done:
            if self.buffered:
                try:
                    n = os.splice(self.r, self.dst.fileno(), self.buffered, flags=_FLAGS)
                except BlockingIOError:
                    return  # dst is full: wait until it is writable
                self.buffered -= n
                continue
            if self.eof:
                with contextlib.suppress(OSError):
                    self.dst.shutdown(socket.SHUT_WR)  # pass the half-close on
                self.done = True
                return
            try:
                n = os.splice(self.src.fileno(), self.w, _CHUNK, flags=_FLAGS)
            except BlockingIOError:
                return  # nothing to read: wait until src is readable
            if n == 0:
                self.eof = True
            self.buffered += n

    @property
    def wants_read(self) -> bool:
        return not self.done and not self.eof and not self.buffered

    @property
    def wants_write(self) -> bool:
        return not self.done and self.buffered > 0

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


class _Connection:
    """A client and its peer in the container; both directions in the event loop."""

    def __init__(self, proxy: Proxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client, self.upstream = client, upstream
        self.connected = False
        self.forward = _Direction(client, upstream)
        self.backward = _Direction(upstream, client)
        self.registered: dict[int, int] = {}
        self.closed = False

    def start(self, target: tuple[str, int]) -> None:
        try:
            self.upstream.connect(target)
            self.connected = True
        except BlockingIOError:
            pass  # in progress: writable when done
        except OSError:
            self.reset()
            return
        self.update()

    def on_event(self, sock: socket.socket, mask: int) -> None:
        if not self.connected:
            err = self.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.reset()
                return
            self.connected = True
        try:
            self.forward.pump()
            self.backward.pump()
        except OSError:
            self.reset()
            return
        if self.forward.done and self.backward.done:
            self.close()
        else:
            self.update()

    def update(self) -> None:
        want = {self.client.fileno(): 0, self.upstream.fileno(): 0}
        if not self.connected:
            want[self.upstream.fileno()] = selectors.EVENT_WRITE
        else:
            for d in (self.forward, self.backward):
                if d.wants_read:
                    want[d.src.fileno()] |= selectors.EVENT_READ
                if d.wants_write:
                    want[d.dst.fileno()] |= selectors.EVENT_WRITE
        for sock in (self.client, self.upstream):
            fd = sock.fileno()
            old, new = self.registered.get(fd, 0), want[fd]
            if old == new:
                continue
            if not old:
                self.proxy.sel.register(sock, new, self)
            elif not new:
                self.proxy.sel.unregister(sock)
            else:
                self.proxy.sel.modify(sock, new, self)
            self.registered[fd] = new

    def reset(self) -> None:
        # A failure on either side ends both, as a reset: the client sees a closed port.
        with contextlib.suppress(OSError):
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.upstream):
            if self.registered.get(sock.fileno()):
                self.proxy.sel.unregister(sock)
            sock.close()
        self.forward.close()
        self.backward.close()


@dataclass
class _Flow:
    sock: socket.socket
    published: socket.socket
    client: tuple
    last: float


class Proxy:
    """One thread, one epoll: accepts, connects, splices and relays datagrams."""

    def __init__(
        self,
        target_ip: str | None,
        listeners: list[tuple[socket.socket, str, int]],
        *,
        host_address: str = "",
        host_target: str = "",
        host_socket: Callable[[], socket.socket] | None = None,
    ) -> None:
        """`target_ip` None: egress mode, each connection goes where it was going before
        the firewall redirected it here; to `host_address` it goes to `host_target` (the
        host's loopback or its own address), through a socket `host_socket` made in the
        host's namespace."""
        self.target_ip = target_ip
        self.host_address = host_address
        self.host_target = host_target
        self.host_socket = host_socket
        self.sel = selectors.DefaultSelector()
        self.flows: dict[tuple[int, tuple], _Flow] = {}
        for sock, proto, port in listeners:
            sock.setblocking(False)
            self.sel.register(sock, selectors.EVENT_READ, (proto, port))

    def run(self, lifeline: str) -> None:
        last_check = time.monotonic()
        while True:
            for key, mask in self.sel.select(timeout=1.0):
                data = key.data
                if isinstance(data, _Connection):
                    data.on_event(key.fileobj, mask)  # type: ignore[arg-type]
                elif isinstance(data, _Flow):
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
            except OSError:
                return
            upstream = None
            if self.target_ip:
                target: tuple[str, int] | None = (self.target_ip, port)
            else:
                target = _original_destination(client)
                if target is None or (target[1] == port and _is_local(target[0])):
                    client.close()  # someone dialled the egress port itself: no loops
                    continue
                if target[0] == self.host_address and self.host_socket is not None:
                    try:
                        upstream = self.host_socket()
                    except OSError:
                        client.close()
                        continue
                    target = (self.host_target, target[1])
            client.setblocking(False)
            if upstream is None:
                upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            upstream.setblocking(False)
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _Connection(self, client, upstream).start(target)

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


def _original_destination(client: socket.socket) -> tuple[str, int] | None:
    """Where a connection redirected by nftables (REDIRECT) was headed."""
    try:
        raw = client.getsockopt(socket.SOL_IP, _SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port = int.from_bytes(raw[2:4], "big")
    return socket.inet_ntoa(raw[4:8]), port


def _is_local(ip: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))
        return True
    except OSError:
        return False


class _Thread:
    """A thread that makes calls for the others, in the network namespace it is in.

    Threads have a network namespace each (sockets keep the one they were made in);
    concurrent.futures would do, but imports logging: 8 ms more per forwarder start.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[object, BaseException | None]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            fn = self._calls.get()
            try:
                self._results.put((fn(), None))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self._results.put((None, exc))

    def call(self, fn: Callable[[], T]) -> T:
        self._calls.put(fn)
        value, exc = self._results.get()
        if exc is not None:
            raise exc
        return value  # type: ignore[return-value]


def _tcp_socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    listeners = []
    for item in spec["sockets"]:
        family = socket.AF_INET6 if ":" in item["host_ip"] else socket.AF_INET
        kind = socket.SOCK_STREAM if item["protocol"] == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(family, kind, fileno=item["fd"])
        listeners.append((sock, item["protocol"], int(item["container_port"])))
    egress_port = spec.get("egress_port")
    host_target = spec.get("host_target") or ""
    host_address = (spec.get("host_address") or "") if egress_port and host_target else ""
    # To reach host_address the main thread stays in the host's namespace until after the
    # fork (threads do not survive it), to leave a thread there that makes host sockets;
    # until then a thread does the work inside. Without one, the main thread moves now.
    inside = _Thread() if host_address else None

    def in_netns(fn: Callable[[], T]) -> T:
        return inside.call(fn) if inside is not None else fn()

    try:
        in_netns(lambda: helperproc.enter_netns(spec["netns"]))
    except OSError as exc:
        print(exc, file=sys.stderr)
        return 1
    if egress_port:
        # Listen inside the rootless namespace for redirected connections.
        try:
            sock = in_netns(lambda: socket.create_server(("0.0.0.0", egress_port), backlog=4096))
        except OSError as exc:
            print(f"cannot listen on the egress port {egress_port}: {exc}", file=sys.stderr)
            return 1
        listeners.append((sock, "tcp", egress_port))
    helperproc.detach()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    host_socket: Callable[[], socket.socket] | None = None
    if host_address:
        # This thread stays in the host's namespace; the main one cannot come back to
        # it (setns there needs privileges this user lacks).
        host_socket = functools.partial(_Thread().call, _tcp_socket)
        helperproc.enter_netns(spec["netns"])  # it worked for the listener's thread
    proxy = Proxy(
        spec.get("target_ip") or None,
        listeners,
        host_address=host_address,
        host_target=host_target,
        host_socket=host_socket,
    )
    proxy.run(spec["lifeline"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

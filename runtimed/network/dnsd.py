"""The DNS resolver of user-defined networks, living in the rootless namespace.

    python -m runtimed.network.dnsd SPEC_JSON

It listens on port 53 (UDP and TCP) of the gateway address of every network
with DNS enabled, and answers from a table the daemon writes (RUN/network/
dns.json, re-read on SIGHUP):

- a client is known by its source address; it sees the names of every
  network it is attached to (the one the query came in on first) and its own
  --link aliases;
- a name shared by several containers (a network alias) answers with all of
  them, the order rotating on each query (round robin);
- anything else is forwarded to the client's own --dns servers or the
  uplink's forwarder, and the answer relayed; single-label names that are not
  ours get NXDOMAIN at once rather than a slow trip upstream.

It is a separate process so that a daemon restart does not interrupt name
resolution in running containers (the daemon starts it again if it dies).
Standard library only.

No client can take it down: TCP (for the odd large answer) serves at most
MAX_TCP_CLIENTS connections at a time and drops one idle for TCP_IDLE_TIMEOUT
(as resolvers do), so a flood of idle connections cannot take the descriptors
that UDP, upstream queries and reloads need; the soft descriptor limit is
raised to the hard one. Should descriptors run out anyway, nothing is fatal:
accept backs off (asyncio pauses it for a second), a reload that could not
read the table or acknowledge it is tried again, and UDP goes on answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import resource
import signal
import struct
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from runtimed.network import dnswire, helperproc
from runtimed.store.atomicfile import write_atomic

MARKER = "runtimed.network.dnsd"
PORT = 53
UPSTREAM_TIMEOUT = 2.0
MAX_TCP_CLIENTS = 256
TCP_IDLE_TIMEOUT = 10.0
# How often the lifeline is checked and a reload that failed is tried again.
TICK = 2.0
# Running out of these is passing: what failed for want of them is tried again.
_SCARCE = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Table:
    def __init__(self, config: dict[str, Any]) -> None:
        self.upstream: list[str] = list(config.get("upstream") or [])
        self.scopes: dict[str, dict[str, list[str]]] = config.get("scopes") or {}
        self.clients: dict[str, dict[str, Any]] = config.get("clients") or {}
        self.listen: list[str] = list(config.get("listen") or [])
        self.generation: int = int(config.get("generation") or 0)
        self._turn: dict[tuple[str, str], int] = defaultdict(int)

    def lookup(self, name: str, local: str, client: str) -> list[str] | None:
        info = self.clients.get(client) or {}
        links = info.get("links") or {}
        if name in links:
            return self._rotate(("link:" + client, name), links[name])
        networks = [local] + [n for n in info.get("networks") or [] if n != local]
        for scope in networks:
            found = (self.scopes.get(scope) or {}).get(name)
            if found:
                return self._rotate((scope, name), found)
        return None

    def _rotate(self, key: tuple[str, str], ips: list[str]) -> list[str]:
        turn = self._turn[key] % len(ips)
        self._turn[key] += 1
        return ips[turn:] + ips[:turn]

    def upstream_for(self, client: str) -> list[str]:
        own = (self.clients.get(client) or {}).get("upstream") or []
        return list(own) or self.upstream


class Resolver:
    def __init__(
        self,
        config_path: str,
        *,
        port: int = PORT,
        max_tcp_clients: int = MAX_TCP_CLIENTS,
        tcp_idle_timeout: float = TCP_IDLE_TIMEOUT,
    ) -> None:
        self.config_path = config_path
        self.port = port
        self.max_tcp_clients = max_tcp_clients
        self.tcp_idle_timeout = tcp_idle_timeout
        self.tcp_clients = 0
        self.table = Table({})
        self.servers: dict[str, tuple[asyncio.DatagramTransport, asyncio.AbstractServer]] = {}

    def load(self) -> bool:
        """Read the table; False if that should be tried again (no descriptor to spare)."""
        try:
            with open(self.config_path) as f:
                self.table = Table(json.load(f))
        except (OSError, ValueError) as exc:
            print(f"dnsd: cannot read {self.config_path}: {exc}", file=sys.stderr)
            return not (isinstance(exc, OSError) and exc.errno in _SCARCE)
        return True

    async def apply(self) -> bool:
        """Listen on exactly the configured addresses; False if that should be tried again."""
        wanted = set(self.table.listen)
        for ip in set(self.servers) - wanted:
            udp, tcp = self.servers.pop(ip)
            udp.close()
            tcp.close()
        loop = asyncio.get_running_loop()
        done = True
        for ip in wanted - set(self.servers):
            udp = None
            try:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda ip=ip: _Udp(self, ip), local_addr=(ip, self.port)
                )
                tcp = await asyncio.start_server(
                    lambda r, w, ip=ip: self._tcp(r, w, ip), ip, self.port
                )
            except OSError as exc:
                if udp is not None:
                    udp.close()
                print(f"dnsd: cannot listen on {ip}:{self.port}: {exc}", file=sys.stderr)
                done = done and exc.errno not in _SCARCE
                continue
            self.servers[ip] = (udp, tcp)  # type: ignore[assignment]
        return done

    async def handle(self, query: bytes, local: str, client: str) -> bytes:
        try:
            q = dnswire.parse_query(query)
        except dnswire.WireError:
            return dnswire.error(query, dnswire.RCODE_FORMERR)
        name = q.name.rstrip(".")
        found = self.table.lookup(name, local, client) if q.qclass == dnswire.CLASS_IN else None
        if found is not None:
            # Ours: A records; other types get an empty answer (NODATA), not an error.
            return dnswire.answer(query, q, found if q.qtype == dnswire.TYPE_A else [])
        if "." not in name:
            return dnswire.answer(query, q, [], rcode=dnswire.RCODE_NXDOMAIN)
        for server in self.table.upstream_for(client):
            reply = await _ask(server, query)
            if reply is not None:
                return reply
        return dnswire.answer(query, q, [], rcode=dnswire.RCODE_SERVFAIL)

    async def _tcp(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str
    ) -> None:
        if self.tcp_clients >= self.max_tcp_clients:
            writer.transport.abort()  # turned away at once: its descriptor is free again
            return
        self.tcp_clients += 1
        idle = self.tcp_idle_timeout
        try:
            client = writer.get_extra_info("peername")[0]
            while True:
                size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), idle))[0]
                query = await asyncio.wait_for(reader.readexactly(size), idle)
                reply = await self.handle(query, ip, client)
                writer.write(struct.pack("!H", len(reply)) + reply)
                await asyncio.wait_for(writer.drain(), idle)
        except (asyncio.IncompleteReadError, TimeoutError, OSError):
            pass
        finally:
            self.tcp_clients -= 1
            writer.transport.abort()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver, local: str) -> None:
        self.resolver = resolver
        self.local = local
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        asyncio.get_running_loop().create_task(self._reply(data, addr))

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.resolver.handle(data, self.local, addr[0])
        if reply and self.transport is not None:
            self.transport.sendto(reply, addr)


class _Once(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.reply.done():
            self.reply.set_result(data)


async def _ask(server: str, query: bytes) -> bytes | None:
    host, _, port = server.partition("#")
    loop = asyncio.get_running_loop()
    try:
        transport, proto = await loop.create_datagram_endpoint(
            _Once, remote_addr=(host, int(port or PORT))
        )
    except OSError:
        return None
    try:
        transport.sendto(query)
        reply = await asyncio.wait_for(proto.reply, UPSTREAM_TIMEOUT)
    except (TimeoutError, OSError):
        return None
    finally:
        transport.close()
    return dnswire.with_id(reply, struct.unpack("!H", query[:2])[0])


def _ack(path: str, generation: int) -> bool:
    """Tell the daemon which table is in force (it waits for this after each change);
    False if that should be tried again."""
    try:
        write_atomic(Path(path), str(generation).encode(), durable=False)
    except OSError as exc:
        print(f"dnsd: cannot acknowledge table {generation}: {exc}", file=sys.stderr)
        return False
    return True


async def _reload(resolver: Resolver, ack_path: str) -> bool:
    """Read, apply and acknowledge the table; False if something is to be tried again."""
    if not resolver.load():
        return False
    applied = await resolver.apply()
    return _ack(ack_path, resolver.table.generation) and applied


def _report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """One line per event loop error (accept out of descriptors, ...), not a traceback."""
    exc = context.get("exception")
    print(f"dnsd: {context.get('message')}{f': {exc}' if exc else ''}", file=sys.stderr)


def _raise_descriptor_limit() -> None:
    with contextlib.suppress(ValueError, OSError):
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(config_path: str, ack_path: str, resolver: Resolver) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_report)
    retry = not await _reload(resolver, ack_path)
    reload = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    loop.add_signal_handler(signal.SIGTERM, lambda: os._exit(0))
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reload.wait(), TICK)
        if not helperproc.lifeline_alive(config_path):
            return
        if reload.is_set() or retry:
            reload.clear()
            retry = not await _reload(resolver, ack_path)


def main(argv: list[str]) -> int:
    """SPEC_JSON: netns (empty: stay in this one), config, ack, log, port (tests)."""
    spec = json.loads(argv[0])
    if spec.get("netns"):
        try:
            helperproc.enter_netns(spec["netns"])
        except OSError as exc:
            print(exc, file=sys.stderr)
            return 1
    helperproc.detach(spec.get("log"))
    _raise_descriptor_limit()
    resolver = Resolver(spec["config"], port=int(spec.get("port", PORT)))
    asyncio.run(serve(spec["config"], spec["ack"], resolver))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

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
resolution in running containers. Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
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
    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self.table = Table({})
        self.servers: dict[str, tuple[asyncio.DatagramTransport, asyncio.AbstractServer]] = {}

    def load(self) -> None:
        try:
            with open(self.config_path) as f:
                self.table = Table(json.load(f))
        except (OSError, ValueError) as exc:
            print(f"dnsd: cannot read {self.config_path}: {exc}", file=sys.stderr)

    async def apply(self) -> None:
        """Listen on exactly the configured addresses."""
        wanted = set(self.table.listen)
        for ip in set(self.servers) - wanted:
            udp, tcp = self.servers.pop(ip)
            udp.close()
            tcp.close()
        loop = asyncio.get_running_loop()
        for ip in wanted - set(self.servers):
            try:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda ip=ip: _Udp(self, ip), local_addr=(ip, PORT)
                )
                tcp = await asyncio.start_server(lambda r, w, ip=ip: self._tcp(r, w, ip), ip, PORT)
            except OSError as exc:
                print(f"dnsd: cannot listen on {ip}:{PORT}: {exc}", file=sys.stderr)
                continue
            self.servers[ip] = (udp, tcp)  # type: ignore[assignment]

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
        client = writer.get_extra_info("peername")[0]
        try:
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = await self.handle(await reader.readexactly(size), ip, client)
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


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


def _ack(path: str, generation: int) -> None:
    """Tell the daemon which table is in force (it waits for this after each change)."""
    write_atomic(Path(path), str(generation).encode(), durable=False)


async def serve(config_path: str, ack_path: str) -> None:
    resolver = Resolver(config_path)
    resolver.load()
    await resolver.apply()
    _ack(ack_path, resolver.table.generation)
    loop = asyncio.get_running_loop()
    reload = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    loop.add_signal_handler(signal.SIGTERM, lambda: os._exit(0))
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reload.wait(), 2.0)
        if not helperproc.lifeline_alive(config_path):
            return
        if reload.is_set():
            reload.clear()
            resolver.load()
            await resolver.apply()
            _ack(ack_path, resolver.table.generation)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    try:
        helperproc.enter_netns(spec["netns"])
    except OSError as exc:
        print(exc, file=sys.stderr)
        return 1
    helperproc.detach(spec.get("log"))
    asyncio.run(serve(spec["config"], spec["ack"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

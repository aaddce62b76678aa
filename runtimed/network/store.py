"""Networks, endpoints and published ports in SQLite (network.db in the data dir).

An endpoint is one container's (or pod's) attachment to one network, with the
address IPAM gave it. UNIQUE(network_id, ip) is the guarantee that no address
is handed out twice, whatever the daemon does and across restarts; each
allocation happens in one IMMEDIATE transaction, so two allocations cannot
both see an address free. A cursor per network makes allocation rotate
through the range instead of handing a just-freed address straight back.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtimed.errors import AlreadyExists, FailedPrecondition, NotFound
from runtimed.store.sqlite import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL,
    cursor TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS endpoints (
    network_id TEXT NOT NULL REFERENCES networks(id),
    owner_id TEXT NOT NULL,
    ip TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (network_id, owner_id),
    UNIQUE (network_id, ip)
);
CREATE INDEX IF NOT EXISTS endpoints_by_owner ON endpoints(owner_id);
-- What a container asked for, resolved at create (mode, the peer of container:X,
-- the ports to publish with -P expanded).
CREATE TABLE IF NOT EXISTS owners (
    owner_id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ports (
    owner_id TEXT NOT NULL,
    protocol TEXT NOT NULL,
    container_port INTEGER NOT NULL,
    host_ip TEXT NOT NULL,
    host_port INTEGER NOT NULL,
    PRIMARY KEY (owner_id, protocol, container_port, host_ip, host_port)
);
"""


@dataclass
class NetworkRecord:
    id: str
    name: str
    driver: str = "bridge"
    subnet: str = ""
    ip_range: str = ""
    gateway: str = ""
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    created: int = 0
    bridge: str = ""  # interface inside the rootless namespace
    dns_enabled: bool = True
    builtin: bool = False  # the default `bridge` and the pod network: never removed
    mtu: int = 65520

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    def to_doc(self) -> str:
        doc = {k: v for k, v in self.__dict__.items() if k not in ("id", "name")}
        return json.dumps(doc)

    @classmethod
    def from_row(cls, ident: str, name: str, doc: str) -> NetworkRecord:
        return cls(id=ident, name=name, **json.loads(doc))


def mac_for(ip: str) -> str:
    """A locally administered MAC derived from the address, as docker does (02:42:...)."""
    packed = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in packed)


@dataclass
class Endpoint:
    network_id: str
    owner_id: str  # container id, or a pod's sandbox id
    ip: str
    mac: str = ""  # one the user asked for (--mac-address); else derived, see mac_address
    aliases: list[str] = field(default_factory=list)
    ifname: str = "eth0"  # inside the container
    static_ip: bool = False
    kind: str = "container"  # container | pod

    @property
    def mac_address(self) -> str:
        return self.mac or mac_for(self.ip)

    def to_doc(self) -> str:
        return json.dumps(
            {
                "mac": self.mac,
                "aliases": self.aliases,
                "ifname": self.ifname,
                "static_ip": self.static_ip,
                "kind": self.kind,
            }
        )

    @classmethod
    def from_row(cls, network_id: str, owner_id: str, ip: str, doc: str) -> Endpoint:
        return cls(network_id=network_id, owner_id=owner_id, ip=ip, **json.loads(doc))


@dataclass(frozen=True)
class PortRecord:
    protocol: str
    container_port: int
    host_ip: str
    host_port: int


class NetworkStore:
    def __init__(self, path: Path) -> None:
        self._database = Database(path, schema=_SCHEMA, named_rows=False, foreign_keys=False)
        self._tx = self._database.transaction
        self._removal = self._database.removal
        self._query = self._database.fetchall

    def close(self) -> None:
        self._database.close()

    # -- networks ----------------------------------------------------------------------

    def add_network(self, net: NetworkRecord) -> None:
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO networks (id, name, doc) VALUES (?, ?, ?)",
                    (net.id, net.name, net.to_doc()),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"network with name {net.name} already exists") from None

    def networks(self) -> list[NetworkRecord]:
        rows = self._query("SELECT id, name, doc FROM networks ORDER BY name")
        return [NetworkRecord.from_row(*r) for r in rows]

    def network(self, ident: str) -> NetworkRecord | None:
        rows = self._query(
            "SELECT id, name, doc FROM networks WHERE id = ? OR name = ?", (ident,) * 2
        )
        return NetworkRecord.from_row(*rows[0]) if rows else None

    def remove_network(self, ident: str) -> None:
        def remove(db: sqlite3.Connection) -> None:
            used = db.execute("SELECT 1 FROM endpoints WHERE network_id = ?", (ident,)).fetchone()
            if used:
                raise FailedPrecondition("network has active endpoints")
            db.execute("DELETE FROM networks WHERE id = ?", (ident,))

        self._removal(remove)

    # -- endpoints and IPAM ------------------------------------------------------------

    def allocate(
        self,
        endpoint: Endpoint,
        net: NetworkRecord,
        requested: str = "",
    ) -> Endpoint:
        """Record `endpoint` with `requested` or the next free address of the network: one
        transaction (one fsync)."""
        with self._tx() as db:
            taken = {
                r[0] for r in db.execute("SELECT ip FROM endpoints WHERE network_id = ?", (net.id,))
            }
            row = db.execute("SELECT cursor FROM networks WHERE id = ?", (net.id,)).fetchone()
            if row is None:
                raise NotFound(f"network {net.name} not found")
            if requested:
                if requested in taken:
                    raise AlreadyExists(
                        f"Address already in use: {requested} is taken on network {net.name}"
                    )
                ip = requested
            else:
                ip = _next_free(net, taken, row[0])
                db.execute("UPDATE networks SET cursor = ? WHERE id = ?", (ip, net.id))
            endpoint.ip = ip
            try:
                db.execute(
                    "INSERT INTO endpoints (network_id, owner_id, ip, doc) VALUES (?, ?, ?, ?)",
                    (net.id, endpoint.owner_id, ip, endpoint.to_doc()),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(
                    f"endpoint with name {endpoint.owner_id[:12]} already exists in network "
                    f"{net.name}"
                ) from None
        return endpoint

    def release(self, owner_id: str, network_id: str | None = None) -> None:
        if network_id is None:
            sql, args = "DELETE FROM endpoints WHERE owner_id = ?", (owner_id,)
        else:
            sql = "DELETE FROM endpoints WHERE owner_id = ? AND network_id = ?"
            args = (owner_id, network_id)
        self._removal(lambda db: db.execute(sql, args))

    def endpoints(
        self, *, owner_id: str | None = None, network_id: str | None = None
    ) -> list[Endpoint]:
        sql = "SELECT network_id, owner_id, ip, doc FROM endpoints"
        where, args = [], []
        if owner_id is not None:
            where.append("owner_id = ?")
            args.append(owner_id)
        if network_id is not None:
            where.append("network_id = ?")
            args.append(network_id)
        if where:
            sql += " WHERE " + " AND ".join(where)
        # rowid order: the order of attachment, so the first network stays eth0.
        return [Endpoint.from_row(*r) for r in self._query(sql + " ORDER BY rowid", tuple(args))]

    # -- per-owner settings ------------------------------------------------------------

    def set_owner(self, owner_id: str, doc: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO owners (owner_id, doc) VALUES (?, ?)",
                (owner_id, json.dumps(doc)),
            )

    def owner(self, owner_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT doc FROM owners WHERE owner_id = ?", (owner_id,))
        return json.loads(rows[0][0]) if rows else None

    def forget_owner(self, owner_id: str) -> None:
        def forget(db: sqlite3.Connection) -> None:
            for table in ("owners", "endpoints", "ports"):
                db.execute(f"DELETE FROM {table} WHERE owner_id = ?", (owner_id,))

        self._removal(forget)

    # -- published ports ---------------------------------------------------------------

    def set_ports(self, owner_id: str, ports: list[PortRecord]) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM ports WHERE owner_id = ?", (owner_id,))
            db.executemany(
                "INSERT OR IGNORE INTO ports VALUES (?, ?, ?, ?, ?)",
                [(owner_id, p.protocol, p.container_port, p.host_ip, p.host_port) for p in ports],
            )

    def ports(self, owner_id: str) -> list[PortRecord]:
        rows = self._query(
            "SELECT protocol, container_port, host_ip, host_port FROM ports WHERE owner_id = ? "
            "ORDER BY container_port, protocol, host_ip",
            (owner_id,),
        )
        return [PortRecord(*r) for r in rows]

    def port_owners(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT owner_id FROM ports")]


def _next_free(net: NetworkRecord, taken: set[str], cursor: str) -> str:
    subnet = ipaddress.ip_network(net.subnet)
    pool = ipaddress.ip_network(net.ip_range) if net.ip_range else subnet
    first, last = int(pool.network_address), int(pool.broadcast_address)
    if pool.num_addresses > 2:
        first, last = first + 1, last - 1  # not the network or broadcast address
    first = max(first, int(subnet.network_address) + 1)
    last = min(last, int(subnet.broadcast_address) - 1)
    size = last - first + 1
    skip = set(taken) | {net.gateway}
    start = int(ipaddress.ip_address(cursor)) + 1 if cursor else first
    for step in range(max(size, 0)):
        candidate = first + (start - first + step) % size
        text = str(ipaddress.ip_address(candidate))
        if text not in skip:
            return text
    raise FailedPrecondition(
        f"no free address left on network {net.name} ({pool}): remove or disconnect containers"
    )

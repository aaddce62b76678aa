"""Published ports: validate, bind the host side, and hand the sockets to a forwarder.

The daemon binds in the host's network namespace itself: "port in use" and
"privileged port" become clear errors before the container starts, and a
random port (-p CTRPORT) is whatever the kernel gives. The bound sockets are
then passed to a `portproxy` process (one per container or pod) that lives
in the rootless namespace and relays to the container's address.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtimed.errors import FailedPrecondition, InvalidArgument
from runtimed.network import helperproc, portproxy
from runtimed.network.store import PortRecord

PROTOCOLS = ("tcp", "udp")
_RANDOM_TRIES = 20


@dataclass(frozen=True)
class PortSpec:
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""
    host_port: int = 0  # 0: a random free port
    host_port_end: int = 0  # > host_port: the first free port of the range

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PortSpec:
        return cls(
            container_port=int(data.get("container_port") or 0),
            protocol=(data.get("protocol") or "tcp").lower(),
            host_ip=data.get("host_ip") or "",
            host_port=int(data.get("host_port") or 0),
            host_port_end=int(data.get("host_port_end") or 0),
        )

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def validate(specs: list[PortSpec]) -> None:
    for spec in specs:
        if spec.protocol not in PROTOCOLS:
            raise InvalidArgument(f"invalid protocol {spec.protocol!r}: use tcp or udp")
        if not 0 < spec.container_port < 65536:
            raise InvalidArgument(f"invalid container port {spec.container_port}")
        if not 0 <= spec.host_port < 65536:
            raise InvalidArgument(f"invalid host port {spec.host_port}")
        if spec.host_port_end and not 0 < spec.host_port <= spec.host_port_end < 65536:
            raise InvalidArgument(f"invalid host port range {spec.host_port}-{spec.host_port_end}")
        if spec.host_ip:
            try:
                socket.inet_pton(_family(spec.host_ip), spec.host_ip)
            except OSError:
                raise InvalidArgument(f"invalid host IP {spec.host_ip!r}") from None


def exposed_ports(image_config: dict[str, Any]) -> list[PortSpec]:
    """-P: every port the image EXPOSEs, each to a random host port."""
    specs = []
    for key in sorted((image_config.get("ExposedPorts") or {}).keys()):
        port, _, proto = str(key).partition("/")
        with contextlib.suppress(ValueError):
            specs.append(PortSpec(container_port=int(port), protocol=(proto or "tcp").lower()))
    return specs


def unprivileged_port_start(
    path: Path = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start"),
) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 1024


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _bind_one(ip: str, port: int, protocol: str) -> socket.socket:
    family = _family(ip)
    sock = socket.socket(family, socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM)
    try:
        if protocol == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((ip, port))
        if protocol == "tcp":
            sock.listen(4096)
    except BaseException:
        sock.close()
        raise
    return sock


class PortInUse(FailedPrecondition):
    """The host port is taken: a range (-p 8000-8010:80) moves on to its next port."""


def _explain(exc: OSError, ip: str, port: int, protocol: str) -> Exception:
    where = f"{ip}:{port}/{protocol}" if ":" not in ip else f"[{ip}]:{port}/{protocol}"
    if exc.errno == errno.EADDRINUSE:
        return PortInUse(
            f"cannot publish {where}: the port is already in use on the host "
            "(by another container or process); pick another host port"
        )
    if exc.errno == errno.EACCES:
        return FailedPrecondition(
            f"cannot publish {where}: rootless containers cannot bind privileged ports; "
            f"allow it with `sudo sysctl net.ipv4.ip_unprivileged_port_start={port}` "
            "or pick a higher host port"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return InvalidArgument(f"cannot publish {where}: {ip} is not an address of this host")
    return FailedPrecondition(f"cannot publish {where}: {exc.strerror or exc}")


def bind(specs: list[PortSpec]) -> list[tuple[socket.socket, PortRecord]]:
    """Bind every spec (both IPv4 and IPv6 wildcards when no host IP is given).

    All or nothing: on an error every socket bound so far is closed.
    """
    start = unprivileged_port_start()
    bound: list[tuple[socket.socket, PortRecord]] = []
    try:
        for spec in specs:
            if 0 < spec.host_port < start:
                raise FailedPrecondition(
                    f"cannot publish port {spec.host_port}: it is below "
                    f"net.ipv4.ip_unprivileged_port_start ({start}), and rootless containers "
                    f"cannot bind privileged ports; allow it with `sudo sysctl "
                    f"net.ipv4.ip_unprivileged_port_start={spec.host_port}` or pick a host "
                    f"port >= {start}"
                )
            bound += _bind_first_free(spec) if spec.host_port_end else _bind_spec(spec)
    except BaseException:
        for sock, _ in bound:
            sock.close()
        raise
    return bound


def _bind_first_free(spec: PortSpec) -> list[tuple[socket.socket, PortRecord]]:
    """docker's -p 8000-8010:80: the first port of the range that is free."""
    for port in range(spec.host_port, spec.host_port_end + 1):
        try:
            return _bind_spec(dataclasses.replace(spec, host_port=port, host_port_end=0))
        except PortInUse:  # on IPv4 or IPv6: try the next one
            continue
    raise FailedPrecondition(
        f"cannot publish {spec.container_port}/{spec.protocol}: every host port of "
        f"{spec.host_port}-{spec.host_port_end} is already in use"
    )


def _bind_spec(spec: PortSpec) -> list[tuple[socket.socket, PortRecord]]:
    if spec.host_ip:
        try:
            sock = _bind_one(spec.host_ip, spec.host_port, spec.protocol)
        except OSError as exc:
            raise _explain(exc, spec.host_ip, spec.host_port, spec.protocol) from None
        port = sock.getsockname()[1]
        return [(sock, PortRecord(spec.protocol, spec.container_port, spec.host_ip, port))]
    # Wildcard: IPv4, then IPv6 on the same port (a random port must be free on both).
    for _ in range(_RANDOM_TRIES if spec.host_port == 0 else 1):
        try:
            v4 = _bind_one("0.0.0.0", spec.host_port, spec.protocol)
        except OSError as exc:
            raise _explain(exc, "0.0.0.0", spec.host_port, spec.protocol) from None
        port = v4.getsockname()[1]
        out = [(v4, PortRecord(spec.protocol, spec.container_port, "0.0.0.0", port))]
        try:
            v6 = _bind_one("::", port, spec.protocol)
        except OSError as exc:
            if exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                return out  # no IPv6 on this host
            v4.close()
            if exc.errno == errno.EADDRINUSE and spec.host_port == 0:
                continue
            raise _explain(exc, "::", port, spec.protocol) from None
        return out + [(v6, PortRecord(spec.protocol, spec.container_port, "::", port))]
    raise FailedPrecondition("cannot find a free host port for both IPv4 and IPv6; try again")


def bind_loopback(specs: list[PortSpec]) -> list[tuple[socket.socket, PortRecord]]:
    """Bind each spec's host port on the loopback of the calling thread's network namespace.

    Run in the rootless namespace, so that a pod's hostPort also answers on
    127.0.0.1:HOSTPORT there, where a kubelet started in `runtimectl unshare
    --rootless-netns` looks for it (as it would on a node). All or nothing.
    """
    bound: list[tuple[socket.socket, PortRecord]] = []
    seen = set()
    try:
        for spec in specs:
            ip = "::1" if ":" in spec.host_ip else "127.0.0.1"
            if not spec.host_port or (ip, spec.host_port, spec.protocol) in seen:
                continue  # the same port on several host addresses: once here
            seen.add((ip, spec.host_port, spec.protocol))
            try:
                sock = _bind_one(ip, spec.host_port, spec.protocol)
            except OSError as exc:
                where = f"{ip}:{spec.host_port}/{spec.protocol}"
                raise FailedPrecondition(
                    f"cannot publish {where} in runtimed's network namespace: "
                    f"{exc.strerror or exc} (a host-network pod, or a process started with "
                    "`runtimectl unshare --rootless-netns`, may be using it)"
                ) from None
            bound.append((sock, PortRecord(spec.protocol, spec.container_port, ip, spec.host_port)))
    except BaseException:
        for sock, _ in bound:
            sock.close()
        raise
    return bound


def start_forwarder(
    netns: Path, target_ip: str, bound: list[tuple[socket.socket, PortRecord]], lifeline: Path
) -> int:
    """Spawn the forwarder for these sockets; returns its pid. The sockets stay ours to close."""
    lifeline.parent.mkdir(parents=True, exist_ok=True)
    lifeline.touch()
    spec = {
        "netns": str(netns),
        "target_ip": target_ip,
        "lifeline": str(lifeline),
        "sockets": [
            {
                "fd": sock.fileno(),
                "protocol": rec.protocol,
                "container_port": rec.container_port,
                "host_ip": rec.host_ip,
            }
            for sock, rec in bound
        ],
    }
    argv = helperproc.python_module(portproxy.MARKER) + [json.dumps(spec)]
    return helperproc.spawn(argv, pass_fds=tuple(sock.fileno() for sock, _ in bound))


def format_ports(ports: list[PortRecord]) -> str:
    """docker ps PORTS: 0.0.0.0:8080->80/tcp, :::8080->80/tcp."""
    parts = []
    for p in ports:
        host = f"[{p.host_ip}]" if ":" in p.host_ip and p.host_ip != "::" else p.host_ip
        parts.append(f"{host}:{p.host_port}->{p.container_port}/{p.protocol}")
    return ", ".join(parts)

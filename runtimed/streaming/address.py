"""Where the streaming server listens: `stream_address` in runtimed.toml."""

from __future__ import annotations

import ipaddress

from runtimed.errors import InvalidArgument

DEFAULT_ADDRESS = "127.0.0.1:0"


def parse_address(address: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [ADDR]:PORT); port 0 picks a free port. Loopback only: the
    server speaks plain HTTP and its URLs carry no credential but their tokens."""
    host, sep, port_text = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        if not sep or not host:
            raise ValueError("expected HOST:PORT")
        port = int(port_text)
        if not 0 <= port < 65536:
            raise ValueError(f"port {port} is out of range")
        ip = ipaddress.ip_address(host)
    except ValueError as exc:
        raise InvalidArgument(f"stream_address: {address!r}: {exc}") from None
    if not ip.is_loopback:
        raise InvalidArgument(
            f"stream_address: {address!r} is not a loopback address: the streaming server "
            "serves plain HTTP, so it listens on loopback only"
        )
    return host, port

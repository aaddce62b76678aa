"""Just enough of the DNS wire format (RFC 1035) for a resolver that answers A records.

Queries are parsed for their first question; answers carry A records whose
owner name points back at that question. Everything else is forwarded
untouched, so nothing here needs to understand other record types.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
RCODE_OK, RCODE_FORMERR, RCODE_SERVFAIL, RCODE_NXDOMAIN = 0, 1, 2, 3
_HEADER = struct.Struct("!HHHHHH")


class WireError(ValueError):
    """The message is not a DNS query we can read."""


@dataclass(frozen=True)
class Question:
    ident: int
    flags: int
    name: str  # lower case, no trailing dot
    qtype: int
    qclass: int
    end: int  # offset just past the question in the query


def parse_query(data: bytes) -> Question:
    if len(data) < _HEADER.size:
        raise WireError("short message")
    ident, flags, qdcount, _an, _ns, _ar = _HEADER.unpack_from(data)
    if flags & 0x8000 or qdcount < 1:
        raise WireError("not a query")
    labels: list[str] = []
    pos = _HEADER.size
    while True:
        if pos >= len(data):
            raise WireError("truncated name")
        length = data[pos]
        pos += 1
        if length == 0:
            break
        if length & 0xC0:
            raise WireError("compressed name in a question")
        label = data[pos : pos + length]
        if len(label) != length:
            raise WireError("truncated label")
        labels.append(label.decode("ascii", "replace"))
        pos += length
    if pos + 4 > len(data):
        raise WireError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    return Question(ident, flags, ".".join(labels).lower(), qtype, qclass, pos + 4)


def answer(query: bytes, q: Question, addresses: list[str], *, rcode: int = RCODE_OK) -> bytes:
    """A response to `query` with an A record per address (none for NODATA/NXDOMAIN)."""
    # QR, opcode and RD from the query, AA and RA set.
    flags = 0x8000 | (q.flags & 0x7900) | 0x0400 | 0x0080 | rcode
    records = b"".join(
        struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, 600, 4) + ipaddress.IPv4Address(ip).packed
        for ip in addresses
    )
    header = _HEADER.pack(q.ident, flags, 1, len(addresses), 0, 0)
    return header + query[_HEADER.size : q.end] + records


def error(query: bytes, rcode: int) -> bytes:
    """A bare error response (for queries we could not even parse the question of)."""
    if len(query) < 4:
        return b""
    ident, flags = struct.unpack_from("!HH", query)
    return _HEADER.pack(ident, 0x8000 | (flags & 0x7900) | 0x0080 | rcode, 0, 0, 0, 0)


def with_id(message: bytes, ident: int) -> bytes:
    return struct.pack("!H", ident) + message[2:]


def encode_query(name: str, qtype: int = TYPE_A, ident: int = 0x1234) -> bytes:
    """A recursive query for `name` (used by tests and the health check)."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".") if p)
    return _HEADER.pack(ident, 0x0100, 1, 0, 0, 0) + qname + b"\0" + struct.pack("!HH", qtype, 1)


def decode_answers(message: bytes) -> tuple[int, list[str]]:
    """rcode and A-record addresses of a response (tests and diagnostics)."""
    _id, flags, qdcount, ancount, _ns, _ar = _HEADER.unpack_from(message)
    pos = _HEADER.size
    for _ in range(qdcount):
        pos = _skip_name(message, pos) + 4
    found: list[str] = []
    for _ in range(ancount):
        pos = _skip_name(message, pos)
        rtype, _cls, _ttl, length = struct.unpack_from("!HHIH", message, pos)
        pos += 10
        if rtype == TYPE_A and length == 4:
            found.append(str(ipaddress.IPv4Address(message[pos : pos + 4])))
        pos += length
    return flags & 0xF, found


def _skip_name(message: bytes, pos: int) -> int:
    while True:
        length = message[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        pos += 1
        if length == 0:
            return pos
        pos += length

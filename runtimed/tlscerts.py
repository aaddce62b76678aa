"""A CA, a daemon certificate and a client certificate for mutual TLS (`runtimectl tls
generate`), made with the `cryptography` package (imported only by that command).

ECDSA P-256 keys (quick to make, and what Go's docker CLI and grpc both take). The daemon's
certificate names its hosts as subjectAltNames (DNS names and IP addresses: clients no
longer read the common name) and is for serverAuth; the client's is for clientAuth. The
files are named as docker's guide names them, so the client's three (ca.pem, cert.pem,
key.pem) make a directory usable as RUNTIMED_CERT_PATH and DOCKER_CERT_PATH alike.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from runtimed.errors import AlreadyExists, InvalidArgument
from runtimed.hosts import CA_FILE, CERT_FILE, KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE

CA_KEY_FILE = "ca-key.pem"
DEFAULT_DAYS = 365
_CLOCK_SKEW = datetime.timedelta(minutes=5)  # valid a little before "now", for skewed clocks


class Issued(NamedTuple):
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "runtimed"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity(
    days: int, not_before: datetime.datetime | None, not_after: datetime.datetime | None
) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    start = not_before or now - _CLOCK_SKEW
    return start, not_after or now + datetime.timedelta(days=days)


def make_ca(
    common_name: str = "runtimed CA",
    *,
    days: int = DEFAULT_DAYS,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> Issued:
    """A self-signed certificate authority."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days, not_before, not_after)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue(
    ca: Issued,
    common_name: str,
    *,
    server: bool,
    hosts: Sequence[str] = (),
    days: int = DEFAULT_DAYS,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> Issued:
    """A leaf certificate signed by `ca`: serverAuth naming `hosts`, or clientAuth."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days, not_before, not_after)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False
        )
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if not host or any(c.isspace() or c in "/:@" for c in host):
        raise InvalidArgument(f"--host {host!r}: not a host name or IP address")
    return x509.DNSName(host)


def default_hosts() -> list[str]:
    """This machine as clients may name it: its host name, localhost and loopback."""
    names = [socket.gethostname(), "localhost", "127.0.0.1", "::1"]
    return list(dict.fromkeys(n for n in names if n))


def _write(path: Path, data: bytes, mode: int) -> None:
    """Whole file or nothing (temporary name, fsync, rename), with its mode from the start."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def generate(
    directory: Path,
    hosts: Sequence[str],
    *,
    days: int = DEFAULT_DAYS,
    force: bool = False,
) -> list[Path]:
    """Write a CA, the daemon's certificate for `hosts` and a client certificate into
    `directory`; keys 0600. Existing files are kept unless `force`. Returns the paths."""
    if days < 1:
        raise InvalidArgument(f"--days {days}: must be at least 1")
    names = [CA_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE, CERT_FILE, KEY_FILE]
    paths = [directory / n for n in names]
    present = [p for p in paths if p.exists()]
    if present and not force:
        raise AlreadyExists(
            f"{present[0]} exists: pick another --dir, or --force to replace the certificates"
        )
    all_hosts = list(dict.fromkeys([*hosts, *default_hosts()]))
    ca = make_ca(days=days)
    daemon = issue(ca, all_hosts[0], server=True, hosts=all_hosts, days=days)
    client = issue(ca, "runtimed client", server=False, days=days)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    contents = [
        (ca.cert_pem(), 0o644),
        (ca.key_pem(), 0o600),
        (daemon.cert_pem(), 0o644),
        (daemon.key_pem(), 0o600),
        (client.cert_pem(), 0o644),
        (client.key_pem(), 0o600),
    ]
    for path, (data, mode) in zip(paths, contents, strict=True):
        _write(path, data, mode)
    return paths

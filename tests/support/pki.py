"""Certificates for the mutual-TLS tests: a CA with a daemon and a client certificate, and
the clients the daemon must refuse (self-signed, expired, from another CA)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from runtimed import tlscerts
from runtimed.hosts import TlsFiles


@dataclass(frozen=True)
class Pki:
    root: Path
    server: TlsFiles  # the daemon's: ca.pem, server-cert.pem, server-key.pem
    client: TlsFiles  # a good client's: ca.pem, cert.pem, key.pem (a RUNTIMED_CERT_PATH dir)
    refused: dict[str, TlsFiles]  # name -> a client the daemon must refuse

    @property
    def cert_dir(self) -> Path:
        return self.client.ca.parent


def _write(directory: Path, ca: tlscerts.Issued, leaf: tlscerts.Issued) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    files.ca.write_bytes(ca.cert_pem())
    files.cert.write_bytes(leaf.cert_pem())
    files.key.write_bytes(leaf.key_pem())
    files.key.chmod(0o600)
    return files


def make_pki(root: Path) -> Pki:
    """`runtimectl tls generate`'s files, plus refused clients that trust the right CA."""
    tlscerts.generate(root / "good", ["127.0.0.1"])
    good = root / "good"
    server = TlsFiles(good / "ca.pem", good / "server-cert.pem", good / "server-key.pem")
    client = TlsFiles(good / "ca.pem", good / "cert.pem", good / "key.pem")
    ca_pem = server.ca.read_bytes()
    # The daemon's CA, as the refused clients trust it (they fail on their own certificate).
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca = tlscerts.Issued(
        x509.load_pem_x509_certificate(ca_pem),
        serialization.load_pem_private_key((good / "ca-key.pem").read_bytes(), None),  # type: ignore[arg-type]
    )
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    expired = tlscerts.issue(
        ca,
        "expired client",
        server=False,
        not_before=past,
        not_after=past + datetime.timedelta(days=1),
    )
    other_ca = tlscerts.make_ca("another CA")
    foreign = tlscerts.issue(other_ca, "foreign client", server=False)
    self_signed = tlscerts.make_ca("self-signed client")
    refused = {
        "expired": _write(root / "expired", ca, expired),
        "another CA": _write(root / "foreign", ca, foreign),
        "self-signed": _write(root / "self-signed", ca, self_signed),
    }
    return Pki(root=root, server=server, client=client, refused=refused)

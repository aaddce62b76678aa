"""TLS settings for a tcp:// daemon (docker-py's `docker.tls.TLSConfig`, for mutual TLS)."""

from __future__ import annotations

from pathlib import Path

from runtimed.client.errors import TLSParameterError
from runtimed.hosts import TlsFiles


class TLSConfig:
    """`TLSConfig(client_cert=("cert.pem", "key.pem"), ca_cert="ca.pem")`.

    runtimed serves TCP only with mutual TLS, so all three files are needed; the daemon's
    certificate is checked against `ca_cert` and the host name or address dialled.
    """

    def __init__(
        self,
        client_cert: tuple[str | Path, str | Path],
        ca_cert: str | Path,
        verify: bool = True,
    ) -> None:
        if not verify:
            raise TLSParameterError("runtimed's TLS is always verified (verify=False is refused)")
        cert, key = client_cert
        self.files = TlsFiles(Path(ca_cert), Path(cert), Path(key))
        for what, path in zip(("ca_cert", "client cert", "client key"), self.files, strict=True):
            if not path.is_file():
                raise TLSParameterError(f"{what} {path}: no such file")

    @classmethod
    def from_files(cls, files: TlsFiles) -> TLSConfig:
        return cls(client_cert=(files.cert, files.key), ca_cert=files.ca)

    def credentials(self) -> object:
        import grpc

        return grpc.ssl_channel_credentials(
            root_certificates=self.files.ca.read_bytes(),
            private_key=self.files.key.read_bytes(),
            certificate_chain=self.files.cert.read_bytes(),
        )

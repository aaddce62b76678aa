"""Where a client connects: base_url and TLS (or the environment) to a grpc channel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtimed.client.errors import TLSParameterError
from runtimed.client.tls import TLSConfig
from runtimed.errors import InvalidArgument
from runtimed.hosts import Host, client_settings, parse_host
from runtimed.paths import default_socket

MAX_MESSAGE = 16 * 1024 * 1024  # image inspect and long listings exceed grpc's 4 MiB
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]


def resolve(base_url: str | None, tls: TLSConfig | None) -> tuple[Host, TLSConfig | None]:
    try:
        host = parse_host(base_url) if base_url else Host("unix", path=str(default_socket()))
    except InvalidArgument as exc:
        raise TLSParameterError(exc.message) from None
    if host.is_tcp and tls is None:
        raise TLSParameterError(
            f"{host}: runtimed serves TCP only with mutual TLS; pass tls=TLSConfig(...)"
        )
    return host, tls


def from_env(environment: Mapping[str, str] | None) -> tuple[Host, TLSConfig | None]:
    """RUNTIMED_HOST, RUNTIMED_TLS_VERIFY, RUNTIMED_CERT_PATH (as runtimectl reads them)."""
    try:
        settings = client_settings(environ=dict(environment) if environment is not None else None)
    except InvalidArgument as exc:
        raise TLSParameterError(exc.message) from None
    return settings.host, TLSConfig.from_files(settings.tls) if settings.tls else None


def open_channel(host: Host, tls: TLSConfig | None, *, aio: bool) -> Any:
    import grpc

    module: Any = grpc.aio if aio else grpc
    if not host.is_tcp:
        return module.insecure_channel(f"unix:{host.path}", options=OPTIONS)
    assert tls is not None
    return module.secure_channel(host.authority, tls.credentials(), options=OPTIONS)

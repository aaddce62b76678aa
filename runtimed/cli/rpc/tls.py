"""runtimectl's TLS to a tcp:// daemon: stdlib ssl, ALPN h2, our client certificate.

Imported only for tcp:// hosts (ssl costs a unix-socket command time it need not pay).
The connection has a reader thread and writers on other threads, and OpenSSL does not
allow one SSL object to be used from two threads at once, so this is an SSLObject over
memory BIOs: every use of it holds `_lock`, and socket I/O happens outside that lock.
"""

from __future__ import annotations

import io
import socket
import ssl
import threading

from runtimed.cli.rpc.status import ConnectError
from runtimed.hosts import Host, TlsFiles

CONNECT_TIMEOUT = 20.0  # seconds for TCP connect and the handshake
_READ_SIZE = 256 * 1024


REFUSED_SILENTLY = (
    "the daemon refused our client certificate (it hung up right after the TLS handshake)"
)


class TlsConfigError(Exception):
    """Our own files are missing or unusable (nothing was sent to the daemon)."""


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """Verify the daemon against `files.ca` (and its name), present our certificate, speak h2."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    named = (("--tlscacert", files.ca), ("--tlscert", files.cert), ("--tlskey", files.key))
    for flag, path in named:
        if not path.is_file():
            raise TlsConfigError(f"cannot use {flag} {path}: no such file")
    try:
        ctx.load_verify_locations(cafile=str(files.ca))
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(f"cannot use --tlscacert {files.ca}: {_reason(exc)}") from None
    try:
        ctx.load_cert_chain(str(files.cert), str(files.key))
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(
            f"cannot use --tlscert {files.cert} with --tlskey {files.key}: {_reason(exc)}"
        ) from None
    ctx.set_alpn_protocols(["h2"])
    return ctx


def _reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).lower().replace("_", " ")
    return (exc.strerror or str(exc)).lower()


def describe(exc: ssl.SSLError) -> str:
    """What a failed TLS exchange means for the user, in one clause."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the daemon's certificate is not trusted: {exc.verify_message}"
    reason = str(exc.reason or "")
    if "ALERT" in reason:  # the daemon refused us: no certificate, another CA, expired, ...
        return f"the daemon refused our client certificate ({reason.lower().replace('_', ' ')})"
    return f"TLS failed: {_reason(exc)}"


def dial(host: Host, ctx: ssl.SSLContext) -> TlsSocket:
    """Connect and complete the handshake; raises ConnectError (a gRPC UNAVAILABLE)."""
    target = str(host)
    try:
        sock = socket.create_connection((host.address, host.port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise ConnectError(target, exc) from None
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=host.address)
    try:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(_READ_SIZE)
                if not data:
                    raise ConnectError(
                        target, "the daemon closed the connection during TLS"
                    ) from None
                incoming.write(data)
        sock.sendall(outgoing.read())
        if obj.selected_alpn_protocol() != "h2":
            raise ConnectError(
                target, "the server does not speak gRPC (no ALPN h2): is this runtimed's -H port?"
            )
        sock.settimeout(None)
    except ssl.SSLError as exc:
        sock.close()
        raise ConnectError(target, describe(exc)) from None
    except (OSError, ConnectError) as exc:
        sock.close()
        if isinstance(exc, ConnectError):
            raise
        raise ConnectError(target, exc) from None
    return TlsSocket(sock, obj, incoming, outgoing, target)


class TlsSocket:
    """The part of a socket that runtimed.cli.rpc.http2 uses: sendall, makefile("rb"),
    shutdown, close; safe with one reader thread and any number of writers."""

    def __init__(
        self,
        sock: socket.socket,
        obj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        target: str,
    ) -> None:
        self._sock = sock
        self._obj = obj
        self._in = incoming
        self._out = outgoing
        self._target = target
        self._lock = threading.Lock()  # the SSL object and its BIOs
        self._send_lock = threading.Lock()  # records reach the wire in the order they were made
        self._received = False  # any application data yet

    def sendall(self, data: bytes) -> None:
        with self._send_lock:
            with self._lock:
                self._obj.write(data)
                out = self._out.read()
            self._send_raw(out)

    def _send_raw(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise self._lost(exc) from None

    def _lost(self, exc: OSError) -> Exception:
        """A reset before the daemon said anything is its answer to our certificate."""
        return exc if self._received else ConnectError(self._target, REFUSED_SILENTLY)

    def _flush(self) -> None:
        with self._send_lock:
            with self._lock:
                out = self._out.read()
            if out:
                self._send_raw(out)

    def recv_into(self, buffer: memoryview | bytearray) -> int:
        while True:
            count: int | None = None
            with self._lock:
                try:
                    count = int(self._obj.read(len(buffer), buffer)) or self._eof()
                except ssl.SSLWantReadError:
                    pass
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    count = self._eof()
                except ssl.SSLError as exc:
                    raise ConnectError(self._target, describe(exc)) from None
                pending = self._out.pending
            if pending:  # a post-handshake message to answer (TLS 1.3 key update)
                self._flush()
            if count is not None:
                self._received = self._received or count > 0
                return count
            try:
                data = self._sock.recv(_READ_SIZE)
            except OSError as exc:
                raise self._lost(exc) from None
            with self._lock:
                if data:
                    self._in.write(data)
                else:
                    self._in.write_eof()

    def _eof(self) -> int:
        if not self._received:
            # TLS 1.3: the daemon checks our certificate after our side of the handshake
            # is done; one that refuses it may just hang up.
            raise ConnectError(self._target, REFUSED_SILENTLY)
        return 0

    def makefile(self, mode: str = "rb", buffering: int = _READ_SIZE) -> io.BufferedReader:
        assert mode == "rb"
        return io.BufferedReader(_Reader(self), buffering)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()


class _Reader(io.RawIOBase):
    def __init__(self, tls: TlsSocket) -> None:
        self._tls = tls

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        return self._tls.recv_into(buffer)

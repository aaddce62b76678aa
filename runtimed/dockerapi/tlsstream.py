"""TLS on a connection of the Docker API, with a half-close each way.

The docker CLI ends its side of a hijacked connection when stdin ends (it does
so even without stdin) and then reads the output to the end: over TLS, that is
a close_notify followed by more reading. asyncio's SSL transport answers a
peer's close_notify by shutting the whole connection down, so the output would
be lost. Here TLS runs in memory (ssl.MemoryBIO) over the plain stream: a
close_notify is the end of the input, and writing goes on until we close.

One object is both the reader and the writer the HTTP connection uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

READ_SIZE = 64 * 1024
HANDSHAKE_TIMEOUT = 30.0


class TlsStream:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, context: ssl.SSLContext
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._eof = False
        self._closed_write = False

    async def handshake(self, timeout: float = HANDSHAKE_TIMEOUT) -> None:
        """Raises ssl.SSLError (a refused certificate, ...) or ConnectionError."""

        async def steps() -> None:
            while True:
                try:
                    self._tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await self._flush()
                    if not await self._receive():
                        raise ConnectionResetError(
                            "the client left during the TLS handshake"
                        ) from None
            await self._flush()

        try:
            await asyncio.wait_for(steps(), timeout)
        except ssl.SSLError:
            # Tell the client why (its alert), then give up on the connection.
            with contextlib.suppress(Exception):
                await self._flush()
            raise

    async def _receive(self) -> bool:
        data = await self._reader.read(READ_SIZE)
        if not data:
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True

    async def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self._writer.write(data)
            await self._writer.drain()

    # -- the reader's side -----------------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """Plaintext that arrived; b"" once the client ended its side (close_notify or EOF)."""
        while not self._eof:
            try:
                return self._tls.read(n if n > 0 else READ_SIZE)
            except ssl.SSLWantReadError:
                await self._flush()  # what reading made us say (session tickets, ...)
                if not await self._receive():
                    self._eof = True
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self._eof = True
        return b""

    # -- the writer's side -----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closed_write:
            raise ConnectionResetError("the TLS connection is closed for writing")
        self._tls.write(data)
        pending = self._outgoing.read()
        if pending:
            self._writer.write(pending)

    async def drain(self) -> None:
        await self._writer.drain()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """close_notify: we will say no more (the client may still be talking)."""
        if self._closed_write:
            return
        self._closed_write = True
        with contextlib.suppress(ssl.SSLError):
            self._tls.unwrap()
        pending = self._outgoing.read()
        if pending:
            self._writer.write(pending)

    def close(self) -> None:
        self._writer.close()

    async def wait_closed(self) -> None:
        await self._writer.wait_closed()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peercert":
            return self._tls.getpeercert()
        return self._writer.get_extra_info(name, default)

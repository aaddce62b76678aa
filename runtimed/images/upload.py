"""Push side of the OCI distribution API: blob checks, mounts, uploads, manifests.

One `BlobUploader` talks to one repository of one registry with one credential.
Uploads follow what the registry says rather than what we assume: every
`Location` it hands back (relative or absolute) is where the next request goes,
and after each chunk its `Range` header says how much it really has.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import structlog

from runtimed.errors import DataLoss, InvalidArgument, Unavailable
from runtimed.images.auth import Credential
from runtimed.images.manifest import Descriptor
from runtimed.images.registries_conf import Endpoint
from runtimed.images.registry import RegistryClient

log = structlog.get_logger(__name__)

# Blobs up to this size go up in one PUT; bigger ones in PATCH chunks of CHUNK_SIZE,
# so a dropped connection costs one chunk's worth of progress report, not a stall.
MONOLITHIC_MAX = 8 * 1024 * 1024
CHUNK_SIZE = 16 * 1024 * 1024
_READ = 1 << 20
_RANGE = re.compile(r"^\s*(?:bytes=)?(\d+)-(\d+)\s*$")

Progress = Callable[[int], None]


def resolve_location(request_url: str, location: str) -> str:
    """The absolute URL of an upload `Location`, which may be relative to the request."""
    if not location:
        raise Unavailable(f"registry answered {request_url} without an upload Location")
    return urljoin(request_url, location)


def parse_range(header: str) -> int:
    """How many bytes an upload holds, from its `Range: 0-END` header (END inclusive).

    Distribution writes "0-0" for both an empty upload and a one-byte one; callers
    never ask after sending nothing, so "0-0" counts as one byte.
    """
    match = _RANGE.match(header or "")
    if match is None or int(match.group(1)) != 0:
        raise Unavailable(f"registry sent an unusable upload Range header {header!r}")
    return int(match.group(2)) + 1


def with_digest(location: str, digest: str) -> str:
    """`location` with ?digest= added, keeping the registry's own query (its upload state)."""
    return str(httpx.URL(location).copy_add_param("digest", digest))


def file_chunks(
    path: Path, offset: int, length: int, progress: Progress | None = None
) -> Callable[[], AsyncIterator[bytes]]:
    """A body factory: `length` bytes of `path` from `offset`, read off the event loop."""

    async def stream() -> AsyncIterator[bytes]:
        sent = 0
        with path.open("rb") as fh:
            fh.seek(offset)
            while sent < length:
                chunk = await asyncio.to_thread(fh.read, min(_READ, length - sent))
                if not chunk:
                    raise DataLoss(f"{path} is shorter than its recorded size")
                sent += len(chunk)
                yield chunk
                if progress is not None:
                    progress(offset + sent)

    return stream


@dataclass
class BlobUploader:
    registry: RegistryClient
    endpoint: Endpoint
    credential: Credential | None
    monolithic_max: int = MONOLITHIC_MAX
    chunk_size: int = CHUNK_SIZE

    @property
    def repository(self) -> str:
        return self.endpoint.repository

    def _scope(self, mount_from: str | None = None) -> str:
        scope = f"repository:{self.repository}:pull,push"
        return f"{scope} repository:{mount_from}:pull" if mount_from else scope

    async def _request(
        self,
        method: str,
        path: str,
        *,
        mount_from: str | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | Callable[[], AsyncIterator[bytes]] | None = None,
    ) -> httpx.Response:
        return await self.registry.request(
            self.endpoint,
            method,
            path,
            credential=self.credential,
            scope=self._scope(mount_from),
            headers=headers,
            content=content,
        )

    async def _expect(self, response: httpx.Response, what: str, *codes: int) -> httpx.Response:
        """Close `response`; return it if its status is one of `codes` (its headers are
        what callers want), else raise the registry's error from its body."""
        try:
            if response.status_code not in codes:
                raise await self.registry.status_error(response, self.endpoint, what)
        finally:
            await response.aclose()
        return response

    # -- blobs -----------------------------------------------------------------

    async def exists(self, digest: str) -> bool:
        response = await self._request("HEAD", f"/v2/{self.repository}/blobs/{digest}")
        await self._expect(response, f"blob {digest}", 200, 404)
        return response.status_code == 200

    async def start(self, digest: str, mount_from: str | None = None) -> str | None:
        """Open an upload session; None when the registry mounted `digest` from
        `mount_from` instead (nothing left to send)."""
        path = f"/v2/{self.repository}/blobs/uploads/"
        if mount_from:
            path += f"?mount={digest}&from={mount_from}"
        response = await self._request("POST", path, mount_from=mount_from)
        await self._expect(response, f"an upload of {digest}", 201, 202)
        if response.status_code == 201:
            return None
        return resolve_location(str(response.request.url), response.headers.get("Location", ""))

    async def cancel(self, location: str) -> None:
        """Drop an upload session we will not use (best effort: registries expire them)."""
        with contextlib.suppress(Unavailable, InvalidArgument):
            response = await self._request("DELETE", location)
            await response.aclose()

    async def upload(
        self, location: str, desc: Descriptor, path: Path, progress: Progress | None = None
    ) -> None:
        """Send the blob at `path` into the session at `location` and commit it."""
        if desc.size <= self.monolithic_max:
            data = await asyncio.to_thread(path.read_bytes)
            if len(data) != desc.size:
                raise DataLoss(f"blob {desc.digest} is {len(data)} bytes here, not {desc.size}")
            final = await self._request(
                "PUT",
                with_digest(location, desc.digest),
                headers=_octets(len(data)),
                content=data,
            )
        else:
            location = await self._send_chunks(location, desc, path, progress)
            final = await self._request(
                "PUT", with_digest(location, desc.digest), headers=_octets(0), content=b""
            )
        await self._expect(final, f"blob {desc.digest}", 201)
        stored = final.headers.get("Docker-Content-Digest", "").strip()
        if stored and stored != desc.digest:
            raise DataLoss(f"registry {self.endpoint.host} stored blob {desc.digest} as {stored}")
        if progress is not None:
            progress(desc.size)

    async def _send_chunks(
        self, location: str, desc: Descriptor, path: Path, progress: Progress | None
    ) -> str:
        """PATCH the blob chunk by chunk; returns the Location to commit at."""
        offset = 0
        while offset < desc.size:
            length = min(self.chunk_size, desc.size - offset)
            headers = {
                **_octets(length),
                "Content-Range": f"{offset}-{offset + length - 1}",
            }
            response = await self._request(
                "PATCH",
                location,
                headers=headers,
                content=file_chunks(path, offset, length, progress),
            )
            await self._expect(response, f"a chunk of blob {desc.digest}", 202, 416)
            if response.status_code == 416:
                # We and the registry disagree on what it has: ask, and go on from there.
                if moved := response.headers.get("Location", ""):
                    location = resolve_location(str(response.request.url), moved)
                location, offset = await self._status(location)
                continue
            location = resolve_location(
                str(response.request.url), response.headers.get("Location", "")
            )
            held = parse_range(response.headers.get("Range", ""))
            if held > offset + length:
                raise Unavailable(
                    f"registry {self.endpoint.host} claims {held} bytes of blob {desc.digest} "
                    f"after {offset + length} were sent"
                )
            offset = held
        return location

    async def _status(self, location: str) -> tuple[str, int]:
        response = await self._request("GET", location)
        await self._expect(response, "an upload's status", 204)
        header = response.headers.get("Range", "")
        held = parse_range(header) if header and header != "0-0" else 0
        next_location = response.headers.get("Location", "")
        return (resolve_location(str(response.request.url), next_location or location), held)

    # -- manifests -------------------------------------------------------------

    async def put_manifest(self, reference: str, data: bytes, media_type: str) -> str:
        """PUT the manifest bytes as they are; returns the digest the registry computed."""
        response = await self._request(
            "PUT",
            f"/v2/{self.repository}/manifests/{reference}",
            headers={"Content-Type": media_type, "Content-Length": str(len(data))},
            content=data,
        )
        await self._expect(response, f"manifest {reference}", 201)
        return response.headers.get("Docker-Content-Digest", "").strip()


def _octets(length: int) -> dict[str, str]:
    return {"Content-Type": "application/octet-stream", "Content-Length": str(length)}

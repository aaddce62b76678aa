"""Pull side of the OCI distribution API: resolve manifests, download blobs.

Behaves like Docker where users can tell: anonymous first, bearer tokens or
basic auth on a 401, mirrors before the registry itself, plain HTTP only for
loopback and explicitly insecure registries, and nothing stored unless its
digest checks out.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from runtimed.errors import (
    DataLoss,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RuntimedError,
    Unauthenticated,
    Unavailable,
)
from runtimed.images.auth import Credential, CredentialStore
from runtimed.images.manifest import (
    MANIFEST_ACCEPT,
    Descriptor,
    ImageIndex,
    ImageManifest,
    Platform,
    compute_digest,
    parse_manifest,
    sha256_digest,
)
from runtimed.images.reference import Reference, is_digest
from runtimed.images.registries_conf import Endpoint, RegistriesConfig

log = structlog.get_logger(__name__)

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # same cap as containerd; manifests are small
_MAX_ERROR_BODY = 64 * 1024
_PROGRESS_STEP = 512 * 1024
_CHUNK = 1 << 20
_MIN_TOKEN_LIFETIME = 60.0  # the token spec's default when expires_in is absent
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CHALLENGE_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)')


@dataclass(frozen=True)
class ResolvedImage:
    """What a reference resolved to at a registry, for one platform."""

    ref: Reference
    endpoint: Endpoint
    repository: str
    manifest_digest: str
    manifest_bytes: bytes = field(repr=False)
    manifest_media_type: str
    index_digest: str | None
    config: Descriptor
    layers: list[Descriptor]
    repo_digest: str
    platform: Platform | None = None
    index_bytes: bytes | None = field(default=None, repr=False)
    # The credential that worked for the manifest, reused for its blobs.
    credential: Credential | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: "bearer" or "basic"
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """Parse a WWW-Authenticate header value (first challenge only)."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    for key, raw in _CHALLENGE_PARAM.findall(rest):
        value = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
        params[key.lower()] = value
    return Challenge(scheme.lower(), params)


class _Transient(Unavailable):
    """A failure worth retrying: dropped connection, 5xx, rate limit."""


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: dropped connection, 5xx, rate limit."""
    return isinstance(exc, _Transient)


# A request body: bytes, or a function giving a fresh stream (sent again after a 401).
Body = bytes | Callable[[], AsyncIterator[bytes]]


def _body(content: Body | None) -> bytes | AsyncIterator[bytes] | None:
    return content() if callable(content) else content


@dataclass
class _Token:
    value: str
    expires: float


def _basic(credential: Credential) -> str:
    raw = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _tls_failed(exc: BaseException) -> bool:
    """The TLS handshake failed (the server speaks plain HTTP, or its certificate is not
    one we trust), as opposed to no connection at all."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "[SSL" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class RegistryClient:
    def __init__(
        self,
        config: RegistriesConfig,
        credentials: CredentialStore,
        *,
        user_agent: str,
        max_concurrent_downloads: int = 3,
        timeout: float = 30.0,
        retry_delays: Sequence[float] = (0.5, 2.0),
    ) -> None:
        self._config = config
        self._credentials = credentials
        self._retry_delays = tuple(retry_delays)
        common: dict[str, Any] = {
            "timeout": httpx.Timeout(timeout),
            "headers": {"User-Agent": user_agent},
        }
        self._client = httpx.AsyncClient(**common)
        # Certificate checks are per client in httpx, hence a second client
        # for registries the user declared insecure (and for loopback).
        self._insecure_client = httpx.AsyncClient(verify=False, **common)
        self._schemes: dict[str, str] = {}
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str, Credential | None], _Token] = {}
        self._token_locks: dict[tuple[str, str, Credential | None], asyncio.Lock] = {}
        self._downloads = asyncio.Semaphore(max_concurrent_downloads)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._insecure_client.aclose()

    # -- transport -------------------------------------------------------

    async def _send(
        self,
        ep: Endpoint,
        method: str,
        path: str,
        headers: Mapping[str, str],
        content: Body | None = None,
    ) -> httpx.Response:
        """Send over https, or http for insecure hosts whose TLS fails. Streamed.

        `path` is a path on the endpoint's host, or an absolute URL (an upload
        Location the registry handed out), sent as it is.
        """
        if path.startswith(("https://", "http://")):
            return await self._send_url(ep, method, path, headers, content)
        known = self._schemes.get(ep.host)
        schemes = [known] if known else (["https", "http"] if ep.insecure else ["https"])
        client = self._insecure_client if ep.insecure else self._client
        for scheme in schemes:
            request = client.build_request(
                method, f"{scheme}://{ep.host}{path}", headers=headers, content=_body(content)
            )
            try:
                response = await client.send(
                    request, stream=True, follow_redirects=method in ("GET", "HEAD")
                )
            except httpx.TransportError as exc:
                if scheme == "https" and "http" in schemes:
                    log.info(
                        "registry_https_failed_trying_http", host=ep.host, error=_describe(exc)
                    )
                    continue
                raise _Transient(self._unreachable(ep, scheme, exc)) from None
            self._schemes[ep.host] = scheme
            return response
        raise AssertionError("unreachable: schemes is never empty")

    async def _send_url(
        self,
        ep: Endpoint,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: Body | None,
    ) -> httpx.Response:
        parts = urlsplit(url)
        insecure = (parts.netloc == ep.host and ep.insecure) or self._config.is_insecure(
            parts.netloc
        )
        client = self._insecure_client if insecure else self._client
        request = client.build_request(method, url, headers=headers, content=_body(content))
        try:
            return await client.send(request, stream=True, follow_redirects=False)
        except httpx.TransportError as exc:
            raise _Transient(self._unreachable(ep, parts.scheme, exc)) from None

    @property
    def retry_delays(self) -> tuple[float, ...]:
        return self._retry_delays

    def push_endpoint(self, ref: Reference) -> Endpoint:
        """Where a push of `ref` goes: its registry itself (after registries.conf
        rewrites and blocks), never a mirror."""
        return self._config.endpoints_for(ref)[-1]

    async def lookup_credential(self, registry: str) -> Credential | None:
        return await self._lookup_credential(registry)

    async def status_error(self, response: httpx.Response, ep: Endpoint, what: str) -> Exception:
        return await self._status_error(response, ep, what)

    @staticmethod
    def _unreachable(ep: Endpoint, scheme: str, exc: BaseException) -> str:
        text = _describe(exc)
        hint = ""
        if scheme == "https" and _tls_failed(exc):
            # A plain-HTTP registry, or a certificate we cannot check: say how to allow it.
            hint = (
                f" (if {ep.host} is meant to be used over plain HTTP or without TLS checks, "
                f"allow it with `runtimed --insecure-registry {ep.host}` or "
                f'insecure_registries = ["{ep.host}"] in runtimed.toml)'
            )
        return f"cannot reach registry {ep.host} over {scheme}: {text}{hint}"

    # -- authentication --------------------------------------------------

    async def request(
        self,
        ep: Endpoint,
        method: str,
        path: str,
        *,
        credential: Credential | None,
        scope: str | None,
        headers: Mapping[str, str] | None = None,
        content: Body | None = None,
    ) -> httpx.Response:
        """One authenticated request (the push side builds on this); the caller must close
        the streamed response.

        `scope` may hold several token scopes separated by spaces; `content` is
        bytes or a function giving a fresh byte stream, so the request can be sent
        again after an authentication challenge.
        """
        base = dict(headers or {})
        challenge = self._challenges.get(ep.host)
        auth = await self._authorization(ep, challenge, scope, credential) if challenge else {}
        response = await self._send(ep, method, path, {**base, **auth}, content)
        if response.status_code != 401:
            return response
        header = response.headers.get("WWW-Authenticate", "")
        await response.aclose()
        challenge = parse_challenge(header)
        if challenge is None:
            raise Unauthenticated(
                f"{ep.registry} requires authentication but sent no WWW-Authenticate challenge"
            )
        self._challenges[ep.host] = challenge
        # A cached token may have been revoked early: never reuse it after a 401.
        self._tokens.pop(self._token_key(ep, challenge, scope, credential), None)
        if challenge.scheme == "basic" and credential is None:
            raise self._rejected(ep, challenge, None)
        auth = await self._authorization(ep, challenge, scope, credential)
        response = await self._send(ep, method, path, {**base, **auth}, content)
        if response.status_code == 401:
            await response.aclose()
            raise self._rejected(ep, challenge, credential)
        return response

    @staticmethod
    def _token_key(
        ep: Endpoint, challenge: Challenge, scope: str | None, credential: Credential | None
    ) -> tuple[str, str, Credential | None]:
        return (ep.host, scope or challenge.params.get("scope", ""), credential)

    async def _authorization(
        self,
        ep: Endpoint,
        challenge: Challenge,
        scope: str | None,
        credential: Credential | None,
    ) -> dict[str, str]:
        if challenge.scheme == "basic":
            return {"Authorization": _basic(credential)} if credential else {}
        if challenge.scheme != "bearer":
            raise Unauthenticated(
                f"{ep.registry} asks for unsupported authentication scheme {challenge.scheme!r}"
            )
        key = self._token_key(ep, challenge, scope, credential)
        async with self._token_locks.setdefault(key, asyncio.Lock()):
            token = self._tokens.get(key)
            if token is None or token.expires <= time.monotonic():
                token = await self._fetch_token(ep, challenge, key[1], credential)
                self._tokens[key] = token
        return {"Authorization": f"Bearer {token.value}"}

    async def _fetch_token(
        self, ep: Endpoint, challenge: Challenge, scope: str, credential: Credential | None
    ) -> _Token:
        realm = challenge.params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise Unauthenticated(f"{ep.registry} sent an unusable token realm {realm!r}")
        insecure = self._config.is_insecure(parts.netloc)
        client = self._insecure_client if insecure else self._client
        # Several scopes (push to one repository, mount from another) are several params.
        service = {k: v for k, v in challenge.params.items() if k == "service"}
        query = [*service.items(), *(("scope", one) for one in scope.split())]
        try:
            if credential is not None and credential.identity_token:
                # OAuth2 refresh-token grant, as docker does for identity tokens.
                # The OAuth2 form takes the scopes space-separated in one field.
                form = {
                    **service,
                    **({"scope": scope} if scope else {}),
                    "grant_type": "refresh_token",
                    "refresh_token": credential.identity_token,
                    "client_id": "runtimed",
                }
                response = await client.post(realm, data=form)
            else:
                headers = {"Authorization": _basic(credential)} if credential else {}
                response = await client.get(realm, params=query, headers=headers)
        except httpx.TransportError as exc:
            raise _Transient(
                f"cannot reach token server {parts.netloc} for {ep.registry}: {_describe(exc)}"
            ) from None
        if response.status_code == 401:
            if credential is None:
                raise self._rejected(ep, challenge, None)
            raise Unauthenticated(
                f"{ep.registry} rejected the credentials for user {credential.username!r}"
            )
        if response.status_code == 403:
            raise PermissionDenied(
                f"token server {parts.netloc} denied access to {scope or ep.registry}"
            )
        if response.status_code != 200:
            raise Unavailable(
                f"token server {parts.netloc} answered HTTP {response.status_code} "
                f"for {ep.registry}"
            )
        try:
            body = response.json()
            value = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or _MIN_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            value, lifetime = None, 0.0
        if not isinstance(value, str) or not value:
            raise Unauthenticated(
                f"token server {parts.netloc} returned no token for {ep.registry}"
            )
        log.debug("registry_token_fetched", host=ep.host, scope=scope, expires_in=lifetime)
        # Renew a little early so a token does not expire mid-request.
        return _Token(value, time.monotonic() + max(lifetime, _MIN_TOKEN_LIFETIME) - 5.0)

    @staticmethod
    def _rejected(
        ep: Endpoint, challenge: Challenge, credential: Credential | None
    ) -> RuntimedError:
        if credential is None:
            message = (
                f"authentication required for {ep.registry}: run runtimectl login {ep.registry}"
            )
            if challenge.scheme == "bearer" and ep.repository:
                message += f" (or repository {ep.repository} does not exist)"
            return Unauthenticated(message)
        if challenge.scheme == "bearer" and ep.repository:
            return PermissionDenied(
                f"access to repository {ep.repository} on {ep.registry} denied for user "
                f"{credential.username!r} (it may not exist)"
            )
        return Unauthenticated(
            f"{ep.registry} rejected the credentials for user {credential.username!r}"
        )

    async def _lookup_credential(self, registry: str) -> Credential | None:
        # Credential helpers are subprocesses: keep them off the event loop.
        return await asyncio.to_thread(self._credentials.get, registry)

    # -- errors ----------------------------------------------------------

    async def _status_error(self, response: httpx.Response, ep: Endpoint, what: str) -> Exception:
        detail = await self._error_detail(response)
        status = response.status_code
        suffix = f": {detail}" if detail else ""
        if status == 403:
            return PermissionDenied(f"access to {what} on {ep.registry} denied{suffix}")
        if status == 404:
            return NotFound(f"{what} not found on {ep.host}{suffix}")
        message = f"registry {ep.host} answered HTTP {status} for {what}{suffix}"
        return _Transient(message) if status in _RETRYABLE_STATUS else Unavailable(message)

    @staticmethod
    async def _error_detail(response: httpx.Response) -> str:
        """The distribution API's error codes/messages, when the body has them."""
        body = bytearray()
        with contextlib.suppress(httpx.HTTPError):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_ERROR_BODY:
                    break
        try:
            errors = json.loads(bytes(body)).get("errors") or []
            return "; ".join(
                f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors if e
            )
        except (ValueError, AttributeError, TypeError):
            return ""

    # -- manifests -------------------------------------------------------

    async def resolve(
        self,
        ref: Reference,
        *,
        platform: Platform | None = None,
        credential: Credential | None = None,
    ) -> ResolvedImage:
        """Find the image manifest for `ref` and `platform` (default: this host)."""
        wanted = platform or Platform.host()
        endpoints = self._config.endpoints_for(ref)
        last_error: RuntimedError | None = None
        for ep in endpoints:
            # A credential handed in (CRI auth) is for the registry itself, not its mirrors.
            cred = credential if credential is not None and not ep.is_mirror else None
            try:
                if cred is None:
                    cred = await self._lookup_credential(ep.registry)
                return await self._resolve_at(ep, ref, wanted, cred)
            except RuntimedError as exc:
                last_error = exc
                if ep.is_mirror:
                    log.warning(
                        "registry_mirror_failed", mirror=str(ep), ref=str(ref), error=exc.message
                    )
        assert last_error is not None  # endpoints_for always yields the primary location
        raise last_error

    async def _resolve_at(
        self, ep: Endpoint, ref: Reference, wanted: Platform, cred: Credential | None
    ) -> ResolvedImage:
        what = str(ref)
        data, media_type, digest = await self._get_manifest(ep, ref.fetch_reference, cred, what)
        doc = parse_manifest(data, media_type, what=what)
        index_digest: str | None = None
        index_bytes: bytes | None = None
        chosen: Platform | None = None
        if isinstance(doc, ImageIndex):
            index_digest, index_bytes = digest, data
            desc = doc.select(wanted, what)
            chosen = desc.platform
            data, media_type, digest = await self._get_manifest(ep, desc.digest, cred, what)
            if len(data) != desc.size:
                raise DataLoss(
                    f"manifest {desc.digest} of {what} is {len(data)} bytes, index says {desc.size}"
                )
            doc = parse_manifest(data, media_type or desc.media_type, what=what)
            if isinstance(doc, ImageIndex):
                raise InvalidArgument(f"{what}: nested image indexes are not supported")
        assert isinstance(doc, ImageManifest)
        doc.check_is_image(what)
        log.info(
            "registry_manifest_resolved",
            ref=what,
            endpoint=str(ep),
            manifest_digest=digest,
            index_digest=index_digest,
            layers=len(doc.layers),
        )
        return ResolvedImage(
            ref=ref,
            endpoint=ep,
            repository=ep.repository,
            manifest_digest=digest,
            manifest_bytes=data,
            manifest_media_type=doc.media_type,
            index_digest=index_digest,
            config=doc.config,
            layers=list(doc.layers),
            repo_digest=index_digest or digest,
            platform=chosen,
            index_bytes=index_bytes,
            credential=cred,
        )

    async def _get_manifest(
        self, ep: Endpoint, reference: str, cred: Credential | None, what: str
    ) -> tuple[bytes, str | None, str]:
        """Fetch and verify manifest bytes; returns (bytes, content type, digest)."""
        response = await self.request(
            ep,
            "GET",
            f"/v2/{ep.repository}/manifests/{reference}",
            credential=cred,
            scope=f"repository:{ep.repository}:pull",
            headers={"Accept": MANIFEST_ACCEPT},
        )
        try:
            if response.status_code == 404:
                detail = await self._error_detail(response)
                raise NotFound(f"manifest unknown: {what}" + (f" ({detail})" if detail else ""))
            if response.status_code != 200:
                raise await self._status_error(response, ep, f"manifest of {what}")
            body = bytearray()
            try:
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_MANIFEST_BYTES:
                        raise InvalidArgument(
                            f"manifest of {what} from {ep.host} exceeds {MAX_MANIFEST_BYTES} bytes"
                        )
            except httpx.TransportError as exc:
                raise _Transient(
                    f"connection to {ep.host} lost while reading manifest of {what}: "
                    f"{_describe(exc)}"
                ) from None
        finally:
            await response.aclose()
        data = bytes(body)
        source = f"{ep.host}/{ep.repository}"
        if is_digest(reference):
            self._verify_manifest(data, reference, f"manifest {reference} from {source}")
        header = response.headers.get("Docker-Content-Digest", "").strip()
        if header and is_digest(header):
            self._verify_manifest(data, header, f"manifest of {what} from {source}")
        digest = reference if is_digest(reference) else sha256_digest(data)
        return data, response.headers.get("Content-Type"), digest

    @staticmethod
    def _verify_manifest(data: bytes, expected: str, what: str) -> None:
        got = compute_digest(data, expected.split(":", 1)[0])
        if got != expected:
            raise DataLoss(f"{what} failed verification: expected {expected}, got {got}")

    # -- blobs -----------------------------------------------------------

    async def fetch_blob(
        self,
        image: ResolvedImage,
        desc: Descriptor,
        dest: Path,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Download `desc` into `dest`, verified; on any failure `dest` is removed."""
        dest = Path(dest)
        async with self._downloads:
            delays = [*self._retry_delays, None]
            for attempt, delay in enumerate(delays, start=1):
                try:
                    await self._fetch_blob_once(image, desc, dest, progress)
                    return
                except _Transient as exc:
                    if delay is None:
                        self._discard(dest)
                        raise Unavailable(
                            f"downloading blob {desc.digest} failed after {attempt} attempts: "
                            f"{exc.message}"
                        ) from None
                    log.warning(
                        "blob_fetch_retry", digest=desc.digest, attempt=attempt, error=exc.message
                    )
                    await asyncio.sleep(delay)
                except BaseException:
                    self._discard(dest)
                    raise

    @staticmethod
    def _discard(dest: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()

    async def _fetch_blob_once(
        self,
        image: ResolvedImage,
        desc: Descriptor,
        dest: Path,
        progress: Callable[[int], None] | None,
    ) -> None:
        ep = image.endpoint
        source = f"{ep.host}/{image.repository}"
        response = await self.request(
            ep,
            "GET",
            f"/v2/{image.repository}/blobs/{desc.digest}",
            credential=image.credential,
            scope=f"repository:{image.repository}:pull",
            # Blobs are already compressed; we hash the exact bytes served.
            headers={"Accept-Encoding": "identity"},
        )
        try:
            if response.status_code == 404 and desc.urls:
                await response.aclose()
                await self._fetch_foreign(desc, dest, progress, source)
                return
            if response.status_code != 200:
                raise await self._status_error(response, ep, f"blob {desc.digest}")
            await self._download(response, desc, dest, progress, source)
        finally:
            await response.aclose()

    async def _fetch_foreign(
        self,
        desc: Descriptor,
        dest: Path,
        progress: Callable[[int], None] | None,
        source: str,
    ) -> None:
        """Non-distributable layers live at URLs of their own when the registry lacks them."""
        last = f"blob {desc.digest} not found at {source}"
        for url in desc.urls:
            if urlsplit(url).scheme not in ("http", "https"):
                continue
            request = self._client.build_request(
                "GET", url, headers={"Accept-Encoding": "identity"}
            )
            try:
                response = await self._client.send(request, stream=True, follow_redirects=True)
            except httpx.TransportError as exc:
                last = f"cannot fetch {url}: {_describe(exc)}"
                continue
            try:
                if response.status_code == 200:
                    await self._download(response, desc, dest, progress, url)
                    return
                last = f"{url} answered HTTP {response.status_code}"
            finally:
                await response.aclose()
        raise NotFound(last)

    async def _download(
        self,
        response: httpx.Response,
        desc: Descriptor,
        dest: Path,
        progress: Callable[[int], None] | None,
        source: str,
    ) -> None:
        algorithm = desc.digest.split(":", 1)[0]
        hasher = hashlib.new(algorithm)
        received = reported = 0
        with open(dest, "wb") as fh:

            def consume(chunk: bytes) -> None:
                hasher.update(chunk)
                fh.write(chunk)

            try:
                # Large chunks, hashed and written in a worker thread: the event loop stays
                # free for gRPC and the other layers, and both cores get used.
                async for chunk in response.aiter_raw(_CHUNK):
                    received += len(chunk)
                    if received > desc.size:
                        break  # a registry sending more than it promised is not trusted
                    await asyncio.to_thread(consume, chunk)
                    if progress is not None and received - reported >= _PROGRESS_STEP:
                        progress(received)
                        reported = received
            except httpx.TransportError as exc:
                raise _Transient(
                    f"connection to {source} lost while downloading {desc.digest} "
                    f"after {received} bytes: {_describe(exc)}"
                ) from None
            # No fsync: a blob only lands under its name through ContentStore.commit,
            # which syncs it; layer blobs are unpacked and dropped.
        got = f"{algorithm}:{hasher.hexdigest()}"
        if received != desc.size or got != desc.digest:
            self._discard(dest)
            size_note = ""
            if received > desc.size:
                size_note = f" (more than the {desc.size} bytes expected)"
            elif received < desc.size:
                size_note = f" ({received} bytes, expected {desc.size})"
            raise DataLoss(
                f"blob {desc.digest} from {source} failed verification: got {got}{size_note}"
            )
        if progress is not None and reported != received:
            progress(received)

    # -- login -----------------------------------------------------------

    async def check_login(self, registry_host: str, credential: Credential) -> None:
        """Verify `credential` against the registry's /v2/ endpoint."""
        ep = self._config.endpoint_for_registry(registry_host)
        response = await self.request(ep, "GET", "/v2/", credential=credential, scope=None)
        try:
            if response.status_code != 200:
                raise await self._status_error(response, ep, "the API version check")
        finally:
            await response.aclose()
        log.info("registry_login_checked", registry=ep.registry, username=credential.username)

"""Registry credentials in Docker's config.json format.

Reads what `docker login` wrote (including credential helpers, read-only)
and writes the `auths` section itself, keeping every other key of the file.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from runtimed.errors import InvalidArgument
from runtimed.store.atomicfile import write_atomic

log = structlog.get_logger(__name__)

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
_HELPER_TIMEOUT = 10.0


@dataclass(frozen=True)
class Credential:
    username: str
    password: str = field(repr=False)
    identity_token: str | None = field(default=None, repr=False)


def normalize_registry(key: str) -> str:
    """Reduce a config.json key or a host to a bare registry name (docker.io for Hub)."""
    host = key.strip().lower()
    for scheme in ("https://", "http://"):
        host = host.removeprefix(scheme)
    host = host.split("/", 1)[0]
    return "docker.io" if host in _DOCKER_HUB_ALIASES else host


def auth_key(registry: str) -> str:
    """The key `docker login` would use for `registry`."""
    name = normalize_registry(registry)
    return DOCKER_HUB_AUTH_KEY if name == "docker.io" else name


def default_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


class CredentialStore:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_config_path()

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise InvalidArgument(f"cannot read credentials file {self.path}: {exc}") from None
        if not text.strip():
            return {}
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise InvalidArgument(
                f"credentials file {self.path} is not valid JSON: {exc}"
            ) from None
        if not isinstance(doc, dict):
            raise InvalidArgument(f"credentials file {self.path} must hold a JSON object")
        return doc

    @staticmethod
    def _matching_keys(auths: dict[str, Any], registry: str) -> list[str]:
        """Keys naming `registry`, the exact `docker login` key first."""
        want = normalize_registry(registry)
        keys = [k for k in auths if normalize_registry(k) == want]
        exact = auth_key(registry)
        return sorted(keys, key=lambda k: k != exact)

    def get(self, registry: str) -> Credential | None:
        doc = self._read()
        name = normalize_registry(registry)
        helper = (doc.get("credHelpers") or {}).get(auth_key(name)) or (
            doc.get("credHelpers") or {}
        ).get(name)
        if isinstance(helper, str) and helper:
            return self._from_helper(helper, auth_key(name))
        auths = doc.get("auths") or {}
        if not isinstance(auths, dict):
            raise InvalidArgument(f"credentials file {self.path}: 'auths' must be an object")
        for key in self._matching_keys(auths, name):
            cred = self._decode(auths[key], key)
            if cred is not None:
                return cred
        store = doc.get("credsStore")
        if isinstance(store, str) and store:
            return self._from_helper(store, auth_key(name))
        return None

    def _decode(self, entry: Any, key: str) -> Credential | None:
        if not isinstance(entry, dict):
            return None
        username = entry.get("username") or ""
        password = entry.get("password") or ""
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidArgument(
                    f"credentials file {self.path}: 'auth' for {key} is not base64 of user:password"
                ) from None
            username, sep, password = decoded.partition(":")
            if not sep:
                raise InvalidArgument(
                    f"credentials file {self.path}: 'auth' for {key} has no ':' separator"
                )
        token = entry.get("identitytoken") or None
        if not username and not password and not token:
            return None
        return Credential(username=username, password=password, identity_token=token)

    def _from_helper(self, helper: str, server: str) -> Credential | None:
        program = f"docker-credential-{helper}"
        try:
            proc = subprocess.run(
                [program, "get"],
                input=server.encode(),
                capture_output=True,
                timeout=_HELPER_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("credential_helper_failed", helper=program, error=str(exc))
            return None
        if proc.returncode != 0:
            # Helpers report "credentials not found" this way; not an error for us.
            log.debug("credential_helper_no_entry", helper=program, server=server)
            return None
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            log.warning("credential_helper_bad_output", helper=program)
            return None
        username, secret = str(doc.get("Username", "")), str(doc.get("Secret", ""))
        # Helpers mark identity tokens with this conventional username.
        if username == "<token>":
            return Credential(username="", password="", identity_token=secret)
        return Credential(username=username, password=secret)

    def store(self, registry: str, username: str, password: str) -> None:
        if not username or ":" in username:
            raise InvalidArgument("username must be non-empty and must not contain ':'")
        doc = self._read()
        auths = doc.get("auths")
        if not isinstance(auths, dict):
            auths = {}
        for key in self._matching_keys(auths, registry):
            del auths[key]
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        auths[auth_key(registry)] = {"auth": token}
        doc["auths"] = auths
        self._write(doc)

    def erase(self, registry: str) -> bool:
        """Forget `registry`'s credentials; False when there were none."""
        doc = self._read()
        auths = doc.get("auths")
        if not isinstance(auths, dict):
            return False
        keys = self._matching_keys(auths, registry)
        if not keys:
            return False
        for key in keys:
            del auths[key]
        self._write(doc)
        return True

    def _write(self, doc: dict[str, Any]) -> None:
        # Write through a symlinked config.json (dotfile managers) instead of replacing the link.
        target = Path(os.path.realpath(self.path))
        directory = target.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = (json.dumps(doc, indent="\t") + "\n").encode()
        write_atomic(target, data, mode=0o600)

"""containers-registries.conf(5): mirrors, prefix rewrites, insecure and blocked registries.

Version 2 of the format is the one we implement; the old v1 tables
([registries.search], [registries.insecure], [registries.block]) are
translated into it because older distributions still ship them.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from runtimed.errors import InvalidArgument, NotFound, PermissionDenied
from runtimed.images.reference import DEFAULT_DOMAIN, Reference

log = structlog.get_logger(__name__)

DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
_PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")


@dataclass(frozen=True)
class Endpoint:
    """One place to pull a repository from.

    `registry` is the logical registry name (what credentials are keyed by,
    e.g. "docker.io"); `host` is what we connect to (registry-1.docker.io
    for Docker Hub); `repository` is the path after /v2/ once prefix
    rewriting has been applied.
    """

    registry: str
    host: str
    repository: str
    insecure: bool = False
    is_mirror: bool = False

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}"


@dataclass(frozen=True)
class Mirror:
    location: str
    insecure: bool = False
    pull_from_mirror: str = "all"


@dataclass(frozen=True)
class RegistryEntry:
    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirror_by_digest_only: bool = False
    mirrors: tuple[Mirror, ...] = ()

    @property
    def is_wildcard(self) -> bool:
        return self.prefix.startswith("*.")

    def _subject(self, ref: Reference) -> str:
        # A prefix naming a tag or digest is compared with the full reference.
        path_part = self.prefix.partition("/")[2]
        return str(ref) if "@" in self.prefix or ":" in path_part else ref.name

    def match_length(self, ref: Reference) -> int:
        """Length of the matched part of `ref` (longest wins); -1 when no match."""
        if self.is_wildcard:
            # Wildcards only match subdomains; they lose ties to explicit prefixes.
            return len(ref.domain) - 1 if _host_only(ref.domain).endswith(self.prefix[1:]) else -1
        subject = self._subject(ref)
        if subject == self.prefix:
            return len(self.prefix)
        if subject.startswith(self.prefix) and subject[len(self.prefix)] in "/:@":
            # ':' only introduces a tag once we are past the domain.
            if subject[len(self.prefix)] == ":" and "/" not in self.prefix:
                return -1
            return len(self.prefix)
        return -1

    def rewrite(self, ref: Reference, location: str) -> str:
        """The repository name at `location` for `ref`: the matched prefix replaced."""
        if self.is_wildcard or not location:
            return ref.name
        # A prefix pinning a tag/digest consumes it whole, so what is left is
        # either empty or "/more/path" (possibly followed by our own @digest).
        rest = self._subject(ref)[len(self.prefix) :].split("@", 1)[0]
        return location + rest


def _host_only(host: str) -> str:
    """Strip the port (and IPv6 brackets) from host[:port]."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    name = _host_only(host).lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def connect_host(registry: str) -> str:
    """Docker Hub is served from registry-1.docker.io; everyone else as named."""
    return DOCKER_HUB_ENDPOINT if registry in (DEFAULT_DOMAIN, "index.docker.io") else registry


class RegistriesConfig:
    def __init__(
        self,
        registries: Iterable[RegistryEntry] = (),
        *,
        unqualified_search_registries: Iterable[str] = (),
        insecure_registries: Iterable[str] = (),
    ) -> None:
        self.registries = tuple(registries)
        self.unqualified_search_registries = tuple(unqualified_search_registries)
        self._insecure_hosts: set[str] = set()
        self._insecure_nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in insecure_registries:
            self._add_insecure(item)

    def _add_insecure(self, item: str) -> None:
        item = item.strip().removeprefix("http://").removeprefix("https://").rstrip("/")
        if "/" in item:
            try:
                self._insecure_nets.append(ipaddress.ip_network(item, strict=False))
                return
            except ValueError:
                raise InvalidArgument(f"invalid insecure registry {item!r}") from None
        self._insecure_hosts.add(item.lower())

    def is_insecure(self, host: str) -> bool:
        """Whether TLS may be unverified and plain HTTP used for `host` (host[:port])."""
        host = host.lower()
        if is_loopback(host) or host in self._insecure_hosts:
            return True
        for entry in self.registries:
            if entry.insecure and (
                host == entry.location.split("/", 1)[0]
                or (entry.is_wildcard and _host_only(host).endswith(entry.prefix[1:]))
            ):
                return True
        if _host_only(host) in self._insecure_hosts:
            return True
        try:
            addr = ipaddress.ip_address(_host_only(host))
        except ValueError:
            return False
        return any(addr in net for net in self._insecure_nets)

    def find(self, ref: Reference) -> RegistryEntry | None:
        best: RegistryEntry | None = None
        best_len = -1
        for entry in self.registries:
            length = entry.match_length(ref)
            if length > best_len:
                best, best_len = entry, length
        return best

    def _endpoint(self, name: str, insecure: bool, is_mirror: bool) -> Endpoint:
        registry, _, repository = name.partition("/")
        if not repository:
            raise InvalidArgument(f"registries.conf location {name!r} leaves no repository path")
        return Endpoint(
            registry=registry,
            host=connect_host(registry),
            repository=repository,
            insecure=insecure or self.is_insecure(registry),
            is_mirror=is_mirror,
        )

    def endpoints_for(self, ref: Reference) -> list[Endpoint]:
        """Where to pull `ref` from, in order: mirrors, then the primary location."""
        entry = self.find(ref)
        if entry is None:
            return [self._endpoint(ref.name, False, False)]
        if entry.blocked:
            raise PermissionDenied(
                f"registry {ref.domain} is blocked by registries.conf (prefix {entry.prefix!r})"
            )
        endpoints: list[Endpoint] = []
        for mirror in entry.mirrors:
            mode = "digest-only" if entry.mirror_by_digest_only else mirror.pull_from_mirror
            if (mode == "digest-only" and not ref.digest) or (mode == "tag-only" and ref.digest):
                continue
            endpoints.append(
                self._endpoint(entry.rewrite(ref, mirror.location), mirror.insecure, True)
            )
        endpoints.append(self._endpoint(entry.rewrite(ref, entry.location), entry.insecure, False))
        return endpoints

    def endpoint_for_registry(self, registry: str) -> Endpoint:
        """An endpoint for talking to a registry as a whole (`runtimectl login`)."""
        registry = registry.lower().removeprefix("https://").removeprefix("http://").rstrip("/")
        registry = registry.split("/", 1)[0]
        if registry == "index.docker.io":
            registry = DEFAULT_DOMAIN
        return Endpoint(registry, connect_host(registry), "", self.is_insecure(registry), False)


def _bool(table: Mapping[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise InvalidArgument(f"registries.conf: {where}.{key} must be true or false")
    return value


def _str(table: Mapping[str, Any], key: str, where: str, default: str = "") -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise InvalidArgument(f"registries.conf: {where}.{key} must be a string")
    return value.strip().rstrip("/")


def _parse_entry(table: Any, index: int) -> RegistryEntry:
    where = f"registry[{index}]"
    if not isinstance(table, Mapping):
        raise InvalidArgument(f"registries.conf: {where} must be a table")
    location = _str(table, "location", where)
    prefix = _str(table, "prefix", where) or location
    if not prefix:
        raise InvalidArgument(f"registries.conf: {where} needs a prefix or a location")
    if prefix.startswith("*.") and location:
        raise InvalidArgument(
            f"registries.conf: {where}: a wildcard prefix {prefix!r} cannot have a location"
        )
    if "*" in prefix[1:]:
        raise InvalidArgument(f"registries.conf: {where}: invalid wildcard prefix {prefix!r}")
    mirrors: list[Mirror] = []
    for j, mtable in enumerate(table.get("mirror", []) or []):
        mwhere = f"{where}.mirror[{j}]"
        if not isinstance(mtable, Mapping):
            raise InvalidArgument(f"registries.conf: {mwhere} must be a table")
        mloc = _str(mtable, "location", mwhere)
        if not mloc:
            raise InvalidArgument(f"registries.conf: {mwhere} needs a location")
        mode = _str(mtable, "pull-from-mirror", mwhere, "all") or "all"
        if mode not in _PULL_FROM_MIRROR:
            raise InvalidArgument(
                f"registries.conf: {mwhere}.pull-from-mirror must be one of "
                f"{', '.join(_PULL_FROM_MIRROR)}"
            )
        mirrors.append(Mirror(mloc, _bool(mtable, "insecure", mwhere), mode))
    return RegistryEntry(
        prefix=prefix,
        location=location or (prefix if not prefix.startswith("*.") else ""),
        insecure=_bool(table, "insecure", where),
        blocked=_bool(table, "blocked", where),
        mirror_by_digest_only=_bool(table, "mirror-by-digest-only", where),
        mirrors=tuple(mirrors),
    )


def _v1_entries(v1: Mapping[str, Any]) -> tuple[list[str], list[RegistryEntry]]:
    def names(key: str) -> list[str]:
        table = v1.get(key) or {}
        return [str(n) for n in table.get("registries", [])] if isinstance(table, Mapping) else []

    insecure, blocked = set(names("insecure")), set(names("block"))
    entries = [
        RegistryEntry(prefix=n, location=n, insecure=n in insecure, blocked=n in blocked)
        for n in sorted(insecure | blocked)
    ]
    return names("search"), entries


def from_dict(data: Mapping[str, Any], insecure_registries: Iterable[str] = ()) -> RegistriesConfig:
    """Build a config from already-parsed TOML (also usable for a table in runtimed.toml)."""
    search = data.get("unqualified-search-registries", [])
    if not isinstance(search, list) or not all(isinstance(s, str) for s in search):
        raise InvalidArgument("registries.conf: unqualified-search-registries must be strings")
    entries = [_parse_entry(t, i) for i, t in enumerate(data.get("registry", []) or [])]
    v1 = data.get("registries")
    if isinstance(v1, Mapping):
        if entries or search:
            raise InvalidArgument("registries.conf mixes the v1 [registries] and v2 formats")
        search, entries = _v1_entries(v1)
    seen: set[str] = set()
    for entry in entries:
        if entry.prefix in seen:
            raise InvalidArgument(f"registries.conf: prefix {entry.prefix!r} is defined twice")
        seen.add(entry.prefix)
    return RegistriesConfig(
        entries, unqualified_search_registries=search, insecure_registries=insecure_registries
    )


def from_toml(text: str, insecure_registries: Iterable[str] = ()) -> RegistriesConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"registries.conf is not valid TOML: {exc}") from None
    return from_dict(data, insecure_registries)


def default_paths() -> list[Path]:
    """The user's file if present, else the system one (as rootless podman does)."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [
        Path(config_home) / "containers" / "registries.conf",
        Path("/etc/containers/registries.conf"),
    ]


def load(
    path: Path | str | None = None, insecure_registries: Iterable[str] = ()
) -> RegistriesConfig:
    """Load registries.conf; an explicit path must exist, the defaults may not."""
    if path is not None:
        candidates = [Path(path)]
    else:
        candidates = [p for p in default_paths() if p.is_file()][:1]
    for candidate in candidates:
        try:
            text = candidate.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFound(f"registries config {candidate} does not exist") from None
        except OSError as exc:
            raise InvalidArgument(f"cannot read registries config {candidate}: {exc}") from None
        try:
            config = from_toml(text, insecure_registries)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{candidate}: {exc.message}") from None
        log.debug("registries_conf_loaded", path=str(candidate), entries=len(config.registries))
        return config
    return RegistriesConfig(insecure_registries=insecure_registries)

"""Image references: parsing and docker-style normalization.

Follows the distribution reference grammar and Docker's normalization rules,
so a reference means the same image here as it does to `docker pull`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from runtimed.errors import InvalidArgument, shown

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = re.compile(rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*", re.ASCII)
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?",
    re.ASCII,
)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[+._-][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_HEX64 = re.compile(r"[a-f0-9]{64}")
# Lengths of the lowercase hex encodings go-digest accepts for each algorithm.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


def _invalid(reason: str, text: str) -> InvalidArgument:
    return InvalidArgument(f"invalid reference format: {reason} (in {shown(text)!r})")


def validate_digest(digest: str) -> str:
    """Return `digest` if it is a well-formed digest of a supported algorithm."""
    if not _DIGEST.fullmatch(digest):
        raise InvalidArgument(f"invalid digest format: {digest!r}")
    algorithm, _, encoded = digest.partition(":")
    expected = _DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        raise InvalidArgument(f"unsupported digest algorithm {algorithm!r} in {digest!r}")
    if len(encoded) != expected:
        raise InvalidArgument(
            f"invalid {algorithm} digest {digest!r}: expected {expected} hex characters"
        )
    if encoded != encoded.lower():
        raise InvalidArgument(f"invalid digest {digest!r}: hex must be lowercase")
    return digest


def is_digest(text: str) -> bool:
    try:
        validate_digest(text)
    except InvalidArgument:
        return False
    return True


@dataclass(frozen=True)
class Reference:
    """A fully qualified image reference (domain always present)."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        return self.name + self._suffix()

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag else ""
        return out + (f"@{self.digest}" if self.digest else "")

    def familiar_name(self) -> str:
        """The short name Docker shows: busybox, user/app, host:5000/repo."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        if path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in path[len(OFFICIAL_REPO_PREFIX) :]:
            return path[len(OFFICIAL_REPO_PREFIX) :]
        return path

    def familiar(self) -> str:
        """Short name with tag and digest, as `docker images` displays it."""
        return self.familiar_name() + self._suffix()

    def with_tag(self, tag: str | None) -> Reference:
        if tag is not None and not _TAG.fullmatch(tag):
            raise _invalid("invalid tag format", tag)
        return replace(self, tag=tag)

    def with_digest(self, digest: str | None) -> Reference:
        if digest is not None:
            validate_digest(digest)
        return replace(self, digest=digest)

    @property
    def fetch_reference(self) -> str:
        """What goes after /manifests/: the digest wins over the tag."""
        return self.digest or self.tag or "latest"


def _split_domain(name: str) -> tuple[str, str]:
    # Docker's rule: the first component is a registry when it has a '.' or
    # ':', is "localhost", or contains uppercase (which a path never may).
    first, sep, rest = name.partition("/")
    if not sep or (
        "." not in first and ":" not in first and first != "localhost" and first == first.lower()
    ):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_reference(text: str) -> Reference:
    """Parse and normalize an image reference the way `docker pull` does.

    The tag defaults to "latest" only when there is no digest.
    """
    if not text:
        raise InvalidArgument("invalid reference format: empty reference")
    if _HEX64.fullmatch(text):
        raise InvalidArgument(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    rest, at, digest = text.partition("@")
    if at:
        if not _DIGEST.fullmatch(digest):
            raise _invalid("invalid digest format", text)
        try:
            validate_digest(digest)
        except InvalidArgument as exc:
            raise _invalid(exc.message, text) from None
    tag: str | None = None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise _invalid("invalid tag format", text)
    if not rest:
        raise _invalid("repository name must have at least one component", text)
    domain, path = _split_domain(rest)
    if not _DOMAIN.fullmatch(domain):
        raise _invalid(f"invalid registry domain {domain!r}", text)
    for component in path.split("/"):
        if not component:
            raise _invalid("repository name has an empty path component", text)
        if not _PATH_COMPONENT.fullmatch(component):
            if _PATH_COMPONENT.fullmatch(component.lower()):
                raise _invalid("repository name must be lowercase", text)
            raise _invalid(f"invalid repository path component {component!r}", text)
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters", text
        )
    if tag is None and not at:
        tag = "latest"
    return Reference(domain=domain, path=path, tag=tag, digest=digest if at else None)

"""OCI / Docker image manifests: media types, descriptors, platforms.

Parses image manifests and indexes (manifest lists) in both the OCI and the
Docker schema-2 flavours, and picks the manifest for a platform the way
containerd's default matcher does.
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtimed.errors import InvalidArgument, NotFound
from runtimed.images.reference import validate_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_MEDIA_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_MEDIA_TYPES = frozenset(
    {
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        OCI_LAYER_ND,
        OCI_LAYER_ND_GZIP,
        OCI_LAYER_ND_ZSTD,
        DOCKER_LAYER_GZIP,
        DOCKER_FOREIGN_LAYER_GZIP,
    }
)
# Accept header for manifest requests; schema 1 is deliberately absent.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST])

# Kernel machine names to GOARCH names (and default variant) as registries use them.
_MACHINE_TO_GO: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "i386": ("386", None),
    "i686": ("386", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v7"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64": ("mips64le", None),
    "loongarch64": ("loong64", None),
}
# Architecture aliases seen in the wild, normalized like containerd does.
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386"}


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text

    @classmethod
    def host(cls) -> Platform:
        """linux plus this machine's architecture in GOARCH terms."""
        machine = _platform.machine().lower()
        arch, variant = _MACHINE_TO_GO.get(machine, (machine, None))
        return cls(os="linux", architecture=arch, variant=variant)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse "os/arch[/variant]" (e.g. linux/arm64/v8); "arch" alone implies linux."""
        parts = text.strip().lower().split("/")
        if len(parts) == 1 and parts[0]:
            return cls("linux", parts[0]).normalized()
        if len(parts) in (2, 3) and all(parts):
            return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None).normalized()
        raise InvalidArgument(f"invalid platform {text!r}: expected os/arch[/variant]")

    @classmethod
    def from_json(cls, data: Any) -> Platform:
        if not isinstance(data, Mapping):
            raise InvalidArgument("manifest platform must be an object")
        os_name, arch = data.get("os"), data.get("architecture")
        if not isinstance(os_name, str) or not isinstance(arch, str):
            raise InvalidArgument("manifest platform needs string os and architecture")
        features = data.get("os.features") or ()
        return cls(
            os=os_name,
            architecture=arch,
            variant=data.get("variant") or None,
            os_version=data.get("os.version") or None,
            os_features=tuple(str(f) for f in features),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        return out

    def normalized(self) -> Platform:
        arch = _ARCH_ALIASES.get(self.architecture.lower(), self.architecture.lower())
        variant = self.variant.lower() if self.variant else None
        if arch == "arm64" and variant in (None, "8"):
            variant = "v8"
        elif arch == "arm" and variant is None:
            variant = "v7"
        elif arch == "arm" and variant in ("5", "6", "7", "8"):
            variant = "v" + variant
        elif arch == "amd64" and variant == "v1":
            variant = None
        return Platform(self.os.lower(), arch, variant, self.os_version, self.os_features)

    def match_rank(self, candidate: Platform) -> int | None:
        """How well `candidate` runs here: 0 is exact, higher is worse, None is no match."""
        want, have = self.normalized(), candidate.normalized()
        if want.os != have.os or want.architecture != have.architecture:
            return None
        if want.variant == have.variant:
            return 0
        # Older variants of arm / arm64 / amd64 still run on newer hardware.
        order = _VARIANT_ORDER.get(want.architecture)
        if order is None or have.variant not in order or want.variant not in order:
            return None
        gap = order.index(want.variant) - order.index(have.variant)
        return gap if gap > 0 else None


_VARIANT_ORDER: dict[str, list[str | None]] = {
    "arm": ["v5", "v6", "v7", "v8"],
    "arm64": ["v8", "v8.1", "v8.2", "v8.3", "v8.4", "v8.5", "v9", "v9.1", "v9.2"],
    "amd64": [None, "v2", "v3", "v4"],
}


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    platform: Platform | None = None

    @classmethod
    def from_json(cls, data: Any, what: str) -> Descriptor:
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"{what}: descriptor must be an object")
        media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise InvalidArgument(f"{what}: descriptor has no mediaType")
        if not isinstance(digest, str):
            raise InvalidArgument(f"{what}: descriptor has no digest")
        try:
            validate_digest(digest)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{what}: {exc.message}") from None
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidArgument(f"{what}: descriptor {digest} has an invalid size {size!r}")
        urls = data.get("urls") or ()
        annotations = data.get("annotations") or {}
        plat = data.get("platform")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            urls=tuple(str(u) for u in urls),
            annotations={str(k): str(v) for k, v in dict(annotations).items()},
            platform=Platform.from_json(plat) if plat is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    def check_is_image(self, what: str) -> None:
        """Refuse artifacts (helm charts, signatures, ...) that are not runnable images."""
        if self.config.media_type not in CONFIG_MEDIA_TYPES:
            raise InvalidArgument(
                f"{what} is not a container image (config media type {self.config.media_type})"
            )
        for layer in self.layers:
            if layer.media_type not in LAYER_MEDIA_TYPES:
                raise InvalidArgument(
                    f"{what}: unsupported layer media type {layer.media_type} ({layer.digest})"
                )


@dataclass(frozen=True)
class ImageIndex:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    def platforms(self) -> list[Platform]:
        return [m.platform for m in self.manifests if m.platform is not None]

    def select(self, wanted: Platform, what: str) -> Descriptor:
        """The manifest for `wanted`, preferring exact variants; NotFound if none runs."""
        best: tuple[int, int, Descriptor] | None = None
        for position, desc in enumerate(self.manifests):
            if (
                desc.platform is None
                or desc.media_type not in MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES
            ):
                continue
            rank = wanted.match_rank(desc.platform)
            if rank is not None and (best is None or (rank, position) < best[:2]):
                best = (rank, position, desc)
        if best is None:
            available = ", ".join(sorted({str(p) for p in self.platforms()})) or "none"
            raise NotFound(
                f"no image for platform {wanted.normalized()} in {what}, available: {available}"
            )
        return best[2]


def _load_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{what}: manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what}: manifest must be a JSON object")
    return doc


def detect_media_type(doc: Mapping[str, Any], header_type: str | None) -> str:
    """Media type from the document itself, else the HTTP header, else the shape."""
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if doc.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1
    header = (header_type or "").split(";")[0].strip()
    if header in INDEX_MEDIA_TYPES | MANIFEST_MEDIA_TYPES:
        return header
    # OCI allows mediaType to be omitted; fall back to the document's shape.
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def parse_manifest(
    data: bytes, media_type: str | None = None, *, what: str = "manifest"
) -> ImageManifest | ImageIndex:
    """Parse manifest bytes; `what` names the source in error messages."""
    doc = _load_json(data, what)
    kind = detect_media_type(doc, media_type)
    if kind in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED) or doc.get("schemaVersion") == 1:
        raise InvalidArgument(
            f"{what}: Docker image manifest schema 1 is not supported; "
            "push the image again with a current client"
        )
    if doc.get("schemaVersion") != 2:
        raise InvalidArgument(f"{what}: unsupported schemaVersion {doc.get('schemaVersion')!r}")
    annotations = {str(k): str(v) for k, v in dict(doc.get("annotations") or {}).items()}
    if kind in INDEX_MEDIA_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise InvalidArgument(f"{what}: index has no manifests list")
        manifests = tuple(Descriptor.from_json(m, what) for m in entries)
        return ImageIndex(kind, manifests, annotations)
    if kind in MANIFEST_MEDIA_TYPES:
        if "config" not in doc:
            raise InvalidArgument(f"{what}: manifest has no config")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise InvalidArgument(f"{what}: manifest has no layers list")
        return ImageManifest(
            kind,
            Descriptor.from_json(doc["config"], what),
            tuple(Descriptor.from_json(layer, what) for layer in layers),
            annotations,
        )
    raise InvalidArgument(f"{what}: unsupported manifest media type {kind}")

"""Build OCI / Docker image artefacts in memory: layers, configs, manifests, indexes.

Everything here is deterministic (fixed mtimes, sorted members, stable JSON) so
two test runs produce the same digests and a failure can be reproduced.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import zstandard

Compression = Literal["gzip", "zstd", "none"]
Kind = Literal["oci", "docker"]

# 2023-11-14T22:13:20Z: any fixed value works, it only has to be stable.
MTIME = 1_700_000_000
CREATED = "2024-01-01T00:00:00Z"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

LAYER_MEDIA_TYPES: dict[tuple[Kind, Compression], str] = {
    ("oci", "none"): "application/vnd.oci.image.layer.v1.tar",
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    # Docker schema 2 only standardises gzip; the other two are the names
    # containerd uses, included so mismatched combinations can be tested.
    ("docker", "none"): "application/vnd.docker.image.rootfs.diff.tar",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ("docker", "zstd"): "application/vnd.docker.image.rootfs.diff.tar.zstd",
}

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# --- layer entries -------------------------------------------------------------
# Paths are written into the tar exactly as given (no normalisation), so hostile
# names such as "/abs" or "../../x" can be produced on purpose.


@dataclass(frozen=True)
class File:
    path: str
    content: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Dir:
    path: str
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Symlink:
    path: str
    target: str
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Hardlink:
    """A tar hard link; `target` is the member name of an earlier entry."""

    path: str
    target: str


@dataclass(frozen=True)
class Device:
    path: str
    kind: Literal["char", "block", "fifo"] = "char"
    major: int = 0
    minor: int = 0
    mode: int = 0o666


@dataclass(frozen=True)
class Whiteout:
    """Deletes `path` from lower layers (written as `dir/.wh.name`)."""

    path: str

    @property
    def member(self) -> str:
        head, _, name = self.path.rstrip("/").rpartition("/")
        return f"{head}/.wh.{name}" if head else f".wh.{name}"


@dataclass(frozen=True)
class Opaque:
    """Hides everything lower layers put in directory `path`."""

    path: str

    @property
    def member(self) -> str:
        return f"{self.path.rstrip('/')}/.wh..wh..opq"


Entry = File | Dir | Symlink | Hardlink | Device | Whiteout | Opaque


def member_name(entry: Entry) -> str:
    """The tar member name an entry is written under."""
    return entry.member if isinstance(entry, Whiteout | Opaque) else entry.path


def _tarinfo(entry: Entry) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(member_name(entry))
    info.mtime = MTIME
    info.uname = info.gname = ""
    data: bytes | None = None
    match entry:
        case File():
            info.type, info.mode, info.size = tarfile.REGTYPE, entry.mode, len(entry.content)
            info.uid, info.gid = entry.uid, entry.gid
            data = entry.content
        case Dir():
            info.type, info.mode = tarfile.DIRTYPE, entry.mode
            info.uid, info.gid = entry.uid, entry.gid
        case Symlink():
            info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.target
            info.uid, info.gid = entry.uid, entry.gid
        case Hardlink():
            info.type, info.mode, info.linkname = tarfile.LNKTYPE, 0o644, entry.target
        case Device():
            types = {"char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}
            info.type, info.mode = types[entry.kind], entry.mode
            info.devmajor, info.devminor = entry.major, entry.minor
        case Whiteout() | Opaque():
            # Whiteout markers are empty regular files by convention.
            info.type, info.mode = tarfile.REGTYPE, 0o644
    return info, data


def build_tar(entries: Iterable[Entry], *, sort: bool = True) -> bytes:
    """An uncompressed tar of `entries`.

    With `sort`, members are ordered by name, except that hard links go last so
    their targets are always written first.
    """
    items = list(entries)
    if sort:
        items.sort(key=lambda e: (isinstance(e, Hardlink), member_name(e)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in items:
            info, data = _tarinfo(entry)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def compress(data: bytes, compression: Compression) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def decompress(blob: bytes, compression: Compression) -> bytes:
    if compression == "gzip":
        return gzip.decompress(blob)
    if compression == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    return blob


class Layer:
    """One filesystem layer: the tar, its compressed blob and their digests."""

    def __init__(
        self,
        entries: Iterable[Entry],
        *,
        compression: Compression = "gzip",
        sort: bool = True,
        created_by: str = "",
    ) -> None:
        self.entries: tuple[Entry, ...] = tuple(entries)
        self.compression: Compression = compression
        self.created_by = created_by
        self.tar = build_tar(self.entries, sort=sort)
        self.blob = compress(self.tar, compression)
        self.digest = sha256_digest(self.blob)
        self.diff_id = sha256_digest(self.tar)

    @classmethod
    def from_tar(
        cls, tar: bytes, *, compression: Compression = "gzip", created_by: str = ""
    ) -> Layer:
        """A layer from tar bytes made elsewhere (e.g. a hand-edited tar)."""
        layer = cls.__new__(cls)
        layer.entries, layer.compression, layer.created_by = (), compression, created_by
        layer.tar = tar
        layer.blob = compress(tar, compression)
        layer.digest = sha256_digest(layer.blob)
        layer.diff_id = sha256_digest(tar)
        return layer

    @property
    def size(self) -> int:
        return len(self.blob)

    def media_type(self, kind: Kind) -> str:
        return LAYER_MEDIA_TYPES[(kind, self.compression)]

    def descriptor(self, kind: Kind) -> dict[str, Any]:
        return {"mediaType": self.media_type(kind), "digest": self.digest, "size": self.size}

    def __repr__(self) -> str:
        return f"Layer({self.digest[:19]}, {self.compression}, {self.size} bytes)"


# --- images and indexes ----------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Platform:
        """Parse "os/arch[/variant]", e.g. "linux/arm64/v8"."""
        parts = spec.split("/")
        if len(parts) not in (2, 3):
            raise ValueError(f"platform {spec!r} is not os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def as_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Image:
    layers: tuple[Layer, ...]
    config: bytes
    manifest: bytes
    kind: Kind
    platform: Platform

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config)

    @property
    def digest(self) -> str:
        """The manifest digest: what `repo@digest` names."""
        return sha256_digest(self.manifest)

    @property
    def media_type(self) -> str:
        return OCI_MANIFEST if self.kind == "oci" else DOCKER_MANIFEST

    @property
    def config_json(self) -> dict[str, Any]:
        return json.loads(self.config)

    def blobs(self) -> dict[str, bytes]:
        """Every blob a registry needs before the manifest can be put, by digest."""
        out = {self.config_digest: self.config}
        out.update((layer.digest, layer.blob) for layer in self.layers)
        return out


@dataclass(frozen=True)
class Index:
    """An OCI image index or a Docker manifest list."""

    images: tuple[Image, ...]
    platforms: tuple[Platform, ...]  # as listed in the index, one per image
    manifest: bytes
    kind: Kind

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def media_type(self) -> str:
        return OCI_INDEX if self.kind == "oci" else DOCKER_MANIFEST_LIST

    def image_for(self, platform: str | Platform) -> Image:
        wanted = Platform.parse(platform) if isinstance(platform, str) else platform
        for image, listed in zip(self.images, self.platforms, strict=True):
            if listed == wanted:
                return image
        raise KeyError(f"no image for {wanted} in index")


def default_config() -> dict[str, Any]:
    return {"Env": [DEFAULT_PATH], "Cmd": ["sh"], "WorkingDir": "/"}


def build_image(
    layers: Sequence[Layer],
    *,
    config_overrides: Mapping[str, Any] | None = None,
    architecture: str = "amd64",
    os: str = "linux",
    variant: str | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
    created: str = CREATED,
    kind: Kind = "docker",
    annotations: Mapping[str, str] | None = None,
) -> Image:
    """An image config and manifest over `layers`.

    `config_overrides` uses Docker's config key names (Cmd, Entrypoint, Env,
    WorkingDir, User, ExposedPorts, Volumes, Labels, StopSignal); a value of
    None removes a default. Without `history`, one entry per layer is made
    from each layer's `created_by`.
    """
    runtime_config = default_config()
    for key, value in (config_overrides or {}).items():
        if value is None:
            runtime_config.pop(key, None)
        else:
            runtime_config[key] = value
    if history is None:
        history = [
            {"created": created, "created_by": layer.created_by or f"layer {i}"}
            for i, layer in enumerate(layers)
        ]
    platform = Platform(os, architecture, variant)
    config: dict[str, Any] = {
        **platform.as_json(),
        "created": created,
        "config": runtime_config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [dict(h) for h in history],
    }
    config_bytes = canonical_json(config)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if kind == "oci" else DOCKER_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG if kind == "oci" else DOCKER_CONFIG,
            "digest": sha256_digest(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [layer.descriptor(kind) for layer in layers],
    }
    if annotations:
        if kind != "oci":
            raise ValueError("annotations exist only in OCI manifests")
        manifest["annotations"] = dict(annotations)
    return Image(tuple(layers), config_bytes, canonical_json(manifest), kind, platform)


IndexEntry = Image | tuple[Image, Platform | str]


def build_index(entries: Sequence[IndexEntry], *, kind: Kind = "oci") -> Index:
    """An index over images, each listed under the platform it was built for
    unless an (image, platform) pair says otherwise."""
    images: list[Image] = []
    platforms: list[Platform] = []
    for entry in entries:
        image, listed = entry if isinstance(entry, tuple) else (entry, entry.platform)
        images.append(image)
        platforms.append(Platform.parse(listed) if isinstance(listed, str) else listed)
    manifests = []
    for image, platform in zip(images, platforms, strict=True):
        if image.kind != kind:
            raise ValueError(f"a {kind} index cannot list a {image.kind} manifest")
        manifests.append(
            {
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": len(image.manifest),
                "platform": platform.as_json(),
            }
        )
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX if kind == "oci" else DOCKER_MANIFEST_LIST,
        "manifests": manifests,
    }
    return Index(tuple(images), tuple(platforms), canonical_json(body), kind)


@dataclass
class TarView:
    """Read-only look into a layer tar, for assertions in tests."""

    members: dict[str, tarfile.TarInfo] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def of(cls, tar: bytes) -> TarView:
        view = cls()
        with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as tf:
            for info in tf.getmembers():
                view.members[info.name] = info
                if info.isreg():
                    extracted = tf.extractfile(info)
                    assert extracted is not None
                    view.contents[info.name] = extracted.read()
        return view

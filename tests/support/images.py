"""Images made from Debian's static busybox, and the scenarios tests pull.

Each `push_*` function builds one scenario, pushes it to a `Registry` and
returns what a test needs to assert on: references, digests, and the files a
correctly unpacked root filesystem must (or must not) contain.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.support.oci import (
    Compression,
    Device,
    Dir,
    Entry,
    File,
    Hardlink,
    Image,
    Index,
    Kind,
    Layer,
    Opaque,
    Platform,
    Symlink,
    Whiteout,
    build_image,
    member_name,
    sha256_digest,
)
from tests.support.registry import Pushed, Registry, push, push_index

__all__ = [
    "APPLETS",
    "BUSYBOX",
    "CorruptScenario",
    "EvilCase",
    "EvilImages",
    "ImageScenario",
    "IndexScenario",
    "PushedImages",
    "big_image",
    "busybox_rootfs_entries",
    "busybox_rootfs_layer",
    "push",
    "push_all",
    "push_busybox",
    "push_corrupt",
    "push_evil",
    "push_index",
    "push_mixed",
    "push_multiarch",
    "rootfs_tarball",
]

BUSYBOX = Path("/bin/busybox")
LinkStyle = Literal["hardlink", "symlink"]

APPLETS = [
    *("sh", "ls", "cat", "echo", "true", "false", "sleep", "id", "env", "mkdir", "rm"),
    *("touch", "wc", "head", "printf", "hostname", "ps", "kill", "test", "[", "grep"),
    *("sed", "seq", "yes", "cut", "tr", "date", "nc", "ip", "wget"),
]

PASSWD = (
    b"root:x:0:0:root:/root:/bin/sh\n"
    b"app:x:1000:1000:app:/home/app:/bin/sh\n"
    b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = b"root:x:0:\napp:x:1000:\nnogroup:x:65534:\n"
HOSTNAME = b"busybox\n"
HOSTS = b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


@functools.cache
def _busybox_binary() -> bytes:
    return BUSYBOX.read_bytes()


def busybox_rootfs_entries(*, links: LinkStyle = "hardlink") -> list[Entry]:
    """A minimal root filesystem: /bin/busybox, its applets, users and the usual dirs.

    Debian's static busybox shell runs applets in-process, so `sh -c ls` never
    execs /bin/ls whatever the link style; hard links (the default, as in the
    official busybox image) give every applet its own real file for direct exec.
    """
    entries: list[Entry] = [
        Dir(d) for d in ("bin", "dev", "etc", "home", "proc", "run", "sys", "usr", "usr/bin", "var")
    ]
    entries += [
        Dir("home/app", 0o755, 1000, 1000),
        Dir("root", 0o700),
        Dir("tmp", 0o1777),
        Dir("var/tmp", 0o1777),
        File("bin/busybox", _busybox_binary(), 0o755),
        File("etc/passwd", PASSWD),
        File("etc/group", GROUP),
        File("etc/hostname", HOSTNAME),
        File("etc/hosts", HOSTS),
    ]
    for applet in APPLETS:
        if links == "hardlink":
            entries.append(Hardlink(f"bin/{applet}", "bin/busybox"))
        else:
            entries.append(Symlink(f"bin/{applet}", "busybox"))
    return entries


@functools.cache
def busybox_rootfs_layer(
    *, links: LinkStyle = "hardlink", compression: Compression = "gzip"
) -> Layer:
    """The base layer every scenario starts from (cached: it holds a 2 MB binary)."""
    return Layer(
        busybox_rootfs_entries(links=links),
        compression=compression,
        created_by="ADD busybox-static rootfs /",
    )


def rootfs_tarball(
    path: Path, *, links: LinkStyle = "hardlink", compression: Compression = "none"
) -> Path:
    """Write a plain rootfs tar (for `runtimectl import`) and return its path."""
    path.write_bytes(busybox_rootfs_layer(links=links, compression=compression).blob)
    return path


def big_image(
    total_mb: int = 100,
    layers: int = 5,
    *,
    seed: int = 0,
    compression: Compression = "gzip",
    kind: Kind = "docker",
) -> Image:
    """busybox plus `layers` layers of incompressible data totalling `total_mb` MiB.

    The data comes from a seeded PRNG, so digests are the same every run.
    """
    rng = random.Random(seed)
    per_layer = total_mb * 2**20 // layers
    data_layers = [
        Layer(
            [Dir("big"), File(f"big/part-{i}.bin", rng.randbytes(per_layer))],
            compression=compression,
            created_by=f"ADD part-{i}.bin /big/",
        )
        for i in range(layers)
    ]
    return build_image(
        [busybox_rootfs_layer(), *data_layers],
        kind=kind,
        config_overrides={"Labels": {"org.runtimed.test": "big"}},
    )


# --- scenarios -------------------------------------------------------------------


@dataclass(frozen=True)
class ImageScenario:
    pushed: Pushed
    image: Image
    files: dict[str, bytes]  # absolute path in the container -> exact content
    absent: tuple[str, ...]  # paths a correct unpack must not leave behind
    dirs: tuple[str, ...]  # paths that must be directories

    @property
    def ref(self) -> str:
        return self.pushed.ref

    @property
    def digest_ref(self) -> str:
        return self.pushed.digest_ref

    @property
    def digest(self) -> str:
        return self.image.digest


MOTD = b"welcome to the runtimed test image\n"
BUSYBOX_CONFIG = {
    "Env": [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "GREETING=hello",
    ],
    "Cmd": ["sh"],
    "WorkingDir": "/",
    "ExposedPorts": {"8080/tcp": {}},
    "Labels": {"org.runtimed.test": "busybox"},
    "StopSignal": "SIGTERM",
}


def _layered_content(compressions: Sequence[Compression]) -> list[Layer]:
    """busybox, then files, then deletions: exercises whiteouts and opaque dirs."""
    base, add, delete = compressions
    return [
        busybox_rootfs_layer(compression=base),
        Layer(
            [
                File("etc/motd", MOTD),
                Dir("data"),
                File("data/keep", b"keep\n"),
                File("data/gone", b"gone\n"),
                Dir("opt"),
                File("opt/old", b"old\n"),
            ],
            compression=add,
            created_by="ADD motd data opt /",
        ),
        Layer(
            [
                Dir("data"),
                Whiteout("data/gone"),
                Dir("opt"),
                Opaque("opt"),
                File("opt/fresh", b"fresh\n"),
            ],
            compression=delete,
            created_by="RUN rm /data/gone && rm -rf /opt/* && touch /opt/fresh",
        ),
    ]


def _layered_scenario(pushed: Pushed, image: Image) -> ImageScenario:
    return ImageScenario(
        pushed=pushed,
        image=image,
        files={
            "/etc/motd": MOTD,
            "/data/keep": b"keep\n",
            "/opt/fresh": b"fresh\n",
            "/etc/passwd": PASSWD,
        },
        absent=("/data/gone", "/opt/old", "/data/.wh.gone", "/opt/.wh..wh..opq"),
        dirs=("/data", "/opt", "/tmp", "/home/app"),
    )


def push_busybox(registry: Registry) -> ImageScenario:
    """`library/busybox:1.36`: Docker schema 2, three gzip layers."""
    image = build_image(_layered_content(["gzip", "gzip", "gzip"]), config_overrides=BUSYBOX_CONFIG)
    return _layered_scenario(push(registry, "library/busybox", "1.36", image), image)


def push_mixed(registry: Registry) -> ImageScenario:
    """`test/mixed:1`: the busybox content as OCI, layers gzip, zstd, uncompressed."""
    image = build_image(
        _layered_content(["gzip", "zstd", "none"]), config_overrides=BUSYBOX_CONFIG, kind="oci"
    )
    return _layered_scenario(push(registry, "test/mixed", "1", image), image)


@dataclass(frozen=True)
class IndexScenario:
    pushed: Pushed
    index: Index
    arch_file: str  # holds the platform's architecture name, e.g. b"arm64"

    @property
    def ref(self) -> str:
        return self.pushed.ref

    def image_for(self, platform: str) -> Image:
        return self.index.image_for(platform)

    def expected_arch(self, platform: str) -> bytes:
        return Platform.parse(platform).architecture.encode()


def push_multiarch(
    registry: Registry, repo: str = "test/multiarch", tag: str = "1", *, kind: Kind = "oci"
) -> IndexScenario:
    """An index with linux/amd64 and linux/arm64/v8 images that differ in /etc/arch.

    Both carry the amd64 busybox binary, so either can run here; only the marker
    file tells which one was picked.
    """
    images = []
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        marker = Layer([File("etc/arch", arch.encode())], created_by=f"ADD arch={arch}")
        images.append(
            build_image(
                [busybox_rootfs_layer(), marker],
                architecture=arch,
                variant=variant,
                kind=kind,
                config_overrides={"Labels": {"org.runtimed.test.arch": arch}},
            )
        )
    pushed, index = push_index(registry, repo, tag, images, kind=kind)
    return IndexScenario(pushed, index, "/etc/arch")


# Hostile layers. Each image is busybox plus one crafted layer that tries to
# reach `target_dir`, a directory outside any rootfs that the test user can
# write to, so a vulnerable unpacker really would succeed.

VICTIM_CONTENT = b"victim: must stay unchanged\n"
_UP = "../" * 24  # more than enough to reach / from any unpack directory


# "contained": the pull fails with a clear error, or succeeds with everything
# kept inside the rootfs (as containerd does for absolute names); either way
# EvilImages.assert_untouched() holds. "skipped": the pull succeeds and the
# entry is simply not created.
Expect = Literal["contained", "skipped"]


@dataclass(frozen=True)
class EvilCase:
    name: str
    description: str
    expect: Expect
    member: str  # the crafted tar member; for "skipped", its path in the container
    pushed: Pushed
    image: Image

    @property
    def ref(self) -> str:
        return self.pushed.ref


@dataclass(frozen=True)
class EvilImages:
    target_dir: Path
    victim: Path
    cases: dict[str, EvilCase]

    def assert_untouched(self) -> None:
        """Fail if any layer wrote, linked or removed anything in `target_dir`."""
        names = sorted(p.name for p in self.target_dir.iterdir())
        if names != [self.victim.name]:
            raise AssertionError(f"a layer escaped the rootfs: {self.target_dir} holds {names}")
        st = self.victim.stat()
        if st.st_nlink != 1:
            raise AssertionError(f"{self.victim} gained a hard link (nlink {st.st_nlink})")
        if self.victim.read_bytes() != VICTIM_CONTENT:
            raise AssertionError(f"{self.victim} was overwritten through a layer")


def _evil_layers(target: Path) -> dict[str, tuple[str, Expect, list[Entry]]]:
    rel = _UP + str(target).lstrip("/")  # a relative path that climbs to `target`
    victim = f"{target}/victim"
    return {
        "abs-path": (
            "file with an absolute name",
            "contained",
            [File(f"{target}/abs-pwned", b"x")],
        ),
        "dotdot": ("file named ../../…/escape", "contained", [File(f"{rel}/escape", b"x")]),
        "symlink-dir": (
            "relative symlinked dir pointing out, then a file through it",
            "contained",
            [Symlink("a", rel), File("a/pwned", b"x")],
        ),
        "symlink-abs-dir": (
            "absolute symlinked dir pointing out, then a file through it",
            "contained",
            [Symlink("b", str(target)), File("b/pwned-abs", b"x")],
        ),
        "symlink-file": (
            "symlink to an outside file, then a regular file of that name (must replace the link)",
            "contained",
            [Symlink("link", f"{_UP}{victim.lstrip('/')}"), File("link", b"pwned\n")],
        ),
        "hardlink-outside": (
            "hard link to ../../…/victim",
            "contained",
            [Hardlink("stolen", f"{_UP}{victim.lstrip('/')}")],
        ),
        "hardlink-abs": (
            "hard link to an absolute outside path",
            "contained",
            [Hardlink("stolen-abs", victim)],
        ),
        "whiteout-dotdot": (
            "whiteout of ../../…/victim",
            "contained",
            [Whiteout(f"{_UP}{victim.lstrip('/')}")],
        ),
        "device-char": (
            "char device 1:1 (/dev/mem); accepted but never created",
            "skipped",
            [Dir("dev"), Device("dev/evil-mem", "char", 1, 1, 0o666)],
        ),
    }


def push_evil(registry: Registry, target_dir: Path) -> EvilImages:
    """`test/evil-<case>:1` for every hostile layer; `target_dir` gets a victim file."""
    target_dir = target_dir.resolve()
    victim = target_dir / "victim"
    victim.write_bytes(VICTIM_CONTENT)
    cases: dict[str, EvilCase] = {}
    for name, (description, expect, entries) in _evil_layers(target_dir).items():
        # Keep the crafted order: e.g. the symlink must precede the file through it.
        crafted = Layer(entries, sort=False, created_by=f"evil: {description}")
        image = build_image([busybox_rootfs_layer(), crafted])
        member = "/" + entries[-1].path if expect == "skipped" else member_name(entries[-1])
        pushed = push(registry, f"test/evil-{name}", "1", image)
        cases[name] = EvilCase(name, description, expect, member, pushed, image)
    return EvilImages(target_dir, victim, cases)


@dataclass(frozen=True)
class CorruptScenario:
    pushed: Pushed
    image: Image
    bad_layer_digest: str  # listed in the manifest...
    served_digest: str  # ...but the registry serves bytes with this digest

    @property
    def ref(self) -> str:
        return self.pushed.ref


CORRUPT_ORIGINAL = b"ORIGINAL runtimed corrupt-blob marker\n"
CORRUPT_TAMPERED = b"TAMPERED runtimed corrupt-blob marker\n"


def push_corrupt(registry: Registry) -> CorruptScenario:
    """`test/corrupt:1`: the registry serves a layer whose bytes do not match its digest.

    distribution verifies digests on upload, so the stored blob is rewritten on
    disk afterwards. The layer is uncompressed and the replacement has the same
    length, giving a well-formed tar of the right size: only a digest check
    catches it.
    """
    layer = Layer(
        [File("etc/corrupt-marker", CORRUPT_ORIGINAL)], compression="none", created_by="corrupt"
    )
    image = build_image([busybox_rootfs_layer(), layer], kind="oci")
    pushed = push(registry, "test/corrupt", "1", image)
    data_path = registry.blob_data_path(layer.digest)
    tampered = layer.blob.replace(CORRUPT_ORIGINAL, CORRUPT_TAMPERED)
    stored = data_path.read_bytes()
    if stored == layer.blob:
        data_path.write_bytes(tampered)
    elif stored != tampered:  # neither fresh nor already tampered by an earlier call
        raise RuntimeError(f"{data_path} does not hold the layer pushed for test/corrupt")
    return CorruptScenario(pushed, image, layer.digest, sha256_digest(tampered))


@dataclass(frozen=True)
class PushedImages:
    busybox: ImageScenario
    mixed: ImageScenario
    multiarch: IndexScenario
    multiarch_docker: IndexScenario
    evil: EvilImages
    corrupt: CorruptScenario


def push_all(registry: Registry, evil_target: Path) -> PushedImages:
    return PushedImages(
        busybox=push_busybox(registry),
        mixed=push_mixed(registry),
        multiarch=push_multiarch(registry),
        multiarch_docker=push_multiarch(registry, "test/multiarch-docker", kind="docker"),
        evil=push_evil(registry, evil_target),
        corrupt=push_corrupt(registry),
    )

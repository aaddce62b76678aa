"""docker cp's file access inside a root: resolution, archives in and out, and swap races.

Each test runs with openat2(RESOLVE_IN_ROOT) and with the O_NOFOLLOW walk used
on kernels without it. The race tests swap a directory and a symlink to a
host directory from another process, as a container's process would.
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from runtimed.core import copy, copyin, copyout, inroot
from runtimed.errors import FailedPrecondition, InvalidArgument, NotFound

MTIME = 1_600_000_000
MARKER = b"HOST-SECRET-3f1c9a"

# Swaps two names for as long as it runs (renameat2 RENAME_EXCHANGE).
SWAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = (os.fsencode(p) for p in sys.argv[1:3])
print("ready", flush=True)
while True:
    if libc.renameat2(-100, a, -100, b, 2) != 0:
        sys.exit(f"renameat2: {os.strerror(ctypes.get_errno())}")
"""


@pytest.fixture(params=["openat2", "walk"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "openat2":
        assert inroot.has_openat2(), "this kernel has openat2 (Linux 5.6+)"
    monkeypatch.setattr(inroot, "_openat2_works", request.param == "openat2")
    return str(request.param)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host directory outside the root, holding a file only the host has."""
    path = tmp_path / "host"
    path.mkdir()
    (path / "secret.txt").write_bytes(MARKER)
    return path


@pytest.fixture
def root(tmp_path: Path, host: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("inside\n")
    (root / "abs").symlink_to("/")
    (root / "a" / "b" / "up").symlink_to("../../..")
    (root / "hostlink").symlink_to(host)  # absolute: names a host path
    (root / "magic").symlink_to("/proc/self/root")
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    yield root


def read_in(root_fd: int, path: str) -> bytes:
    with inroot.closing(inroot.open_in_root(root_fd, path, os.O_RDONLY)) as fd:
        return os.read(fd, 4096)


def test_paths_resolve_as_inside_the_root(impl: str, root: Path) -> None:
    with inroot.closing(inroot.open_root(root)) as root_fd:
        for path in ("a/b/f", "/abs/a/b/f", "a/b/up/a/b/f", "../../a/b/f", "abs/abs/a/./b//f"):
            assert read_in(root_fd, path) == b"inside\n", path
        for path in ("hostlink/secret.txt", "../host/secret.txt", "magic/etc/hostname"):
            with pytest.raises(FileNotFoundError) as caught:
                read_in(root_fd, path)
            assert caught.value.filename is None  # no host path in any message
        with pytest.raises(NotADirectoryError):
            read_in(root_fd, "a/b/f/x")
        with pytest.raises(OSError) as loop:
            read_in(root_fd, "loop1")
        assert loop.value.errno == errno.ELOOP
        # O_NOFOLLOW keeps a final symlink, and only the final one.
        link = inroot.open_in_root(root_fd, "abs", os.O_PATH | os.O_NOFOLLOW)
        with inroot.closing(link):
            assert os.readlink("", dir_fd=link) == "/"
        with pytest.raises(OSError) as nofollow:
            inroot.open_in_root(root_fd, "a/b/up", os.O_RDONLY | os.O_NOFOLLOW)
        assert nofollow.value.errno == errno.ELOOP
        directory = inroot.open_in_root(root_fd, "abs/a/b/up/a", os.O_RDONLY | os.O_DIRECTORY)
        with inroot.closing(directory):
            assert os.listdir(directory) == ["b"]


# --- racing a swap ---------------------------------------------------------------------------


@pytest.fixture
def racing(root: Path, host: Path) -> Iterator[Path]:
    """/w swapped with /wswap (a symlink to the host dir) without pause; yields the root."""
    (root / "w").mkdir()
    (root / "w" / "secret.txt").write_bytes(b"container\n")
    (root / "wswap").symlink_to(host)
    proc = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(root / "w"), str(root / "wswap")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield root
        assert proc.poll() is None, "the swapper stopped"
    finally:
        proc.kill()
        proc.wait()


def test_the_swap_race_is_live_by_name_and_never_wins_through_fds(impl: str, racing: Path) -> None:
    by_name_escapes = 0
    reads: dict[bytes, int] = {}
    with inroot.closing(inroot.open_root(racing)) as root_fd:
        for _ in range(3000):
            # What /proc/PID/root/w/secret.txt by name amounts to: the kernel follows
            # an absolute link from the daemon's root.
            with open(racing / "w" / "secret.txt", "rb") as f:
                by_name_escapes += f.read() == MARKER
            try:
                data = read_in(root_fd, "w/secret.txt")
            except FileNotFoundError:
                data = b"<missing>"
            reads[data] = reads.get(data, 0) + 1
    assert MARKER not in reads
    assert by_name_escapes > 0, "the swap never showed: the race did not run"
    assert reads.get(b"container\n", 0) > 0


def test_archives_in_and_out_stay_in_the_root_under_the_race(
    impl: str, racing: Path, host: Path
) -> None:
    payload = tar_of(reg("payload.txt", b"payload\n"))
    outcomes: dict[str, int] = {}
    with inroot.closing(inroot.open_root(racing)) as root_fd:
        for _ in range(300):
            try:
                copyin.extract(io.BytesIO(payload), root_fd, "/w", "box")
                outcome = "written"
            except InvalidArgument:
                outcome = "refused"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            assert not (host / "payload.txt").exists()
            try:
                fd = inroot.open_in_root(root_fd, "w/secret.txt", os.O_PATH | os.O_NOFOLLOW)
            except FileNotFoundError:
                continue
            out = io.BytesIO()
            with inroot.closing(fd):
                copyout.write_tree(fd, "secret.txt", out)
            assert MARKER not in out.getvalue()
    assert outcomes.get("written", 0) > 0


# --- archives --------------------------------------------------------------------------------


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, MTIME
    return info


def reg(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes | None]:
    info = _info(name, tarfile.REGTYPE, mode)
    info.size = len(data)
    return info, data


def entry(name: str, kind: bytes, link: str = "", mode: int = 0o755) -> tuple[Any, None]:
    info = _info(name, kind, mode)
    info.linkname = link
    return info, None


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def extract(root: Path, base: str, *members: tuple[tarfile.TarInfo, bytes | None]) -> None:
    with inroot.closing(inroot.open_root(root)) as root_fd:
        copyin.extract(io.BytesIO(tar_of(*members)), root_fd, base, "box")


def test_extract_writes_modes_times_and_links_inside(impl: str, root: Path, host: Path) -> None:
    extract(
        root,
        "/a",
        entry("d", tarfile.DIRTYPE, mode=0o750),
        reg("d/run.sh", b"#!/bin/sh\n", 0o4755),
        entry("d/l", tarfile.SYMTYPE, "/etc/passwd"),
        entry("d/hard", tarfile.LNKTYPE, "d/run.sh"),
        reg("new/deep/f", b"x"),  # parents the archive does not list are made
        # Through symlinks of the container: followed inside its root.
        reg("b/up/abs/etc/outside.txt", b"no"),
    )
    d = root / "a" / "d"
    assert (d / "run.sh").read_bytes() == b"#!/bin/sh\n"
    assert (d / "run.sh").stat().st_mode & 0o7777 == 0o4755
    assert (d / "run.sh").stat().st_mtime == MTIME
    assert d.stat().st_mode & 0o777 == 0o750 and d.stat().st_mtime == MTIME
    assert os.readlink(d / "l") == "/etc/passwd"
    assert (d / "hard").stat().st_ino == (d / "run.sh").stat().st_ino
    assert (root / "a" / "new" / "deep" / "f").read_bytes() == b"x"
    assert (root / "etc" / "outside.txt").read_bytes() == b"no"
    assert not Path("/etc/outside.txt").exists()
    # A link to a directory the container lacks is dangling there: as docker, refused.
    with pytest.raises(InvalidArgument, match="No such file or directory"):
        extract(root, "/", reg("hostlink/escaped.txt", b"no"))
    assert not (host / "escaped.txt").exists()
    assert not (root / str(host).lstrip("/")).exists()


def test_extract_refusals_name_container_paths_only(impl: str, root: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as missing:
        extract(root, "/a", entry("x", tarfile.LNKTYPE, "nothing/here"))
    assert missing.value.message == (
        "copy: cannot link /a/x to /a/nothing/here in container box: /a/nothing/here does not exist"
    )
    with pytest.raises(InvalidArgument, match="outside the copied files"):
        extract(root, "/a", entry("x", tarfile.LNKTYPE, "../../etc/passwd"))
    with pytest.raises(InvalidArgument, match="escapes the target"):
        extract(root, "/a", reg("../x", b""))
    with pytest.raises(InvalidArgument, match="cannot overwrite directory /a/b in container box"):
        extract(root, "/a", reg("b", b""))
    with pytest.raises(InvalidArgument) as not_dir:
        extract(root, "/a", reg("b/f/x", b""))
    assert not_dir.value.message == "copy: cannot write /a/b/f/x in container box: Not a directory"
    with (
        pytest.raises(InvalidArgument, match="not a valid tar archive"),
        inroot.closing(inroot.open_root(root)) as root_fd,
    ):
        copyin.extract(io.BytesIO(b""), root_fd, "/a", "box")
    for err in (missing, not_dir):
        assert str(tmp_path) not in err.value.message


def test_write_tree_stores_links_as_links(impl: str, root: Path) -> None:
    os.link(root / "a" / "b" / "f", root / "a" / "b" / "f2")
    out = io.BytesIO()
    with inroot.closing(inroot.open_root(root)) as root_fd:
        fd = inroot.open_in_root(root_fd, "abs/a", os.O_PATH | os.O_NOFOLLOW)
        with inroot.closing(fd):
            copyout.write_tree(fd, "a", out)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        members = {m.name: m for m in tar}
        assert sorted(members) == ["a", "a/b", "a/b/f", "a/b/f2", "a/b/up"]
        assert members["a/b/up"].issym() and members["a/b/up"].linkname == "../../.."
        assert members["a/b/f2"].islnk() and members["a/b/f2"].linkname == "a/b/f"
        data = tar.extractfile(members["a/b/f"])
        assert data is not None and data.read() == b"inside\n"


# --- pausing around a copy ---------------------------------------------------------------------


class FakeShim:
    def __init__(self, calls: list[str], can_pause: bool) -> None:
        self.calls = calls
        self.can_pause = can_pause

    async def pause(self) -> None:
        self.calls.append("pause")
        if not self.can_pause:
            raise FailedPrecondition("runtime pause failed: no cgroup")

    async def resume(self) -> None:
        self.calls.append("resume")


def running_here(calls: list[str], can_pause: bool) -> tuple[Any, Any]:
    """A 'running container' whose root is this process's (/proc/PID/root is /)."""
    shim = FakeShim(calls, can_pause)
    service = SimpleNamespace(shim=lambda _container: shim)
    state = SimpleNamespace(pid=os.getpid(), paused=False)
    container = SimpleNamespace(id="c" * 64, name="box", running=True, state=state)
    return service, container


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.parametrize("can_pause", [True, False])
def test_copies_pause_the_container_where_the_runtime_can(tmp_path: Path, can_pause: bool) -> None:
    calls: list[str] = []
    service, container = running_here(calls, can_pause)
    archive = tar_of(reg("in.txt", b"copied\n"))

    async def both_ways() -> bytes:
        await copy.copy_to_container(service, container, str(tmp_path), one_chunk(archive))
        calls.append(f"written:{(tmp_path / 'in.txt').exists()}")
        info, chunks = await copy.copy_from_container(service, container, str(tmp_path / "in.txt"))
        assert info["name"] == "in.txt" and info["size"] == 7
        return b"".join([c async for c in chunks])

    data = asyncio.run(both_ways())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("in.txt")
        assert member is not None and member.read() == b"copied\n"
    if can_pause:
        assert calls == ["pause", "resume", "written:True", "pause", "resume"]
    else:
        assert calls == ["pause", "written:True", "pause"]


def test_missing_paths_are_not_found_in_container_terms(tmp_path: Path) -> None:
    service, container = running_here([], True)
    with pytest.raises(NotFound, match=f"Could not find the file {tmp_path}/nope in container box"):
        asyncio.run(copy.copy_from_container(service, container, f"{tmp_path}/nope"))
    with pytest.raises(NotFound, match=f"Could not find the directory {tmp_path}/x in container"):
        asyncio.run(copy.copy_to_container(service, container, f"{tmp_path}/x", one_chunk(b"")))

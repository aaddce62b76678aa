"""The build context as the daemon receives it: unpacked while it streams in, hashed as
it is written, a tarball's own .dockerignore applied, hostile streams refused."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtimed.build import copy as cp
from runtimed.build.context import ChunkPipe, receive
from runtimed.build.patterns import IgnoreRules
from runtimed.cli.build import CHUNK, context_tar
from runtimed.errors import InvalidArgument


def _tar(files: dict[str, bytes], *, compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(parents=True)
    return ctx


@pytest.mark.parametrize("compress", [False, True])
async def test_unpacks_a_stream_in_small_chunks_and_knows_each_files_digest(
    tmp_path: Path, compress: bool
) -> None:
    big = os.urandom(3 << 20)  # spans many chunks and more than the pipe holds at once
    files = {"Dockerfile": b"FROM scratch\n", "data/big.bin": big, "data/small": b"s"}
    ctx = _context(tmp_path)
    known = await receive(_chunks(_tar(files, compress=compress), 4096), ctx, "Dockerfile")
    assert (ctx / "data" / "big.bin").read_bytes() == big
    assert (ctx / "Dockerfile").read_bytes() == b"FROM scratch\n"
    st = os.stat(ctx / "data" / "big.bin")
    assert known.get(st) == hashlib.sha256(big).digest()

    # The recorded digests give the same cache key as reading the files does; a file
    # changed afterwards is read again, not taken from the record.
    fd = os.open(ctx, os.O_PATH | os.O_DIRECTORY)
    try:
        matches = cp.find_sources(fd, "data", 2, "ctx")
        assert cp.checksum(fd, matches, known) == cp.checksum(fd, matches)
        (ctx / "data" / "small").write_bytes(b"changed")
        assert known.get(os.stat(ctx / "data" / "small")) is None
        assert cp.checksum(fd, matches, known) == cp.checksum(fd, matches)
    finally:
        os.close(fd)


async def test_an_empty_context_writes_nothing(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    await receive(_chunks(b"", 1), ctx, "Dockerfile")
    assert list(ctx.iterdir()) == []


async def test_a_tarballs_own_dockerignore_is_applied(tmp_path: Path) -> None:
    files = {
        ".dockerignore": b"*.log\n!keep.log\nsecret\nDockerfile\n",
        "Dockerfile": b"FROM scratch\n",
        "app.log": b"x",
        "keep.log": b"k",
        "secret/key": b"k",
        "sub/app.log": b"s",
    }
    ctx = _context(tmp_path)
    await receive(_chunks(_tar(files), 1 << 20), ctx, "Dockerfile")
    kept = sorted(str(p.relative_to(ctx)) for p in ctx.rglob("*") if p.is_file())
    # The Dockerfile and .dockerignore stay even when named, as docker keeps them.
    assert kept == [".dockerignore", "Dockerfile", "keep.log", "sub/app.log"]


async def test_escaping_or_broken_streams_are_refused(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    evil = _tar({"Dockerfile": b"x", "../escaped": b"x"})
    with pytest.raises(InvalidArgument, match="escapes"):
        await receive(_chunks(evil, 512), ctx, "Dockerfile")
    assert not (tmp_path / "escaped").exists()

    garbage = b"this is not a tar file, not even close" * 100
    with pytest.raises(InvalidArgument, match="the build context is not a valid tar archive"):
        await receive(_chunks(garbage, 100), _context(tmp_path / "b"), "Dockerfile")


async def test_a_sender_that_fails_midway_stops_the_reader(tmp_path: Path) -> None:
    data = _tar({"big": os.urandom(8 << 20)})

    async def broken() -> AsyncIterator[bytes]:
        async for chunk in _chunks(data[: 4 << 20], 64 << 10):
            yield chunk
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(receive(broken(), _context(tmp_path), "Dockerfile"), 10)


def test_pipe_reads_whole_requests_across_chunks_and_only_seeks_forward() -> None:
    pipe = ChunkPipe(depth=8)
    for part in (b"abcdef", b"ghij", b"klmnop"):
        pipe._queue.put_nowait(part)
    pipe._queue.put_nowait(None)
    assert pipe.read(2) == b"ab"
    assert pipe.read(6) == b"cdefgh"  # across a chunk's end, as tarfile needs
    assert pipe.tell() == 8
    assert pipe.seek(11) == 11  # skips what nobody reads
    with pytest.raises(io.UnsupportedOperation):
        pipe.seek(3)
    assert pipe.read(100) == b"lmnop"
    assert pipe.read(1) == b""


def test_runtimectl_sends_a_tar_that_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "dir" / "empty").mkdir(parents=True)
    big = os.urandom(CHUNK * 2 + 513)  # several messages, and a partial last block
    (src / "big.bin").write_bytes(big)
    (src / "dir" / "small").write_bytes(b"small")
    (src / "dir" / "zero").write_bytes(b"")
    (src / "skip.log").write_bytes(b"ignored")
    os.chmod(src / "dir" / "small", 0o750)
    os.symlink("../big.bin", src / "dir" / "link")
    chunks = list(context_tar(src, IgnoreRules(["*.log"])))
    assert all(len(c) <= CHUNK + tarfile.BLOCKSIZE for c in chunks)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == [
            "big.bin",
            "dir",
            "dir/empty",
            "dir/link",
            "dir/small",
            "dir/zero",
        ]
        assert tar.extractfile("big.bin").read() == big  # type: ignore[union-attr]
        assert tar.extractfile("dir/small").read() == b"small"  # type: ignore[union-attr]
        assert members["dir/small"].mode == 0o750
        assert members["dir/link"].issym() and members["dir/link"].linkname == "../big.bin"
        assert members["dir/empty"].isdir() and members["dir/zero"].size == 0

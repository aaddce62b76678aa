"""The build context, daemon side: unpacked as it arrives, hashed as it is written.

The client streams the context as a tar (it has applied .dockerignore to a
directory already). A worker thread unpacks the stream while the event loop
is still receiving it: no spool file, and the transfer and the writes overlap.
Each regular file is hashed as it is written (KnownDigests), so COPY's cache
keys cost no second read of the context. runtimed.core.copyin does the
unpacking, so no member lands outside the context directory.

A context sent as a tarball may carry a .dockerignore the client never read:
its rules are applied once the archive is unpacked, by removing what they
ignore before any instruction can see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import posixpath
import queue
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, cast

from runtimed.build.copy import KnownDigests
from runtimed.build.patterns import IgnoreRules
from runtimed.core import copyin
from runtimed.errors import InvalidArgument
from runtimed.images.decompress import ERRORS as DECOMPRESS_ERRORS
from runtimed.images.decompress import Sniffing

DOCKERIGNORE = ".dockerignore"
_DEPTH = 16  # chunks (runtimectl sends 1-2 MiB each) waiting for the unpacking thread
_PUT_WAIT = 0.5  # seconds between checks that the reader is still there


class ChunkPipe:
    """Chunks put by the event loop, read by one worker thread as a plain tar file.

    The thread's side decompresses (the format is known by the first bytes) and
    reads exactly what it is asked for; seek() only skips forward, which is all
    tarfile needs to read an archive front to back.
    """

    def __init__(self, depth: int = _DEPTH) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._cancelled = False
        self._stream = Sniffing()
        self._eof = False
        self._chunk = b""  # the plain chunk being read, from _offset on
        self._offset = 0
        self._position = 0  # plain bytes read or skipped so far

    # -- the event loop's side -------------------------------------------------

    async def put(self, chunk: bytes | None, reader: asyncio.Future[None]) -> None:
        """Queue `chunk` (None: the end); waits while the queue is full, and stops
        waiting when the reader is gone."""
        while True:
            try:
                self._queue.put_nowait(chunk)
                return
            except queue.Full:
                if reader.done():
                    return  # it ended (an error, most likely); its outcome says what
                with contextlib.suppress(queue.Full):
                    await asyncio.to_thread(self._queue.put, chunk, True, _PUT_WAIT)
                    return

    def cancel(self) -> None:
        """The sender went away: the reader fails at its next read."""
        self._cancelled = True
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._queue.put_nowait(None)

    # -- the thread's side -----------------------------------------------------

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET or offset < self._position:
            raise io.UnsupportedOperation("the build context stream only reads forward")
        while self._position < offset and self._fill():
            step = min(offset - self._position, len(self._chunk) - self._offset)
            self._offset += step
            self._position += step
        return self._position

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        want = size if size >= 0 else 1 << 62
        while want > 0 and self._fill():
            take = min(want, len(self._chunk) - self._offset)
            if self._offset == 0 and take == len(self._chunk):
                parts.append(self._chunk)  # a whole chunk: no copy
            else:
                parts.append(self._chunk[self._offset : self._offset + take])
            self._offset += take
            self._position += take
            want -= take
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _fill(self) -> bool:
        """A chunk with bytes left to read; False at the end of the stream."""
        if self._offset < len(self._chunk):
            return True
        self._chunk, self._offset = self._next_plain(), 0
        return bool(self._chunk)

    def _next_plain(self) -> bytes:
        while not self._eof:
            item = self._queue.get()
            if self._cancelled:
                raise OSError("the build context transfer was cancelled")
            self._eof = item is None
            try:
                plain = self._stream.end() if item is None else self._stream.feed(item)
            except DECOMPRESS_ERRORS as exc:
                raise InvalidArgument(
                    f"the build context is not valid {self._stream.kind} data: {exc}"
                ) from None
            if plain:
                return plain
        return b""


async def receive(chunks: AsyncIterator[bytes], ctx: Path, dockerfile: str) -> KnownDigests:
    """Unpack the streamed context into `ctx`; the digests of the files it wrote.

    `dockerfile` (its path in the context) is kept even where .dockerignore names it,
    as docker keeps it."""
    known = KnownDigests()
    pipe = ChunkPipe()
    reader: asyncio.Future[None] | None = None
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            if reader is None:  # no context at all when nothing comes (Dockerfile on stdin)
                reader = asyncio.ensure_future(
                    asyncio.to_thread(_unpack, pipe, ctx, known, dockerfile)
                )
            elif reader.done():
                if reader.exception() is not None:
                    break  # awaiting it below says why
                continue  # what follows the archive's end (zero padding) is not read
            await pipe.put(chunk, reader)
        if reader is not None:
            await pipe.put(None, reader)
    except BaseException:
        if reader is not None:
            pipe.cancel()
            with contextlib.suppress(BaseException):
                await reader
        raise
    if reader is not None:
        await reader
    return known


def _unpack(pipe: ChunkPipe, ctx: Path, known: KnownDigests, dockerfile: str) -> None:
    root_fd = os.open(ctx, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        archive = cast(IO[bytes], pipe)
        copyin.extract(archive, root_fd, "/", "the build context", record=known.record, plain=True)
    except InvalidArgument as exc:
        if "not a valid tar archive" in exc.message:
            detail = exc.message.partition("archive: ")[2]
            raise InvalidArgument(
                f"the build context is not a valid tar archive: {detail}"
            ) from None
        raise
    finally:
        os.close(root_fd)
    _apply_dockerignore(ctx, {DOCKERIGNORE, posixpath.normpath(dockerfile).lstrip("/")})


def _apply_dockerignore(ctx: Path, keep: set[str]) -> None:
    """Remove what the context's own .dockerignore leaves out (it and the Dockerfile stay)."""
    try:
        text = (ctx / DOCKERIGNORE).read_text(errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return
    rules = IgnoreRules.parse(text)
    if not rules:
        return
    _prune(ctx, "", rules, keep)


def _prune(ctx: Path, rel: str, rules: IgnoreRules, keep: set[str]) -> None:
    with os.scandir(ctx / rel if rel else ctx) as it:
        entries = list(it)
    for entry in entries:
        name = f"{rel}/{entry.name}" if rel else entry.name
        if name in keep:
            continue
        is_dir = entry.is_dir(follow_symlinks=False)
        if rules.ignored(name):
            if is_dir and rules.may_reinclude_below(name):
                _prune(ctx, name, rules, keep)
            elif is_dir:
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        elif is_dir:
            _prune(ctx, name, rules, keep)

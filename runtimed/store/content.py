"""Content-addressed blob store: blobs/sha256/<hex>, written whole or not at all.

Writers fill a file under ingest/ and `commit` it: the digest is checked
(unless the caller already verified it while streaming), the file fsynced and
renamed into place. A blob therefore exists under its name only if its bytes
match that name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path

from runtimed.errors import DataLoss, InvalidArgument, NotFound
from runtimed.store.atomicfile import fsync_dir, write_atomic

_DIGEST_RE = re.compile(r"(sha256):([a-f0-9]{64})")


def parse_digest(digest: str) -> tuple[str, str]:
    match = _DIGEST_RE.fullmatch(digest)
    if not match:
        raise InvalidArgument(f"invalid digest {digest!r}: want sha256:<64 hex digits>")
    return match.group(1), match.group(2)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ingest_dir = root / "ingest"
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)
        # Half-written downloads from a crash are worthless: drop them at start.
        for leftover in self.ingest_dir.iterdir():
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    def path(self, digest: str) -> Path:
        algo, hexpart = parse_digest(digest)
        return self.root / "blobs" / algo / hexpart

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read_bytes(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def new_ingest(self) -> Path:
        """A fresh temporary path for a writer; pass it to commit() or discard()."""
        return self.ingest_dir / uuid.uuid4().hex

    def commit(self, digest: str, tmp: Path, *, verified: bool = False) -> Path:
        target = self.path(digest)
        if not verified:
            actual = file_digest(tmp)
            if actual != digest:
                self.discard(tmp)
                raise DataLoss(f"content verification failed: expected {digest}, got {actual}")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)
        os.rename(tmp, target)
        fsync_dir(target.parent)
        return target

    def discard(self, tmp: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()

    def write_bytes(self, data: bytes, expected: str | None = None) -> str:
        digest = sha256_digest(data)
        if expected is not None and expected != digest:
            raise DataLoss(f"content verification failed: expected {expected}, got {digest}")
        if not self.has(digest):
            write_atomic(self.path(digest), data)
        return digest

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def digests(self) -> list[str]:
        return ["sha256:" + p.name for p in (self.root / "blobs" / "sha256").iterdir()]

    def usage(self) -> tuple[int, int]:
        """(bytes, inodes) used by committed blobs."""
        total = count = 0
        for entry in os.scandir(self.root / "blobs" / "sha256"):
            total += entry.stat(follow_symlinks=False).st_size
            count += 1
        return total, count

    def clear(self) -> None:
        shutil.rmtree(self.root)

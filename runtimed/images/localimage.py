"""What an image made here (import, commit) needs to be pushed: compressed layer
blobs, written once when the image is made, and the manifest naming them
(runtimed.images.compose).

Storing them then, rather than at push time, fixes the manifest's digest for the
image's life: every push sends the same bytes, so every registry (and every pull
back) sees the same digest. Compression is deterministic (no file name, no
timestamp in the gzip header), so the same layer always gets the same blob.

The deflate is ISA-L's (isal): at its level 2 it packs about as tightly as
zlib's level 1 and runs at several hundred MB/s, where zlib's default level
manages 40 MB/s on incompressible data. That is what keeps `commit` and
`build` steps from waiting on compression.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from isal import isal_zlib

from runtimed.images import manifest as mt
from runtimed.store.content import ContentStore

GZIP_LEVEL = 2  # ISA-L's levels run 0-3; 2 is near zlib's 1 in size, much faster
_GZIP_WBITS = 16 + isal_zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream
_CHUNK = 1 << 20


def compress_layer(content: ContentStore, tar: Path) -> mt.Descriptor:
    """gzip the layer tarball `tar` into the content store (blocking: run in a thread)."""
    with tar.open("rb") as src:
        return compress_stream(content, iter(lambda: src.read(_CHUNK), b""))


def compress_stream(content: ContentStore, chunks: Iterable[bytes]) -> mt.Descriptor:
    """gzip a layer's tar stream into the content store (blocking: run in a thread)."""
    compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, _GZIP_WBITS)
    hasher = hashlib.sha256()
    size = 0
    tmp = content.new_ingest()
    try:
        with tmp.open("wb") as out:

            def emit(data: bytes) -> None:
                nonlocal size
                hasher.update(data)
                out.write(data)
                size += len(data)

            for chunk in chunks:
                emit(compressor.compress(chunk))
            emit(compressor.flush())
        digest = "sha256:" + hasher.hexdigest()
        content.commit(digest, tmp, verified=True)
    finally:
        content.discard(tmp)
    return mt.Descriptor(mt.OCI_LAYER_GZIP, digest, size)

"""Unpacked layers: one directory per chain id, shared by every image that uses it.

A layer is unpacked into a temporary directory and renamed into place only
when the whole tarball went in and its diff id matched; the metadata row is
written after that. A crash in between leaves an unreferenced directory that
`collect_garbage` removes at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import structlog

from runtimed.errors import FailedPrecondition
from runtimed.images import tarsplit
from runtimed.images.unpack import UnpackResult, unpack_layer
from runtimed.store.metadata import LayerRecord, MetadataStore

log = structlog.get_logger(__name__)


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI chain ids: the first is the diff id, each next one hashes parent + ' ' + diff id."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            digest = hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest()
            out.append("sha256:" + digest)
    return out


class LayerStore:
    def __init__(self, root: Path, metadata: MetadataStore) -> None:
        self.root = root
        self.metadata = metadata
        root.mkdir(parents=True, exist_ok=True)

    def path(self, chain_id: str) -> Path:
        return self.root / chain_id.removeprefix("sha256:") / "diff"

    def has(self, chain_id: str) -> bool:
        return self.metadata.get_layer(chain_id) is not None

    async def unpack(
        self, blob: Path | IO[bytes], diff_id: str | None
    ) -> tuple[Path, UnpackResult]:
        """Unpack a blob into a staging directory; `register` moves it into place.

        The tar stream's framing is kept beside the files, so `tar_stream` can
        hand out the same bytes again (save, push).
        """
        staging = self.root / f".tmp-{uuid.uuid4().hex}"
        (staging / "diff").mkdir(parents=True)
        work = asyncio.ensure_future(
            asyncio.to_thread(
                unpack_layer,
                blob,
                staging / "diff",
                expected_diff_id=diff_id,
                framing=staging / tarsplit.FRAMING_NAME,
            )
        )
        try:
            result = await asyncio.shield(work)
        except BaseException:
            # Cancelling the await does not stop the thread: let it finish writing
            # before removing what it wrote, or files it makes later outlive the removal.
            with contextlib.suppress(BaseException):
                await work
            await asyncio.to_thread(shutil.rmtree, staging, True)
            raise
        return staging, result

    def register(self, staging: Path, record: LayerRecord) -> None:
        final = self.root / record.chain_id.removeprefix("sha256:")
        if final.exists():
            # Someone (an earlier pull racing us) already made it; keep theirs.
            shutil.rmtree(staging, ignore_errors=True)
        else:
            os.rename(staging, final)
        self.metadata.add_layer(record)

    def _framing(self, chain_id: str) -> Path:
        framing = self.root / chain_id.removeprefix("sha256:") / tarsplit.FRAMING_NAME
        if not framing.exists():
            raise FailedPrecondition(
                f"layer {chain_id} cannot be exported: its original tar stream was not kept "
                "(unpacked by an older runtimed, or not reproducible); remove the image and "
                "pull or load it again"
            )
        return framing

    def tar_size(self, chain_id: str) -> int:
        """Bytes of the layer's uncompressed tar stream, as it came in."""
        return tarsplit.tar_size(self._framing(chain_id))

    def tar_stream(self, layer: LayerRecord) -> Iterator[bytes]:
        """The layer's tar stream byte for byte (its sha256 is the diff_id); blocking."""
        return tarsplit.rebuild(
            self.path(layer.chain_id), self._framing(layer.chain_id), layer.diff_id
        )

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def delete(self, chain_id: str) -> None:
        self.metadata.delete_layer(chain_id)
        shutil.rmtree(self.root / chain_id.removeprefix("sha256:"), ignore_errors=True)

    def collect_garbage(self) -> list[str]:
        """Remove staging leftovers and directories no metadata row knows."""
        known = {layer.chain_id.removeprefix("sha256:") for layer in self.metadata.layers()}
        removed = []
        for entry in self.root.iterdir():
            if entry.name in known:
                continue
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(entry)
            removed.append(entry.name)
        if removed:
            log.info("layers_garbage_collected", count=len(removed))
        return removed

    def usage(self) -> tuple[int, int]:
        """(bytes, inodes) under the layer root, counted for ImageFsInfo."""
        total = inodes = 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                with contextlib.suppress(FileNotFoundError):
                    st = os.lstat(os.path.join(dirpath, name))
                    total += st.st_blocks * 512
                    inodes += 1
        return total, inodes

"""Space held back in the data dir so that removals can go on when the disk is full.

Under WAL (store/sqlite.py) even a DELETE appends pages to the write-ahead log,
and a rollback journal would have to be written first just the same: on a
full disk SQLite answers "database or disk is full" to the very `rm` and `rmi`
that would free space. So the data dir keeps a preallocated file of
RESERVE_SIZE bytes (an emergency ballast, as some databases keep): a removal
that fails for lack of space releases it and tries again, and a later write
takes it back once the disk has room for it and as much again.

Only a removal that failed releases it: space freed earlier than needed would
go to whatever writes next (often what filled the disk). Every database in a
directory shares its one reserve file.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

RESERVE_NAME = "reserved-space"
RESERVE_SIZE = 4 << 20
# How often a missing reserve is tried again (a statvfs each time).
REFILL_INTERVAL = 5.0


class SpaceReserve:
    def __init__(self, directory: Path, size: int = RESERVE_SIZE) -> None:
        self.path = directory / RESERVE_NAME
        self.size = size
        self._next_refill = 0.0

    def free_bytes(self) -> int:
        st = os.statvfs(self.path.parent)
        return st.f_bavail * st.f_frsize

    def refill(self) -> None:
        """Take the reserve back if it is gone and the disk has room for it and as much
        again (so refilling never makes a disk full). Cheap when nothing is to be done."""
        if self.path.exists():
            return
        now = time.monotonic()
        if now < self._next_refill:
            return
        self._next_refill = now + REFILL_INTERVAL
        try:
            if self.free_bytes() < 2 * self.size:
                return
            tmp = self.path.with_name(f".tmp-{RESERVE_NAME}-{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)  # blocks of its own, not a hole
                os.rename(tmp, self.path)
            finally:
                os.close(fd)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except OSError as exc:
            log.warning("space_reserve_not_refilled", path=str(self.path), error=str(exc))
            return
        log.info("space_reserve_refilled", path=str(self.path), size=self.size)

    def release(self) -> bool:
        """Give the reserve up (a removal needs its room); False if there was none."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("space_reserve_not_released", path=str(self.path), error=str(exc))
            return False
        self._next_refill = 0.0
        log.warning("space_reserve_released", path=str(self.path), size=self.size)
        return True

"""What a cgroup counted, in one record for both versions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    cpu_ns: int = 0  # cumulative CPU time of everything that ran in it
    memory_usage: int = 0  # charged bytes, page cache included
    working_set: int = 0  # usage minus inactive file cache (Docker's and kubelet's)
    rss: int = 0  # anonymous memory
    page_faults: int = 0
    major_page_faults: int = 0
    memory_limit: int | None = None  # None: unlimited
    processes: int = 0
    pids: int = 0  # tasks (threads) the pids controller counts
    blkio_read: int = 0  # bytes
    blkio_write: int = 0

"""Usage from a container's cgroup, behind core.stats' UsageSource protocol.

A container with a cgroup is measured there (CPU time that outlives the processes
that used it, the memory the kernel charged, the limit); one without (no
delegation, or started before there was one) falls back to /proc.
"""

from __future__ import annotations

from collections.abc import Sequence

from runtimed.cgroups.hook import cgroup_rel
from runtimed.cgroups.manager import CgroupManager
from runtimed.core.model import Container, Sandbox
from runtimed.core.stats import Counters, UsageSource


class CgroupSource:
    name = "cgroup"

    def __init__(self, manager: CgroupManager, fallback: UsageSource) -> None:
        self.manager = manager
        self.fallback = fallback

    def container(self, container: Container) -> Counters | None:
        if not container.running:
            return None
        usage = self.manager.usage(cgroup_rel(container)) if self.manager.usable else None
        if usage is None or not usage.processes:
            return self.fallback.container(container)
        return Counters(
            cpu_ns=usage.cpu_ns,
            working_set=usage.working_set,
            usage=usage.memory_usage,
            rss=usage.rss,
            page_faults=usage.page_faults,
            major_page_faults=usage.major_page_faults,
            processes=usage.processes,
            threads=usage.pids or usage.processes,
            memory_limit=usage.memory_limit,
            io_read_bytes=usage.blkio_read,
            io_write_bytes=usage.blkio_write,
            measured_by=self.name,
        )

    def pod(self, sandbox: Sandbox, containers: Sequence[Counters]) -> Counters | None:
        # The containers' sums plus the infra process: the same whatever measured them.
        return self.fallback.pod(sandbox, containers)

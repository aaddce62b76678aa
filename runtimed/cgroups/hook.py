"""The cgroup part of a container's life, plugged into ContainerService.hooks.

At create the resources are checked and stored (`extras["resources"]`); every start
makes the container's cgroup with its limits and hands the shim what it needs to
start crun inside it; every stop and the removal take the cgroup away again.
ulimits, /dev/shm's size and the OOM score go into the OCI spec.
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from runtimed.cgroups.manager import CgroupManager
from runtimed.cgroups.resources import (
    EXTRAS_KEY,
    Resources,
    check,
    check_cpuset,
    resolve_devices,
)
from runtimed.cgroups.units import ULIMITS
from runtimed.core.hooks import ContainerHook
from runtimed.errors import InvalidArgument

if TYPE_CHECKING:
    from runtimed.core.containers import CreateRequest
    from runtimed.core.model import Container
    from runtimed.oci.spec import SpecRequest

log = structlog.get_logger(__name__)


def resources_of(container: Container) -> Resources:
    return Resources.from_dict(container.config.extras.get(EXTRAS_KEY))


def cgroup_rel(container: Container) -> str:
    """The container's directory below the daemon's base (see manager.py)."""
    parent = resources_of(container).cgroup_parent.strip("/")
    return f"{parent}/{container.id}" if parent else container.id


def pod_parent(sandbox_id: str, cgroup_parent: str) -> str:
    """A pod's directory: kubelet's cgroup_parent, or one named after the pod."""
    return cgroup_parent.strip("/") or f"pod-{sandbox_id}"


def check_ulimits(ulimits: list[tuple[str, int, int]]) -> None:
    """Rootless, nothing goes above the daemon's own hard limit: say so rather than
    have the start fail (root here lacks CAP_SYS_RESOURCE as well)."""
    for name, soft, hard in ulimits:
        rlimit = getattr(resource, ULIMITS.get(name, name).upper(), None)
        if rlimit is None:
            continue
        _, own_hard = resource.getrlimit(rlimit)
        if own_hard == resource.RLIM_INFINITY:
            continue
        for value, which in ((hard, "hard"), (soft, "soft")):
            if value == -1 or value > own_hard:
                raise InvalidArgument(
                    f"ulimit {name}: {which} limit {'unlimited' if value == -1 else value} is "
                    f"above this daemon's own hard limit ({own_hard}), which a rootless "
                    "runtime cannot raise: ask for at most that"
                )


def own_oom_score_adj() -> int:
    try:
        with open("/proc/self/oom_score_adj") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def prepare(manager: CgroupManager, res: Resources) -> list[str]:
    """Check a request (Docker's texts), resolve its devices, and refuse cgroup limits
    without cgroups to put them in (FAILED_PRECONDITION, saying how to delegate).
    Returns Docker's warnings."""
    warnings = check(res, ncpu=os.cpu_count() or 1)
    check_ulimits(res.ulimits)
    resolve_devices(res)
    if not res.limits_cgroups():
        return warnings
    manager.require("resource limits (--memory, --cpus, --pids-limit, ...)")
    check_cpuset(res.cpuset_cpus, manager.parent_value("cpuset", "cpuset.cpus"), "cpus")
    check_cpuset(res.cpuset_mems, manager.parent_value("cpuset", "cpuset.mems"), "mems")
    return warnings + manager_warnings(manager, res)


def manager_warnings(manager: CgroupManager, res: Resources) -> list[str]:
    """What this host cannot do, dropped with Docker's warnings (it does the same)."""
    warnings = []
    if (res.blkio_weight or res.blkio_weight_device) and not manager.blkio_weight_supported():
        if res.blkio_weight:
            warnings.append(
                "Your kernel does not support Block I/O weight or the cgroup is not mounted. "
                "Weight discarded."
            )
        if res.blkio_weight_device:
            warnings.append(
                "Your kernel does not support Block I/O weight_device or the cgroup is not "
                "mounted. Weight-device discarded."
            )
        res.blkio_weight, res.blkio_weight_device = 0, []
    if res.oom_kill_disable and manager.version == 2:
        warnings.append("Your kernel does not support OomKillDisable. OomKillDisable discarded.")
        res.oom_kill_disable = False
    if res.pids_limit and "pids" not in manager.controllers:
        warnings.append(
            "Your kernel does not support PIDs limit or the cgroup is not mounted. "
            "PIDs limit discarded."
        )
        res.pids_limit = 0
    return warnings


class CgroupHook(ContainerHook):
    def __init__(
        self,
        manager: CgroupManager,
        *,
        default_ulimits: list[tuple[str, int, int]] | None = None,
        pod_cgroup_parent: Callable[[str], str] | None = None,
        pod_limits: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self.manager = manager
        self.default_ulimits = list(default_ulimits or [])
        # By sandbox id: the pod's cgroup_parent as kubelet gave it, and its limits
        # (LinuxPodSandboxConfig.resources: the containers' and the overhead).
        self.pod_cgroup_parent = pod_cgroup_parent or (lambda _sid: "")
        self.pod_limits = pod_limits or (lambda _sid: {})

    async def validate(self, request: CreateRequest, image_config: dict[str, Any]) -> None:
        res = Resources.from_dict(request.extras.get(EXTRAS_KEY))
        await asyncio.to_thread(prepare, self.manager, res)
        if request.sandbox_id:
            # A pod's containers live in the pod's cgroup, limits or not.
            res.cgroup_parent = pod_parent(
                request.sandbox_id, self.pod_cgroup_parent(request.sandbox_id)
            )
        request.extras[EXTRAS_KEY] = res.to_dict()

    async def before_start(self, container: Container, spec: SpecRequest) -> None:
        res = resources_of(container)
        merged = {name: (name, soft, hard) for name, soft, hard in self.default_ulimits}
        merged.update({name: (name, soft, hard) for name, soft, hard in res.ulimits})
        spec.rlimits = [*spec.rlimits, *((ULIMITS[n], s, h) for n, s, h in merged.values())]
        spec.shm_size = res.shm_size
        if res.oom_score_adj is not None:
            # Lowering it needs CAP_SYS_RESOURCE, which a rootless runtime never has.
            spec.oom_score_adj = max(res.oom_score_adj, own_oom_score_adj())
        if not self.manager.usable:
            return
        if container.sandbox_id != container.id and res.cgroup_parent:
            pod = Resources.from_dict(self.pod_limits(container.sandbox_id))
            await asyncio.to_thread(self.manager.create, res.cgroup_parent.strip("/"), pod)
        await asyncio.to_thread(self.manager.create, cgroup_rel(container), res)

    def shim_options(self, container: Container) -> dict[str, Any]:
        if not self.manager.usable:
            return {}
        return self.manager.shim_options(cgroup_rel(container))

    async def after_stop(self, container: Container) -> None:
        if self.manager.usable:
            await asyncio.to_thread(self.manager.remove, cgroup_rel(container))

    async def before_remove(self, container: Container, *, remove_volumes: bool) -> None:
        if self.manager.usable and not await asyncio.to_thread(
            self.manager.remove, cgroup_rel(container)
        ):
            log.warning("cgroup_busy", container_id=container.id)

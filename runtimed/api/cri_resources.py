"""kubelet's resources: LinuxContainerResources in and out, pod cgroups, and
UpdateContainerResources."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtimed.cgroups.hook import resources_of
from runtimed.cgroups.resources import Resources
from runtimed.errors import FailedPrecondition
from runtimed.gen.runtime.v1 import api_pb2 as cri

if TYPE_CHECKING:
    from runtimed.core.model import Container
    from runtimed.services import Runtime


def from_cri(linux: cri.LinuxContainerResources) -> Resources:
    return Resources(
        memory=linux.memory_limit_in_bytes,
        memory_swap=linux.memory_swap_limit_in_bytes,
        cpu_shares=linux.cpu_shares,
        cpu_period=linux.cpu_period,
        cpu_quota=linux.cpu_quota,
        cpuset_cpus=linux.cpuset_cpus,
        cpuset_mems=linux.cpuset_mems,
        hugepage_limits={h.page_size: h.limit for h in linux.hugepage_limits},
        unified=dict(linux.unified),
        oom_score_adj=linux.oom_score_adj if linux.oom_score_adj else None,
    )


def container_extras(config: cri.ContainerConfig) -> dict[str, Any]:
    """CreateContainerRequest's resources, as the container stores them."""
    if not config.linux.HasField("resources"):
        return {}
    return from_cri(config.linux.resources).to_dict()


def pod_extras(linux: cri.LinuxPodSandboxConfig) -> dict[str, Any]:
    """The pod's cgroup: kubelet's parent and the pod-level limits (which hold the overhead)."""
    limits = linux.resources if linux.HasField("resources") else None
    return {
        "cgroup_parent": linux.cgroup_parent,
        "limits": from_cri(limits).to_dict() if limits is not None else {},
        "overhead": from_cri(linux.overhead).to_dict() if linux.HasField("overhead") else {},
    }


def to_cri(container: Container) -> cri.ContainerResources:
    """The resources in force, for ContainerStatus."""
    res = resources_of(container)
    return cri.ContainerResources(
        linux=cri.LinuxContainerResources(
            cpu_period=res.cpu_period,
            cpu_quota=res.cpu_quota,
            cpu_shares=res.cpu_shares,
            memory_limit_in_bytes=res.memory,
            memory_swap_limit_in_bytes=max(res.memory_swap, 0),
            oom_score_adj=res.oom_score_adj or 0,
            cpuset_cpus=res.cpuset_cpus,
            cpuset_mems=res.cpuset_mems,
            hugepage_limits=[
                cri.HugepageLimit(page_size=size, limit=limit)
                for size, limit in res.hugepage_limits.items()
            ],
            unified=res.unified,
        )
    )


def cgroup_driver(rt: Runtime) -> int:
    """What kubelet must match: the driver of the cgroup manager in use (cgroupfs: there
    is no systemd to ask here)."""
    driver = rt.cgroups.hierarchy.driver if rt.cgroups is not None else "cgroupfs"
    return cri.CgroupDriver.Value(driver.upper())


class CriResourceRpcs:
    rt: Runtime

    async def UpdateContainerResources(
        self, request: cri.UpdateContainerResourcesRequest, context: Any
    ) -> cri.UpdateContainerResourcesResponse:
        container = self.rt.containers.get(request.container_id)
        if container.config.cri is None:
            raise FailedPrecondition(f"container {container.id} is not a CRI container")
        if self.rt.resources is None:
            raise FailedPrecondition("runtimed has no cgroups to update")
        if request.HasField("linux"):
            await self.rt.resources.update(container.id, from_cri(request.linux))
        return cri.UpdateContainerResourcesResponse()

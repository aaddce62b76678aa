"""Resources on the Engine API: the create request's limits, update, pause, unpause,
and what `info` says about cgroups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtimed.cgroups.hook import prepare
from runtimed.cgroups.resources import DeviceLimit, Resources
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

if TYPE_CHECKING:
    from runtimed.cgroups.manager import CgroupManager
    from runtimed.services import Runtime

KERNEL_MEMORY_WARNING = (
    "Specifying a kernel memory limit is deprecated and will be removed in a future release."
)


def resources_from_pb(msg: pb.Resources) -> tuple[Resources, list[str]]:
    """The message as core resources, and the warnings of what is accepted but ignored."""
    warnings = [KERNEL_MEMORY_WARNING] if msg.kernel_memory else []

    def devices(items: Any) -> list[DeviceLimit]:
        return [DeviceLimit(path=d.path, value=d.value) for d in items]

    res = Resources(
        memory=msg.memory,
        memory_swap=msg.memory_swap,
        memory_reservation=msg.memory_reservation,
        oom_kill_disable=msg.oom_kill_disable,
        nano_cpus=msg.nano_cpus,
        cpu_shares=msg.cpu_shares,
        cpu_period=msg.cpu_period,
        cpu_quota=msg.cpu_quota,
        cpuset_cpus=msg.cpuset_cpus,
        cpuset_mems=msg.cpuset_mems,
        blkio_weight=msg.blkio_weight,
        blkio_weight_device=devices(msg.blkio_weight_device),
        device_read_bps=devices(msg.device_read_bps),
        device_write_bps=devices(msg.device_write_bps),
        device_read_iops=devices(msg.device_read_iops),
        device_write_iops=devices(msg.device_write_iops),
        pids_limit=msg.pids_limit,
        ulimits=[(u.name, u.soft, u.hard) for u in msg.ulimits],
        shm_size=msg.shm_size,
        cgroup_parent=msg.cgroup_parent,
    )
    return res, warnings


def create_resources(
    manager: CgroupManager | None, msg: pb.Resources
) -> tuple[dict[str, Any], list[str]]:
    """For CreateContainer: the stored form (checked, devices resolved) and the warnings."""
    res, warnings = resources_from_pb(msg)
    if manager is not None:
        warnings += prepare(manager, res)
    return res.to_dict(), warnings


def info_fields(manager: CgroupManager | None) -> dict[str, Any]:
    if manager is None or not manager.usable:
        reason = manager.hierarchy.reason if manager is not None else "cgroups are not set up"
        return {"cgroup_driver": "none", "cgroup_warning": reason}
    return {"cgroup_driver": manager.hierarchy.driver, "cgroup_controllers": manager.controllers}


class ResourceRpcs:
    rt: Runtime

    async def UpdateContainer(
        self, request: pb.UpdateContainerRequest, context: Any
    ) -> pb.UpdateContainerResponse:
        change, warnings = resources_from_pb(request.resources)
        assert self.rt.resources is not None
        _, more = await self.rt.resources.update(
            request.id, change, pids_set=request.pids_limit_set
        )
        return pb.UpdateContainerResponse(warnings=warnings + more)

    async def PauseContainer(self, request: pb.ContainerRef, context: Any) -> pb.Empty:
        assert self.rt.resources is not None
        await self.rt.resources.pause(request.id)
        return pb.Empty()

    async def UnpauseContainer(self, request: pb.ContainerRef, context: Any) -> pb.Empty:
        assert self.rt.resources is not None
        await self.rt.resources.unpause(request.id)
        return pb.Empty()

"""A container's resources as `docker inspect` shows them in HostConfig."""

from __future__ import annotations

from typing import Any

from runtimed.cgroups.hook import resources_of
from runtimed.cgroups.resources import DEFAULT_SHM_SIZE
from runtimed.core.model import Container


def host_config(container: Container) -> dict[str, Any]:
    res = resources_of(container)

    def devices(items: list, key: str) -> list[dict[str, Any]]:
        return [{"Path": d.path, key: d.value} for d in items]

    return {
        "Memory": res.memory,
        "MemorySwap": res.swap_limit(),
        "MemoryReservation": res.memory_reservation,
        "OomKillDisable": res.oom_kill_disable,
        "NanoCpus": res.nano_cpus,
        "CpuShares": res.cpu_shares,
        "CpuPeriod": res.cpu_period,
        "CpuQuota": res.cpu_quota,
        "CpusetCpus": res.cpuset_cpus,
        "CpusetMems": res.cpuset_mems,
        "BlkioWeight": res.blkio_weight,
        "BlkioWeightDevice": devices(res.blkio_weight_device, "Weight"),
        "BlkioDeviceReadBps": devices(res.device_read_bps, "Rate"),
        "BlkioDeviceWriteBps": devices(res.device_write_bps, "Rate"),
        "BlkioDeviceReadIOps": devices(res.device_read_iops, "Rate"),
        "BlkioDeviceWriteIOps": devices(res.device_write_iops, "Rate"),
        "PidsLimit": res.pids_limit or None,
        "Ulimits": [{"Name": n, "Soft": s, "Hard": h} for n, s, h in res.ulimits] or None,
        "ShmSize": res.shm_size or DEFAULT_SHM_SIZE,
        "CgroupParent": res.cgroup_parent if container.config.cri is None else "",
        "OomScoreAdj": res.oom_score_adj or 0,
    }

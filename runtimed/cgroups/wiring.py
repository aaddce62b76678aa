"""How the daemon sets up its cgroup part (kept here so daemon/server.py stays short)."""

from __future__ import annotations

import pwd
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from runtimed.cgroups.hierarchy import detect
from runtimed.cgroups.hook import CgroupHook, cgroup_rel, check_ulimits
from runtimed.cgroups.manager import CgroupManager, base_name
from runtimed.cgroups.source import CgroupSource
from runtimed.config import Config
from runtimed.core.model import Container
from runtimed.core.stats import UsageSource
from runtimed.paths import data_dir
from runtimed.rootless.userns import host_uid
from runtimed.store.containers import ContainerRecords

log = structlog.get_logger(__name__)


@dataclass
class CgroupParts:
    manager: CgroupManager
    hook: CgroupHook

    def source(self, fallback: UsageSource) -> UsageSource:
        return CgroupSource(self.manager, fallback) if self.manager.usable else fallback


def _user_name() -> str:
    uid = host_uid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def build_cgroups(config: Config, records: ContainerRecords) -> CgroupParts:
    check_ulimits(config.default_ulimits)
    manager = CgroupManager(
        detect(_user_name(), host_uid()), base_name(config.data_dir, data_dir())
    )
    manager.start()
    if manager.usable:
        log.info("cgroups", version=manager.version, controllers=manager.controllers)
    else:
        log.warning("cgroups_unavailable", reason=manager.hierarchy.reason)

    def pod_parent(sandbox_id: str) -> str:
        sandbox = records.get_sandbox(sandbox_id)
        return str(sandbox.config.resources.get("cgroup_parent", "")) if sandbox else ""

    hook = CgroupHook(
        manager,
        default_ulimits=config.default_ulimits,
        pod_cgroup_parent=pod_parent,
        pod_limits=lambda sid: _pod_limits(records, sid),
    )
    return CgroupParts(manager, hook)


def _pod_limits(records: ContainerRecords, sandbox_id: str) -> dict:
    sandbox = records.get_sandbox(sandbox_id)
    return dict(sandbox.config.resources.get("limits") or {}) if sandbox else {}


def sweep_cgroups(manager: CgroupManager, containers: Sequence[Container]) -> None:
    """What a crash left behind: cgroups of containers not running any more."""
    if not manager.usable:
        return
    removed = manager.sweep({cgroup_rel(c) for c in containers if c.running})
    if removed:
        log.info("cgroups_swept", count=removed)

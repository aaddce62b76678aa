"""The records that store/ persists for core/: containers and sandboxes, as plain data.

They live below both (store/ keeps them without knowing core's rules; core/model.py
gives them their meaning). Config is fixed at create time; state changes over a life.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


def now_ns() -> int:
    return time.time_ns()


@dataclass
class RestartPolicy:
    name: str = "no"  # no | on-failure | always | unless-stopped
    max_retries: int = 0


@dataclass
class ContainerConfig:
    """Fixed at create time; stored once."""

    image: str  # as the user or kubelet named it
    image_id: str
    spec: dict[str, Any]  # runtimed.oci.spec.SpecRequest fields (without image_config)
    args: list[str]  # the resolved command line, for ps and inspect
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    auto_remove: bool = False
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    stop_signal: str = ""
    stop_timeout: int = 10
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    log_path: str = ""
    cri: dict[str, Any] | None = None  # CRI metadata {name, attempt} when kubelet made it
    # Per-part settings (volumes, network, ...), each under its own key; see core/hooks.py.
    extras: dict[str, Any] = field(default_factory=dict)
    # Whose pid namespace: one of the PID_* modes of runtimed.core.model.
    pid_mode: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerConfig:
        data = dict(data)
        data["restart_policy"] = RestartPolicy(**data.get("restart_policy", {}))
        return cls(**data)


@dataclass
class ContainerState:
    """Changes over the container's life; every change is one transaction."""

    status: Status = Status.CREATED
    pid: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    started_at: int = 0
    finished_at: int = 0
    restart_count: int = 0
    # Stopped by a person (stop/kill): restart policies other than `always` stand down.
    manually_stopped: bool = False
    error: str = ""
    paused: bool = False  # frozen by `pause` (its cgroup freezer)
    # Docker's State.Health {Status, FailingStreak, Log}; None without a health check.
    health: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerState:
        data = dict(data)
        data["status"] = Status(data.get("status", "created"))
        return cls(**data)


@dataclass
class Container:
    id: str
    name: str
    sandbox_id: str
    config: ContainerConfig
    state: ContainerState
    created_at: int

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.state.status == Status.RUNNING


@dataclass
class SandboxConfig:
    """A CRI pod, or the implicit sandbox of one docker-style container."""

    kind: str  # "pod" | "implicit"
    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    cri: dict[str, Any] | None = None  # CRI metadata {name, uid, namespace, attempt}
    log_directory: str = ""
    dns: dict[str, list[str]] = field(default_factory=dict)
    namespace_options: dict[str, Any] = field(default_factory=dict)
    ns_dir: str = ""  # where the pinned namespaces live, for pods
    runtime_handler: str = ""
    # CRI: {"cgroup_parent": ..., "limits": Resources dict} for the pod's cgroup.
    resources: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxConfig:
        return cls(**data)


@dataclass
class SandboxState:
    ready: bool = True
    stopped_at: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxState:
        return cls(**data)


@dataclass
class Sandbox:
    id: str
    name: str
    config: SandboxConfig
    state: SandboxState
    created_at: int


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)

"""The container and sandbox model: the records (runtimed.records) and their rules.

State machine of a container (the shim reports exits; the daemon records them):

    created --start--> running --exit/stop/kill--> exited --start--> running ...
       |                  |                          |
       +------remove------+---(force) remove---------+--> (gone)

`unknown` is what a container is when its shim vanished without an exit file.
"""

from __future__ import annotations

from runtimed.records import (
    Container,
    ContainerConfig,
    ContainerState,
    RestartPolicy,
    Sandbox,
    SandboxConfig,
    SandboxState,
    Status,
    now_ns,
    to_dict,
)

__all__ = [
    "PID_CONTAINER",
    "PID_HOST",
    "PID_OWN",
    "PID_POD",
    "Container",
    "ContainerConfig",
    "ContainerState",
    "RestartPolicy",
    "Sandbox",
    "SandboxConfig",
    "SandboxState",
    "Status",
    "now_ns",
    "to_dict",
]

# Pid modes: a namespace of its own, the pod's shared one, the host's, or (PID_CONTAINER
# + an id) another container's.
PID_OWN, PID_POD, PID_HOST, PID_CONTAINER = "", "pod", "host", "container:"

"""What a streaming URL stands for: the CRI request it was handed out for."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExecRequest:
    container_id: str
    cmd: list[str]
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True


@dataclass(frozen=True)
class AttachRequest:
    container_id: str
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True


@dataclass(frozen=True)
class PortForwardRequest:
    pod_sandbox_id: str
    # Ports a WebSocket client forwards when its URL names none; SPDY clients name
    # the port in each stream's headers.
    ports: list[int] = field(default_factory=list)


StreamRequest = ExecRequest | AttachRequest | PortForwardRequest

"""Containers as Docker's API shows them: the list entry and the inspect document.

The inspect document is the one `runtimectl inspect` prints (api/containerview),
with what Docker's API adds for its clients: the request's echo in Config
(ExposedPorts, Volumes, Attach*), exec ids, sizes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtimed.api import containerview
from runtimed.core.model import Container, Status
from runtimed.network import view as netview
from runtimed.network.hook import network_service
from runtimed.network.ports import exposed_ports
from runtimed.volumes import view as volumeview
from runtimed.volumes.plan import plan_of

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService


def state_word(container: Container) -> str:
    return "dead" if container.state.status == Status.UNKNOWN else str(container.state.status)


def _image_config(service: ContainerService, container: Container) -> dict[str, Any]:
    record = service.images.metadata.get_image(container.config.image_id)
    if record is None:
        return {}
    return service.images.config(record).get("config") or {}


def _ports(service: ContainerService, container: Container) -> list[dict[str, Any]]:
    net = network_service(service)
    out: list[dict[str, Any]] = []
    seen = set()
    if net is not None and container.running:
        for rec in net.published(container.id):
            seen.add((rec.container_port, rec.protocol))
            out.append(
                {
                    "IP": rec.host_ip or "0.0.0.0",
                    "PrivatePort": rec.container_port,
                    "PublicPort": rec.host_port,
                    "Type": rec.protocol,
                }
            )
    for spec in exposed_ports(_image_config(service, container)):
        if (spec.container_port, spec.protocol) not in seen:
            out.append({"PrivatePort": spec.container_port, "Type": spec.protocol})
    return out


def _list_mounts(container: Container, service: ContainerService) -> list[dict[str, Any]]:
    return volumeview.inspect_mounts(container, service.records.db)


def summary(service: ContainerService, container: Container) -> dict[str, Any]:
    """One entry of GET /containers/json."""
    cfg = container.config
    image = cfg.image if service.images.metadata.get_image(cfg.image_id) else cfg.image_id
    settings = netview.network_settings(service, container)
    return {
        "Id": container.id,
        "Names": ["/" + container.name],
        "Image": image,
        "ImageID": cfg.image_id,
        "Command": " ".join(cfg.args),
        "Created": container.created_at // 1_000_000_000,
        "Ports": _ports(service, container),
        "Labels": cfg.labels,
        "State": state_word(container),
        "Status": containerview.status_text(container),
        "HostConfig": {"NetworkMode": netview.network_mode(service, container)},
        "NetworkSettings": {"Networks": settings["Networks"]},
        "Mounts": _list_mounts(container, service),
    }


def inspect(service: ContainerService, container: Container, exec_ids: list[str]) -> dict[str, Any]:
    """GET /containers/{id}/json."""
    doc = containerview.inspect(service, container)
    cfg = container.config
    image_config = _image_config(service, container)
    exposed = {f"{s.container_port}/{s.protocol}": {} for s in exposed_ports(image_config)}
    for key in doc["HostConfig"].get("PortBindings") or {}:
        exposed.setdefault(key, {})
    volumes = {e.target: {} for e in plan_of(cfg.extras) if e.type == "volume"}
    doc["Config"].update(
        {
            "Domainname": "",
            "AttachStdin": False,
            "AttachStdout": False,
            "AttachStderr": False,
            "ExposedPorts": exposed or None,
            "Volumes": volumes or None,
            "OnBuild": None,
        }
    )
    doc["ExecIDs"] = exec_ids or None
    doc["MountLabel"] = ""
    doc["ProcessLabel"] = ""
    doc["AppArmorProfile"] = ""
    host = doc["HostConfig"]
    host.setdefault("VolumesFrom", (cfg.extras.get("volumes") or {}).get("volumes_from") or None)
    host.setdefault("Sysctls", cfg.spec.get("sysctls") or None)
    host.setdefault("SecurityOpt", None)
    host.setdefault("ShmSize", 67108864)
    host.setdefault("Runtime", service.runtime.name)
    host.setdefault("IpcMode", "private")
    host.setdefault("UTSMode", "")
    host.setdefault("UsernsMode", "")
    host.setdefault("CgroupnsMode", "private")
    host.setdefault("Isolation", "")
    host.setdefault("Memory", 0)
    host.setdefault("NanoCpus", 0)
    host.setdefault("CpuShares", 0)
    host.setdefault("Init", None)
    host.setdefault("ConsoleSize", [0, 0])
    return doc

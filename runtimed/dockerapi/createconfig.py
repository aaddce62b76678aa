"""POST /containers/create: Docker's Config, HostConfig and NetworkingConfig in core terms.

The body is first put in the Engine API's own words (a CreateContainerRequest:
runtimectl's flags land there too, so both front doors share one translation
onto the core), then what that message has no field for and the core
supports (capabilities, privileged, sysctls, ulimits, ...) is set on the core
request. Clients send every HostConfig field, mostly zero: a field runtimed
cannot honour is refused, naming it, only when it asks for something.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from runtimed.api.engine_containers import create_request as engine_create_request
from runtimed.core.containers import CreateRequest
from runtimed.errors import InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.oci.spec import SECCOMP_UNCONFINED

_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_DEFAULT_NETWORKS = ("", "default", "bridge")

# HostConfig fields that ask for what runtimed cannot do (yet), when they are not zero.
_UNSUPPORTED_HOST = (
    "MemorySwappiness",
    "KernelMemoryTCP",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpuCount",
    "CpuPercent",
    "Devices",
    "DeviceRequests",
    "DeviceCgroupRules",
    "OomScoreAdj",
    "Cgroup",
    "StorageOpt",
    "IOMaximumIOps",
    "IOMaximumBandwidth",
)
# HostConfig's resources (cgroups) -> the Engine API's Resources fields.
_RESOURCES = {
    "Memory": "memory",
    "MemorySwap": "memory_swap",
    "MemoryReservation": "memory_reservation",
    "KernelMemory": "kernel_memory",
    "NanoCpus": "nano_cpus",
    "CpuShares": "cpu_shares",
    "CpuPeriod": "cpu_period",
    "CpuQuota": "cpu_quota",
    "CpusetCpus": "cpuset_cpus",
    "CpusetMems": "cpuset_mems",
    "BlkioWeight": "blkio_weight",
    "PidsLimit": "pids_limit",
    "ShmSize": "shm_size",
    "CgroupParent": "cgroup_parent",
}
_DEVICE_LIMITS = {
    "BlkioWeightDevice": ("blkio_weight_device", "Weight"),
    "BlkioDeviceReadBps": ("device_read_bps", "Rate"),
    "BlkioDeviceWriteBps": ("device_write_bps", "Rate"),
    "BlkioDeviceReadIOps": ("device_read_iops", "Rate"),
    "BlkioDeviceWriteIOps": ("device_write_iops", "Rate"),
}
_HEALTH = {
    "Interval": "interval",
    "Timeout": "timeout",
    "StartPeriod": "start_period",
    "StartInterval": "start_interval",
    "Retries": "retries",
}


def resources(host: dict[str, Any]) -> pb.Resources:
    """HostConfig's resource fields (create and update carry the same ones)."""
    msg = pb.Resources()
    for key, name in _RESOURCES.items():
        value = host.get(key)
        if value is not None:
            setattr(msg, name, type(getattr(msg, name))(value))
    msg.oom_kill_disable = bool(host.get("OomKillDisable"))
    for key, (name, field_name) in _DEVICE_LIMITS.items():
        for item in host.get(key) or []:
            item = _dict(item, key)
            getattr(msg, name).add(
                path=str(item.get("Path") or ""), value=int(item.get(field_name) or 0)
            )
    for u in host.get("Ulimits") or []:
        u = _dict(u, "Ulimits[]")
        msg.ulimits.add(
            name=str(u.get("Name") or ""),
            soft=int(u.get("Soft") or 0),
            hard=int(u.get("Hard") or 0),
        )
    return msg


def _health(cfg: dict[str, Any]) -> pb.HealthConfig | None:
    """Config.Healthcheck (absent or null: the image's)."""
    raw = cfg.get("Healthcheck")
    if raw is None:
        return None
    raw = _dict(raw, "Healthcheck")
    check = pb.HealthConfig(test=str_slice(raw.get("Test"), "Healthcheck.Test"))
    for key, name in _HEALTH.items():
        setattr(check, name, int(raw.get(key) or 0))
    return check


@dataclass
class CreatePlan:
    """The core request, its resources (checked against cgroups at create), and networks
    to join after the create (a second --network)."""

    request: CreateRequest
    resources: pb.Resources
    more_networks: dict[str, dict[str, Any]] = field(default_factory=dict)


def str_slice(value: Any, what: str) -> list[str]:
    """Docker's StrSlice: a list of strings, or one string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidArgument(f"{what}: want a list of strings")


def _dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what}: want a JSON object")
    return value


def _unsupported(where: str, name: str, why: str = "") -> InvalidArgument:
    reason = f": {why}" if why else ""
    return InvalidArgument(f"{where}.{name} is not supported by runtimed{reason}")


def _is_zero(value: Any) -> bool:
    """Zero as clients send an unused field (-1: "unset" for swappiness and pids)."""
    return value in (None, 0, "", [], {}, -1)


def parse_bind(spec: str) -> pb.Bind | pb.MountSpec:
    """HostConfig.Binds: HOST:CTR[:OPTS] (a bind mount) or NAME:CTR[:OPTS] (a named volume)."""
    parts = spec.split(":")
    if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    source, target = parts[0], parts[1]
    if not target.startswith("/"):
        raise InvalidArgument(
            f"invalid volume specification: '{spec}': mount path must be absolute"
        )
    target = os.path.normpath(target)
    if target == "/":
        raise InvalidArgument(f"invalid volume specification: '{spec}': destination can't be '/'")
    is_bind = source.startswith("/")
    if not is_bind and not _VOLUME_NAME.fullmatch(source):
        raise InvalidArgument(
            f"invalid volume specification: '{spec}': bind source path must be absolute, "
            "or name a volume ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"
        )
    readonly, propagation, nocopy = False, "rprivate", False
    for mode in [m for m in parts[2].split(",") if m] if len(parts) == 3 else []:
        if mode in ("ro", "rw"):
            readonly = mode == "ro"
        elif mode in _PROPAGATIONS and is_bind:
            propagation = mode
        elif mode == "nocopy" and not is_bind:
            nocopy = True
        elif mode not in ("z", "Z", "consistent", "cached", "delegated"):
            raise InvalidArgument(f"invalid volume specification: '{spec}': invalid mode: {mode}")
    if is_bind:
        return pb.Bind(
            source=os.path.normpath(source),
            target=target,
            readonly=readonly,
            propagation=propagation,
        )
    return pb.MountSpec(
        type="volume", source=source, target=target, readonly=readonly, no_copy=nocopy
    )


def _mount(m: dict[str, Any]) -> pb.MountSpec:
    """HostConfig.Mounts[]: bind, volume or tmpfs."""
    kind = str(m.get("Type") or "volume")
    spec = pb.MountSpec(
        type=kind,
        source=str(m.get("Source") or ""),
        target=str(m.get("Target") or ""),
        readonly=bool(m.get("ReadOnly")),
    )
    if not spec.target.startswith("/"):
        raise InvalidArgument(f"invalid mount config: mount path {spec.target!r} must be absolute")
    bind = _dict(m.get("BindOptions"), "BindOptions")
    if bind.get("Propagation"):
        spec.bind_propagation = str(bind["Propagation"])
    for name in (
        "NonRecursive",
        "CreateMountpoint",
        "ReadOnlyNonRecursive",
        "ReadOnlyForceRecursive",
    ):
        if bind.get(name):
            raise _unsupported("Mounts.BindOptions", name)
    volume = _dict(m.get("VolumeOptions"), "VolumeOptions")
    spec.no_copy = bool(volume.get("NoCopy"))
    spec.volume_labels.update(
        {str(k): str(v) for k, v in _dict(volume.get("Labels"), "Labels").items()}
    )
    driver = _dict(volume.get("DriverConfig"), "DriverConfig")
    spec.volume_driver = str(driver.get("Name") or "")
    spec.volume_opts.update(
        {str(k): str(v) for k, v in _dict(driver.get("Options"), "Options").items()}
    )
    if volume.get("Subpath"):
        raise _unsupported("Mounts.VolumeOptions", "Subpath")
    tmpfs = _dict(m.get("TmpfsOptions"), "TmpfsOptions")
    spec.tmpfs_size = int(tmpfs.get("SizeBytes") or 0)
    spec.tmpfs_mode = int(tmpfs.get("Mode") or 0)
    for option in tmpfs.get("Options") or []:
        spec.tmpfs_options.append(
            "=".join(str(x) for x in option) if isinstance(option, list) else str(option)
        )
    if kind == "bind" and not spec.source:
        raise InvalidArgument(
            'invalid mount config for type "bind": field Source must not be empty'
        )
    return spec


def _port_bindings(raw: dict[str, Any]) -> list[pb.PortBinding]:
    out = []
    for key, bindings in raw.items():
        port_text, _, proto = str(key).partition("/")
        proto = proto or "tcp"
        try:
            container_port = int(port_text)
        except ValueError:
            raise InvalidArgument(f"invalid port specification: {key!r}") from None
        for b in bindings or [{}]:
            host_ip = str((b or {}).get("HostIp") or "")
            host_port = str((b or {}).get("HostPort") or "")
            start, _, end = host_port.partition("-")
            try:
                first = int(start) if start else 0
                last = int(end) if end else 0
            except ValueError:
                raise InvalidArgument(f"invalid host port {host_port!r} for {key}") from None
            out.append(
                pb.PortBinding(
                    host_ip=host_ip,
                    host_port=first,
                    host_port_end=last,
                    container_port=container_port,
                    protocol=proto,
                )
            )
    return out


def _network(
    req: pb.CreateContainerRequest, mode: str, endpoints: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """NetworkMode and the endpoint of its network; other endpoints are joined after."""
    mode = "bridge" if mode in _DEFAULT_NETWORKS else mode
    req.network = "" if mode == "bridge" else mode
    primary = endpoints.get(mode)
    if primary is None and mode == "bridge":
        primary = endpoints.get("default") or endpoints.get("bridge")
    primary = _dict(primary, f"EndpointsConfig[{mode}]")
    req.network_aliases.extend(str_slice(primary.get("Aliases"), "Aliases"))
    ipam = _dict(primary.get("IPAMConfig"), "IPAMConfig")
    if ipam.get("IPv4Address"):
        req.ip = str(ipam["IPv4Address"])
    if ipam.get("IPv6Address"):
        raise _unsupported("EndpointsConfig.IPAMConfig", "IPv6Address")
    if primary.get("MacAddress"):
        req.mac_address = str(primary["MacAddress"])
    req.links.extend(str_slice(primary.get("Links"), "Links"))
    return {
        name: _dict(ep, f"EndpointsConfig[{name}]")
        for name, ep in endpoints.items()
        if name != mode and not (mode == "bridge" and name in _DEFAULT_NETWORKS)
    }


def _check_host_config(host: dict[str, Any]) -> None:
    for name in _UNSUPPORTED_HOST:
        if not _is_zero(host.get(name)):
            raise _unsupported("HostConfig", name)
    for name in ("Ulimits", *_DEVICE_LIMITS):
        if host.get(name) is not None and not isinstance(host[name], list):
            raise InvalidArgument(f"HostConfig.{name}: want a list")
    if host.get("Init"):
        raise _unsupported("HostConfig", "Init", "no init binary (docker-init, tini) is set up")
    for name, allowed in (
        ("IpcMode", ("", "private", "shareable")),
        ("UTSMode", ("",)),
        ("UsernsMode", ("",)),
        ("CgroupnsMode", ("", "private", "host")),
        ("Isolation", ("", "default")),
    ):
        value = str(host.get(name) or "")
        if value not in allowed:
            raise _unsupported("HostConfig", f"{name}={value}")
    for name in ("GroupAdd",):
        for item in host.get(name) or []:
            if not str(item).isdigit():
                raise InvalidArgument(
                    f"HostConfig.GroupAdd: {item!r}: runtimed takes numeric group ids"
                )


def _security_opts(opts: list[str], core: CreateRequest) -> None:
    for opt in opts:
        key, sep, value = opt.partition("=" if "=" in opt else ":")
        if key == "no-new-privileges":
            core.no_new_privileges = value.lower() in ("", "true", "1")
        elif key == "seccomp" and value == "unconfined":
            core.seccomp = SECCOMP_UNCONFINED
        elif key == "label" and value in ("disable", "disabled"):
            continue  # SELinux: nothing to relabel here
        elif key == "apparmor" and value == "unconfined":
            continue
        else:
            raise _unsupported("HostConfig", f"SecurityOpt {opt!r}")


def build_plan(body: Any, *, name: str = "", platform: str = "") -> CreatePlan:
    """The body of POST /containers/create as a core request."""
    cfg = _dict(body, "request body")
    host = _dict(cfg.get("HostConfig"), "HostConfig")
    networking = _dict(cfg.get("NetworkingConfig"), "NetworkingConfig")
    endpoints = _dict(networking.get("EndpointsConfig"), "EndpointsConfig")
    image = str(cfg.get("Image") or "")
    if not image:
        raise InvalidArgument("no image given (Config.Image is empty)")
    _check_host_config(host)
    if cfg.get("Domainname"):
        raise _unsupported("Config", "Domainname")
    restart = _dict(host.get("RestartPolicy"), "RestartPolicy")
    log_config = _dict(host.get("LogConfig"), "LogConfig")
    stop_timeout = cfg.get("StopTimeout")
    req = pb.CreateContainerRequest(
        image=image,
        name=name.lstrip("/"),
        env=str_slice(cfg.get("Env"), "Env"),
        working_dir=str(cfg.get("WorkingDir") or ""),
        user=str(cfg.get("User") or ""),
        hostname=str(cfg.get("Hostname") or ""),
        labels={str(k): str(v) for k, v in _dict(cfg.get("Labels"), "Labels").items()},
        tty=bool(cfg.get("Tty")),
        stdin_open=bool(cfg.get("OpenStdin")),
        stdin_once=bool(cfg.get("StdinOnce")),
        read_only=bool(host.get("ReadonlyRootfs")),
        restart_policy=pb.RestartPolicy(
            name=str(restart.get("Name") or "no"),
            max_retries=int(restart.get("MaximumRetryCount") or 0),
        ),
        stop_signal=str(cfg.get("StopSignal") or ""),
        stop_timeout=-1 if stop_timeout is None else int(stop_timeout),
        auto_remove=bool(host.get("AutoRemove")),
        platform=platform,
        log_driver=str(log_config.get("Type") or ""),
        log_opts={str(k): str(v) for k, v in _dict(log_config.get("Config"), "Config").items()},
        volumes_from=str_slice(host.get("VolumesFrom"), "VolumesFrom"),
        dns=str_slice(host.get("Dns"), "Dns"),
        dns_search=str_slice(host.get("DnsSearch"), "DnsSearch"),
        dns_options=str_slice(host.get("DnsOptions"), "DnsOptions"),
        extra_hosts=str_slice(host.get("ExtraHosts"), "ExtraHosts"),
        links=str_slice(host.get("Links"), "Links"),
        publish_all=bool(host.get("PublishAllPorts")),
        pid_mode=str(host.get("PidMode") or ""),
        mac_address=str(cfg.get("MacAddress") or ""),
    )
    entrypoint = cfg.get("Entrypoint")
    if entrypoint is not None:
        # [""] (docker run --entrypoint "") is an empty entrypoint, as is [].
        req.has_entrypoint = True
        given = str_slice(entrypoint, "Entrypoint")
        req.entrypoint.extend(given if given != [""] else [])
    cmd = str_slice(cfg.get("Cmd"), "Cmd")
    if cmd:
        req.has_cmd = True
        req.cmd.extend(cmd)
    driver = str(host.get("VolumeDriver") or "")
    for spec in str_slice(host.get("Binds"), "Binds"):
        item = parse_bind(spec)
        if isinstance(item, pb.Bind):
            req.binds.append(item)
        else:
            item.volume_driver = driver
            req.mounts.append(item)
    taken = {b.target for b in req.binds} | {m.target for m in req.mounts}
    for target in _dict(cfg.get("Volumes"), "Volumes"):
        if os.path.normpath(target) not in taken:
            req.mounts.append(pb.MountSpec(type="volume", target=target, volume_driver=driver))
    req.mounts.extend(_mount(_dict(m, "Mounts[]")) for m in host.get("Mounts") or [])
    for target, opts in _dict(host.get("Tmpfs"), "Tmpfs").items():
        req.mounts.append(
            pb.MountSpec(
                type="tmpfs", target=target, tmpfs_options=[o for o in str(opts).split(",") if o]
            )
        )
    req.ports.extend(_port_bindings(_dict(host.get("PortBindings"), "PortBindings")))
    mode = str(host.get("NetworkMode") or "")
    if cfg.get("NetworkDisabled"):
        mode = "none"
    more = _network(req, mode, endpoints)
    req.resources.CopyFrom(resources(host))
    health = _health(cfg)
    if health is not None:
        req.healthcheck.CopyFrom(health)
    core = engine_create_request(req)
    core.cap_add = str_slice(host.get("CapAdd"), "CapAdd")
    core.cap_drop = str_slice(host.get("CapDrop"), "CapDrop")
    core.privileged = bool(host.get("Privileged"))
    core.sysctls = {str(k): str(v) for k, v in _dict(host.get("Sysctls"), "Sysctls").items()}
    core.annotations = {
        str(k): str(v) for k, v in _dict(host.get("Annotations"), "Annotations").items()
    }
    core.supplemental_groups = [int(g) for g in host.get("GroupAdd") or []]
    if host.get("MaskedPaths") is not None:
        core.masked_paths = str_slice(host.get("MaskedPaths"), "MaskedPaths")
    if host.get("ReadonlyPaths") is not None:
        core.readonly_paths = str_slice(host.get("ReadonlyPaths"), "ReadonlyPaths")
    _security_opts(str_slice(host.get("SecurityOpt"), "SecurityOpt"), core)
    return CreatePlan(request=core, resources=req.resources, more_networks=more)

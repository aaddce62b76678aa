"""How containers look from the outside: docker's ps summary, status words and inspect."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from runtimed.api import healthview, resourceview
from runtimed.core.model import PID_POD, Container, Status
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.humanize import human_duration
from runtimed.network import view as netview
from runtimed.volumes import view as volumeview

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService


def rfc3339(ns: int) -> str:
    if not ns:
        return "0001-01-01T00:00:00Z"
    seconds, nanos = divmod(ns, 1_000_000_000)
    base = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}Z"


def status_text(container: Container) -> str:
    state = container.state
    now = time.time_ns()
    if state.status == Status.RUNNING:
        up = "Up " + human_duration((now - state.started_at) / 1e9)
        return up + " (Paused)" if state.paused else up + healthview.status_suffix(container)
    if state.status == Status.EXITED:
        return f"Exited ({state.exit_code}) {human_duration((now - state.finished_at) / 1e9)} ago"
    if state.status == Status.UNKNOWN:
        return "Unknown"
    return "Created"


def _present(key: str, value: Any) -> dict[str, Any]:
    """{key: value}, or nothing when value is None (docker omits such fields)."""
    return {} if value is None else {key: value}


def _state_word(container: Container) -> str:
    if container.state.status == Status.RUNNING and container.state.paused:
        return "paused"
    return str(container.state.status)


def docker_status(container: Container) -> str:
    """docker's State.Status (inspect, and ps's status filter): a paused container is
    paused, one in an unknown state dead."""
    return "dead" if container.state.status == Status.UNKNOWN else _state_word(container)


def summary(service: ContainerService, container: Container) -> pb.ContainerSummary:
    record = service.images.metadata.get_image(container.config.image_id)
    image = container.config.image
    if record is None:
        image = container.config.image_id
    return pb.ContainerSummary(
        id=container.id,
        name=container.name,
        image=image,
        image_id=container.config.image_id,
        command=" ".join(container.config.args),
        created=container.created_at // 1_000_000_000,
        state=_state_word(container),
        status=status_text(container),
        ports=netview.ports_text(service, container),
        labels=container.config.labels,
        exit_code=container.state.exit_code,
    )


def inspect(service: ContainerService, container: Container) -> dict[str, Any]:
    """The document `docker container inspect` prints."""
    cfg, state, spec = container.config, container.state, container.config.spec
    files = service.files_dir(container.id)
    return {
        "Id": container.id,
        "Created": rfc3339(container.created_at),
        "Path": cfg.args[0] if cfg.args else "",
        "Args": cfg.args[1:],
        "State": {
            "Status": docker_status(container),
            "Running": state.status == Status.RUNNING,
            "Paused": state.paused,
            "Restarting": False,
            "OOMKilled": state.reason == "OOMKilled",
            "Dead": state.status == Status.UNKNOWN,
            "Pid": state.pid,
            "ExitCode": state.exit_code,
            "Error": state.error,
            "StartedAt": rfc3339(state.started_at),
            "FinishedAt": rfc3339(state.finished_at),
            **_present("Health", healthview.state(container, rfc3339)),
        },
        "Image": cfg.image_id,
        "ResolvConfPath": str(files / "resolv.conf"),
        "HostnamePath": str(files / "hostname"),
        "HostsPath": str(files / "hosts"),
        "LogPath": cfg.log_path if cfg.log_driver in ("json-file", "cri") else "",
        "Name": "/" + container.name,
        "RestartCount": state.restart_count,
        "Driver": service.snapshotter.name,
        "Platform": "linux",
        "HostConfig": {
            "Binds": volumeview.inspect_binds(container),
            "Tmpfs": volumeview.tmpfs_map(container),
            "LogConfig": {"Type": cfg.log_driver, "Config": cfg.log_opts},
            "RestartPolicy": {
                "Name": cfg.restart_policy.name,
                "MaximumRetryCount": cfg.restart_policy.max_retries,
            },
            "AutoRemove": cfg.auto_remove,
            "PidMode": cfg.pid_mode if cfg.pid_mode != PID_POD else "",
            "ReadonlyRootfs": spec.get("readonly_rootfs", False),
            "Privileged": spec.get("privileged", False),
            "CapAdd": spec.get("cap_add", []),
            "CapDrop": spec.get("cap_drop", []),
            **netview.host_config(service, container),
            **resourceview.host_config(container),
        },
        "Mounts": volumeview.inspect_mounts(container, service.records.db),
        "Config": {
            "Hostname": spec.get("hostname", ""),
            "User": spec.get("user", ""),
            "AttachStdin": False,
            "Tty": cfg.tty,
            "OpenStdin": cfg.stdin,
            "StdinOnce": cfg.stdin_once,
            "Env": spec.get("env", []),
            "Cmd": spec.get("cmd"),
            "Entrypoint": spec.get("entrypoint"),
            "Image": cfg.image,
            "WorkingDir": spec.get("working_dir", ""),
            "Labels": cfg.labels,
            "StopSignal": cfg.stop_signal,
            "StopTimeout": cfg.stop_timeout,
            **_present("Healthcheck", healthview.config(container)),
        },
        "NetworkSettings": netview.network_settings(service, container),
    }

"""docker-py's keyword arguments turned into Engine requests (shared by both flavours)."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from runtimed.client.errors import InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

# The options of containers.create()/run() this client knows, as docker-py names them.
CREATE_KWARGS = frozenset(
    {
        "auto_remove",
        "dns",
        "dns_opt",
        "dns_search",
        "entrypoint",
        "environment",
        "extra_hosts",
        "hostname",
        "labels",
        "links",
        "log_config",
        "mac_address",
        "name",
        "network",
        "network_mode",
        "pid_mode",
        "platform",
        "ports",
        "publish_all_ports",
        "read_only",
        "restart_policy",
        "stdin_open",
        "stop_signal",
        "stop_timeout",
        "tmpfs",
        "tty",
        "user",
        "volumes",
        "volumes_from",
        "working_dir",
    }
)


def split_command(command: str | Iterable[str] | None) -> list[str] | None:
    if command is None:
        return None
    if isinstance(command, str):
        return shlex.split(command)
    return [str(c) for c in command]


def environment(env: Mapping[str, Any] | Iterable[str] | None) -> list[str]:
    if env is None:
        return []
    if isinstance(env, Mapping):
        return [f"{k}={'' if v is None else v}" for k, v in env.items()]
    return [str(e) for e in env]


def labels(value: Mapping[str, str] | Iterable[str] | None) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    return {str(k): "" for k in value}


def filters(value: Mapping[str, Any] | None) -> list[pb.Filter]:
    """docker-py's filters dict ({"status": "exited", "label": ["a", "b=c"]})."""
    out = []
    for key, values in (value or {}).items():
        items = values if isinstance(values, list | tuple | set) else [values]
        for item in items:
            text = str(item).lower() if isinstance(item, bool) else str(item)
            out.append(pb.Filter(key=key, value=text))
    return out


def filter_map(value: Mapping[str, Any] | None) -> dict[str, str]:
    """The map form some requests take (one value per key)."""
    return {f.key: f.value for f in filters(value)}


def _port_key(key: int | str) -> tuple[int, str]:
    port, _, proto = str(key).partition("/")
    try:
        return int(port), (proto or "tcp").lower()
    except ValueError:
        raise InvalidArgument(f"ports: {key!r} is not PORT or PORT/PROTO") from None


def port_bindings(ports: Mapping[int | str, Any] | None) -> list[pb.PortBinding]:
    """{'80/tcp': 8080, '53/udp': ('127.0.0.1', 53), 22: None, 9000: [9000, 9001]}."""
    out = []
    for key, value in (ports or {}).items():
        container_port, proto = _port_key(key)
        for host in value if isinstance(value, list) else [value]:
            host_ip, host_port = "", 0
            if isinstance(host, tuple):
                host_ip = str(host[0])
                host_port = int(host[1]) if len(host) > 1 and host[1] is not None else 0
            elif host is not None:
                host_port = int(host)
            out.append(
                pb.PortBinding(
                    host_ip=host_ip,
                    host_port=host_port,
                    container_port=container_port,
                    protocol=proto,
                )
            )
    return out


def _cli_parse(parse: Any, spec: str) -> Any:
    """runtimectl's parser for a -v/--tmpfs spec, its error as ours."""
    from runtimed.cli.client import CliError

    try:
        return parse(spec)
    except CliError as exc:
        raise InvalidArgument(exc.message) from None


def volume_specs(volumes: Mapping[str, Any] | Iterable[str] | None) -> list[str]:
    """{'/host': {'bind': '/ctr', 'mode': 'ro'}, 'named': {'bind': '/data'}} or
    ['/host:/ctr:ro', 'named:/data'] -> runtimectl's -v specs."""
    if volumes is None:
        return []
    if isinstance(volumes, Mapping):
        specs = []
        for source, how in volumes.items():
            if isinstance(how, str):
                how = {"bind": how}
            bind = how.get("bind")
            if not bind:
                raise InvalidArgument(f"volumes: {source!r} needs a 'bind' path")
            mode = how.get("mode")
            specs.append(f"{source}:{bind}:{mode}" if mode else f"{source}:{bind}")
        return specs
    return [str(v) for v in volumes]


def apply_mounts(req: pb.CreateContainerRequest, kwargs: Mapping[str, Any]) -> None:
    from runtimed.cli.mountflags import check_duplicates, parse_tmpfs
    from runtimed.cli.runflags import parse_volume

    for spec in volume_specs(kwargs.get("volumes")):
        item = _cli_parse(parse_volume, spec)
        (req.binds if isinstance(item, pb.Bind) else req.mounts).append(item)
    tmpfs = kwargs.get("tmpfs") or {}
    entries = (
        [f"{p}:{o}" if o else p for p, o in tmpfs.items()]
        if isinstance(tmpfs, Mapping)
        else list(tmpfs)
    )
    for spec in entries:
        req.mounts.append(_cli_parse(parse_tmpfs, spec))
    _cli_parse(lambda _: check_duplicates(req.binds, req.mounts), "")
    req.volumes_from.extend(kwargs.get("volumes_from") or [])


def _pairs(value: Mapping[str, str] | Iterable[str] | None, sep: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [f"{k}{sep}{v}" for k, v in value.items()]
    return [str(v) for v in value]


def create_request(
    image: str, command: str | Iterable[str] | None, kwargs: Mapping[str, Any]
) -> pb.CreateContainerRequest:
    """containers.create(image, command, **kwargs) as the daemon wants it."""
    unknown = sorted(set(kwargs) - CREATE_KWARGS)
    if unknown:
        raise TypeError(f"create() got unexpected keyword arguments: {', '.join(unknown)}")
    restart = kwargs.get("restart_policy") or {}
    log_config = kwargs.get("log_config") or {}
    network = kwargs.get("network") or kwargs.get("network_mode") or ""
    stop_timeout = kwargs.get("stop_timeout")
    req = pb.CreateContainerRequest(
        image=image,
        name=kwargs.get("name") or "",
        env=environment(kwargs.get("environment")),
        working_dir=kwargs.get("working_dir") or "",
        user=str(kwargs.get("user") or ""),
        hostname=kwargs.get("hostname") or "",
        labels=labels(kwargs.get("labels")),
        tty=bool(kwargs.get("tty")),
        stdin_open=bool(kwargs.get("stdin_open")),
        read_only=bool(kwargs.get("read_only")),
        restart_policy=pb.RestartPolicy(
            name=restart.get("Name") or "no", max_retries=int(restart.get("MaximumRetryCount", 0))
        ),
        stop_signal=str(kwargs.get("stop_signal") or ""),
        stop_timeout=-1 if stop_timeout is None else int(stop_timeout),
        auto_remove=bool(kwargs.get("auto_remove")),
        pull_if_missing=True,
        platform=kwargs.get("platform") or "",
        log_driver=log_config.get("Type") or log_config.get("type") or "",
        log_opts={str(k): str(v) for k, v in (log_config.get("Config") or {}).items()},
        network="bridge" if network == "default" else network,
        links=[f"{n}:{a}" if a else n for n, a in _links(kwargs.get("links"))],
        dns=list(kwargs.get("dns") or []),
        dns_search=list(kwargs.get("dns_search") or []),
        dns_options=list(kwargs.get("dns_opt") or []),
        extra_hosts=_pairs(kwargs.get("extra_hosts"), ":"),
        mac_address=kwargs.get("mac_address") or "",
        ports=port_bindings(kwargs.get("ports")),
        publish_all=bool(kwargs.get("publish_all_ports")),
        pid_mode=kwargs.get("pid_mode") or "",
    )
    entrypoint = kwargs.get("entrypoint")
    if entrypoint is not None:
        req.has_entrypoint = True
        req.entrypoint.extend(split_command(entrypoint) or [])
    cmd = split_command(command)
    if cmd is not None:
        req.has_cmd = True
        req.cmd.extend(cmd)
    apply_mounts(req, kwargs)
    return req


def _links(value: Mapping[str, str] | Iterable[str] | None) -> list[tuple[str, str]]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [(str(k), str(v or "")) for k, v in value.items()]
    return [(str(v), "") for v in value]


def exec_requests(
    container_id: str,
    cmd: str | Iterable[str],
    environment: Mapping[str, Any] | Iterable[str] | None,
    user: str,
    workdir: str | None,
    tty: bool,
    privileged: bool,
    detach: bool,
) -> list[pb.StdioInput]:
    """The Exec call's requests, arguments in exec_run's order: the options, then "no input"
    (ending the requests without closing stdin would read as a detach)."""
    options = pb.ExecOptions(
        id=container_id,
        cmd=split_command(cmd) or [],
        env=_env_list(environment),
        user=user,
        working_dir=workdir or "",
        tty=tty,
        detach=detach,
        privileged=privileged,
    )
    return [pb.StdioInput(exec=options), pb.StdioInput(close_stdin=True)]


def _env_list(env: Mapping[str, Any] | Iterable[str] | None) -> list[str]:
    return environment(env)


def _time_arg(value: Any) -> str:
    """since/until as docker-py takes them: a datetime, unix seconds, or the daemon's text."""
    if value is None:
        return ""
    if hasattr(value, "timestamp"):
        return f"{value.timestamp():.9f}"
    return str(value)


def logs_request(
    container_id: str,
    *,
    stdout: bool,
    stderr: bool,
    follow: bool,
    tail: int | str,
    since: Any,
    until: Any,
) -> pb.ContainerLogsRequest:
    return pb.ContainerLogsRequest(
        id=container_id,
        follow=follow,
        tail=-1 if tail in ("all", None) else int(tail),
        since=_time_arg(since),
        until=_time_arg(until),
        timestamps=False,  # stamped here, from time_nano, as runtimectl does
        stdout=stdout,
        stderr=stderr,
    )


def pull_request(
    repository: str, tag: str | None, platform: str | None, auth_config: Mapping[str, str] | None
) -> pb.PullImageRequest:
    reference = repository
    if tag:
        reference = f"{repository}@{tag}" if tag.startswith("sha256:") else f"{repository}:{tag}"
    auth = None
    if auth_config:
        auth = pb.RegistryAuth(
            username=auth_config.get("username", ""),
            password=auth_config.get("password", ""),
            identity_token=auth_config.get("identitytoken", ""),
        )
    return pb.PullImageRequest(reference=reference, platform=platform or "", auth=auth)


def network_create_request(
    name: str,
    driver: str | None,
    options: Mapping[str, str] | None,
    ipam: Mapping[str, Any] | None,
    internal: bool,
    labels: Mapping[str, str] | None,
    enable_ipv6: bool,
) -> pb.CreateNetworkRequest:
    """ipam as docker-py's IPAMConfig dict: {"Config": [{"Subnet", "IPRange", "Gateway"}]}."""
    pools = [
        pb.IpamConfig(
            subnet=c.get("Subnet", ""), ip_range=c.get("IPRange", ""), gateway=c.get("Gateway", "")
        )
        for c in (ipam or {}).get("Config", []) or []
    ]
    return pb.CreateNetworkRequest(
        name=name,
        driver=driver or "",
        ipam=pools,
        internal=internal,
        labels=dict(labels or {}),
        options=dict(options or {}),
        ipv6=enable_ipv6,
    )


def wait_result(reply: pb.WaitContainerResponse) -> dict[str, Any]:
    """docker's wait body: {"StatusCode": N, "Error": None | {"Message": ...}}."""
    return {
        "StatusCode": reply.exit_code,
        "Error": {"Message": reply.error} if reply.error else None,
    }


def removed_image(reply: pb.RemoveImageResponse) -> list[dict[str, str]]:
    return [{"Untagged": u} for u in reply.untagged] + [{"Deleted": d} for d in reply.deleted]


def reply_dict(reply: Message) -> dict[str, Any]:
    """version()/info(): the reply as a dict with the proto's field names."""
    return json_format.MessageToDict(reply, preserving_proto_field_name=True)


def stop_request(container_id: str, timeout: int | None) -> pb.StopContainerRequest:
    """stop()/restart(): no timeout means the container's own (-1)."""
    return pb.StopContainerRequest(id=container_id, timeout=-1 if timeout is None else timeout)


def kill_request(container_id: str, signal: str | int | None) -> pb.KillContainerRequest:
    return pb.KillContainerRequest(id=container_id, signal="" if signal is None else str(signal))


def top_result(reply: pb.TopContainerResponse) -> dict[str, Any]:
    return {
        "Titles": list(reply.titles),
        "Processes": [list(r.fields) for r in reply.processes],
    }


def list_containers_request(
    all_: bool, value: Mapping[str, Any] | None, limit: int
) -> pb.ListContainersRequest:
    return pb.ListContainersRequest(
        all=all_, filters=filters(value), last=limit if limit > 0 else 0
    )


def pruned_containers(reply: pb.PruneContainersResponse) -> dict[str, Any]:
    return {"ContainersDeleted": list(reply.deleted), "SpaceReclaimed": reply.space_reclaimed}


def list_images_request(
    name: str | None, all_: bool, value: Mapping[str, Any] | None
) -> pb.ListImagesRequest:
    return pb.ListImagesRequest(all=all_, filters=filter_map(value), reference=name or "")


def connect_request(
    network: str, container: str, aliases: list[str] | None, ipv4_address: str | None
) -> pb.ConnectNetworkRequest:
    return pb.ConnectNetworkRequest(
        network=network, container=container, aliases=aliases or [], ip=ipv4_address or ""
    )


def volume_create_request(
    name: str | None,
    driver: str | None,
    driver_opts: Mapping[str, str] | None,
    labels: Mapping[str, str] | None,
) -> pb.CreateVolumeRequest:
    return pb.CreateVolumeRequest(
        name=name or "",
        driver=driver or "",
        driver_opts=dict(driver_opts or {}),
        labels=dict(labels or {}),
    )

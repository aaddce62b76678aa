"""Daemon configuration: where things live and runtimed.toml.

Defaults follow the XDG base directories, as DESIGN.md lays out:
socket and run state under $XDG_RUNTIME_DIR/runtimed, data under
$XDG_DATA_HOME/runtimed, configuration in $XDG_CONFIG_HOME/runtimed.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtimed.cgroups.units import parse_ulimit
from runtimed.errors import InvalidArgument
from runtimed.paths import config_dir, data_dir, default_socket, parse_host, runtime_dir
from runtimed.streaming.address import DEFAULT_ADDRESS, parse_address

STORAGE_DRIVERS = ("auto", "overlay", "fuse-overlayfs", "vfs")
OCI_RUNTIMES = ("auto", "crun", "runc")


@dataclass
class Config:
    """What runtimed.toml may set; every field has a working default."""

    socket: Path = field(default_factory=default_socket)
    data_dir: Path = field(default_factory=data_dir)
    run_dir: Path = field(default_factory=runtime_dir)
    storage_driver: str = "auto"
    runtime: str = "auto"
    registries_conf: Path | None = None
    insecure_registries: list[str] = field(default_factory=list)
    max_concurrent_downloads: int = 3
    default_log_driver: str = "json-file"
    # Uplink of the rootless network namespace: auto | pasta | slirp4netns.
    network_backend: str = "auto"
    # May containers reach services on the host's loopback through host.containers.internal?
    # No by default, as in rootless Docker and Podman: another user's 127.0.0.1-only
    # service must stay private. `true` is slirp4netns's allow_host_loopback.
    host_loopback: bool = False
    default_log_opts: dict[str, str] = field(default_factory=dict)
    # The CRI streaming server (exec, attach, port-forward URLs): loopback HOST:PORT, 0 = any.
    stream_address: str = DEFAULT_ADDRESS
    # The Docker Engine API's unix socket: None = docker.sock in run_dir, "" = no Docker API.
    docker_socket: str | None = None
    debug: bool = False
    # Remote access (dockerd's hosts/tlsverify/tlscacert/tlscert/tlskey): tcp:// listeners
    # for the gRPC API and for the Docker API, served only with mutual TLS.
    tcp_hosts: list[str] = field(default_factory=list)
    docker_tcp_hosts: list[str] = field(default_factory=list)
    tlsverify: bool = False
    tlscacert: Path | None = None
    tlscert: Path | None = None
    tlskey: Path | None = None
    # Not a setting: the socket is in the runtime's own directory, which is kept private
    # (a directory the user named for it is used as it is).
    own_socket_dir: bool = False
    # ulimits every container gets unless --ulimit says otherwise: {name: "soft[:hard]"}.
    default_ulimits: list[tuple[str, int, int]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None) -> Config:
        """Read runtimed.toml; an explicit path must exist, the default one may not."""
        explicit = path is not None
        path = path or config_dir() / "runtimed.toml"
        cfg = cls()
        if not path.exists():
            if explicit:
                raise InvalidArgument(f"config file {path} does not exist")
            return cfg
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidArgument(f"cannot read config file {path}: {exc}") from exc
        cfg.apply(raw, source=path)
        return cfg

    def apply(self, raw: dict, *, source: Path) -> None:
        for key, value in raw.items():
            convert = _SETTINGS.get(key)
            if convert is None:
                raise InvalidArgument(f"{source}: unknown setting {key!r}")
            try:
                setattr(self, key, convert(value))
            except ValueError as exc:
                raise InvalidArgument(f"{source}: {key}: {exc}") from exc

    def docker_socket_path(self) -> Path | None:
        """Where the Docker API listens (None: it is off)."""
        if self.docker_socket is None:
            return self.run_dir / "docker.sock"
        return Path(self.docker_socket).absolute() if self.docker_socket else None

    def registries_conf_path(self) -> Path | None:
        """Our own registries.conf, else the user's containers one, else the system's."""
        if self.registries_conf is not None:
            return self.registries_conf
        for candidate in (
            config_dir() / "registries.conf",
            Path.home() / ".config" / "containers" / "registries.conf",
            Path("/etc/containers/registries.conf"),
        ):
            if candidate.exists():
                return candidate
        return None


def _choice(allowed: tuple[str, ...]) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, not {value!r}")
        return str(value)

    return convert


def _stream_address(value: Any) -> str:
    try:
        parse_address(str(value))
    except InvalidArgument as exc:
        raise ValueError(exc.message.removeprefix("stream_address: ")) from None
    return str(value)


def _docker_socket(value: Any) -> str:
    """A path, unix:///PATH, or "" to turn the Docker API off."""
    if not isinstance(value, str):
        raise ValueError(f'{value!r} is not a path (or "" for no Docker API)')
    if not value:
        return ""
    try:
        return str(parse_host(value))
    except InvalidArgument as exc:
        raise ValueError(exc.message) from None


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


_SETTINGS: dict[str, Callable[[Any], object]] = {
    "socket": Path,
    "data_dir": Path,
    "run_dir": Path,
    "storage_driver": _choice(STORAGE_DRIVERS),
    "runtime": _choice(OCI_RUNTIMES),
    "registries_conf": Path,
    "insecure_registries": lambda v: [str(x) for x in v],
    "max_concurrent_downloads": int,
    "default_log_driver": str,
    "network_backend": _choice(("auto", "pasta", "slirp4netns")),
    "host_loopback": _boolean,
    "default_log_opts": lambda v: {str(k): str(x) for k, x in dict(v).items()},
    "stream_address": _stream_address,
    "docker_socket": _docker_socket,
    "debug": bool,
    "default_ulimits": lambda v: [parse_ulimit(f"{k}={x}") for k, x in dict(v).items()],
    "tcp_hosts": lambda v: [str(x) for x in v],
    "docker_tcp_hosts": lambda v: [str(x) for x in v],
    "tlsverify": _boolean,
    "tlscacert": Path,
    "tlscert": Path,
    "tlskey": Path,
}

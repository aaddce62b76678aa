"""Docker's legacy links on the default bridge: what `--link NAME:ALIAS` puts in the
environment of the linking container, and the refusal to link to one that is not running.

The variables are docker's (its links package): for alias `db` linked from `web`,
`DB_PORT=tcp://IP:PORT` for the first exposed port, `DB_PORT_<N>_<PROTO>` with its
`_ADDR`, `_PORT` and `_PROTO` for every exposed port, `_START`/`_END` pairs for runs of
consecutive ports, `DB_NAME=/web/db`, and `DB_ENV_<K>` for the target's environment
(its image's and its own, without HOME and PATH). They are computed at each start: the
target's address may have changed since.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtimed.errors import FailedPrecondition
from runtimed.network.ports import PortSpec, exposed_ports
from runtimed.oci.spec import merge_env

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService
    from runtimed.core.model import Container
    from runtimed.oci.spec import SpecRequest

# Left out of DB_ENV_*, as docker leaves them: set by every image, about the target only.
_SKIPPED_ENV = ("HOME", "PATH")


@dataclass(frozen=True, order=True)
class Port:
    number: int
    proto: str = "tcp"


@dataclass
class Target:
    """A linked container as the link variables describe it."""

    alias: str
    ip: str
    ports: list[Port] = field(default_factory=list)
    env: list[str] = field(default_factory=list)  # the target's KEY=VALUE, image's first


def env_prefix(alias: str) -> str:
    """docker's: the alias uppercased, '-' made '_' (`my-db` -> MY_DB)."""
    return alias.upper().replace("-", "_")


def _ordered(ports: Iterable[Port]) -> list[Port]:
    # docker's order: TCP before any other protocol, then by protocol name, then by number.
    return sorted(set(ports), key=lambda p: (p.proto != "tcp", p.proto, p.number))


def _runs(ports: list[Port]) -> list[list[Port]]:
    """Consecutive numbers of one protocol, grouped."""
    runs: list[list[Port]] = []
    for port in ports:
        last = runs[-1][-1] if runs else None
        if last is not None and last.proto == port.proto and port.number == last.number + 1:
            runs[-1].append(port)
        else:
            runs.append([port])
    return runs


def link_env(linker_name: str, target: Target) -> list[str]:
    """The KEY=VALUE entries one link gives the linking container `linker_name`."""
    prefix = env_prefix(target.alias)
    ports = _ordered(target.ports)
    env = []
    if ports:
        first = ports[0]
        env.append(f"{prefix}_PORT={first.proto}://{target.ip}:{first.number}")
    for run in _runs(ports):
        for port in run:
            key = f"{prefix}_PORT_{port.number}_{port.proto.upper()}"
            env += [
                f"{key}={port.proto}://{target.ip}:{port.number}",
                f"{key}_ADDR={target.ip}",
                f"{key}_PORT={port.number}",
                f"{key}_PROTO={port.proto}",
            ]
        if len(run) > 1:
            start, end = run[0], run[-1]
            key = f"{prefix}_PORT_{start.number}_{start.proto.upper()}"
            env += [
                f"{key}_START={start.proto}://{target.ip}:{start.number}",
                f"{key}_PORT_START={start.number}",
                f"{key}_END={end.proto}://{target.ip}:{end.number}",
                f"{key}_PORT_END={end.number}",
            ]
    env.append(f"{prefix}_NAME=/{linker_name}/{target.alias}")
    for entry in target.env:
        name, sep, value = entry.partition("=")
        if sep and name not in _SKIPPED_ENV:
            env.append(f"{prefix}_ENV_{name}={value}")
    return env


def add_to_spec(spec: SpecRequest, linker_name: str, targets: list[Target]) -> None:
    """Put the links' variables in `spec`'s environment, under the image's and the
    container's own (those win over a link's, as they do in docker)."""
    link_vars = [entry for target in targets for entry in link_env(linker_name, target)]
    image_env = [e for e in spec.image_config.get("Env") or [] if isinstance(e, str)]
    taken = {entry.partition("=")[0] for entry in [*image_env, *spec.env]}
    spec.env = [e for e in link_vars if e.partition("=")[0] not in taken] + spec.env


def link_targets(
    linker: Container,
    links: list[dict[str, str]],
    containers: ContainerService,
    *,
    ip_of: Callable[[str], str],
    image_config: Callable[[Container], dict[str, Any]],
    published: Callable[[str], list[PortSpec]],
) -> list[Target]:
    """Each link of `linker` (as the network service stored them: id, name, alias) with what
    its variables need; FailedPrecondition, in docker's words, for a target not running."""
    found = []
    for link in links:
        target = containers.records.get(link["id"])
        if target is None or not target.running:
            raise FailedPrecondition(
                f"Cannot link to a non running container: /{link['name']} "
                f"AS /{linker.name}/{link['alias']}"
            )
        ip = ip_of(target.id)
        if not ip:
            raise FailedPrecondition(
                f"container {target.id} not attached to default bridge network"
            )
        config = image_config(target)
        image_env = [e for e in config.get("Env") or [] if isinstance(e, str) and "=" in e]
        ports = [Port(s.container_port, s.protocol) for s in exposed_ports(config)]
        ports += [Port(s.container_port, s.protocol) for s in published(target.id)]
        env = merge_env(image_env, target.config.spec.get("env") or [])
        found.append(Target(alias=link["alias"], ip=ip, ports=ports, env=env))
    return found

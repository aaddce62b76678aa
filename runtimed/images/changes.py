"""Dockerfile instructions applied to an image config (`import --change`)."""

from __future__ import annotations

import json
import shlex
from typing import Any

from runtimed.build.config import healthcheck
from runtimed.build.dockerfile import parse_instruction_line
from runtimed.errors import InvalidArgument

_SUPPORTED = (
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "USER",
    "VOLUME",
    "WORKDIR",
    "STOPSIGNAL",
    "ONBUILD",
    "HEALTHCHECK",
)


def _exec_or_shell(value: str) -> list[str]:
    """JSON array form as is; shell form wrapped in /bin/sh -c, as the builder does."""
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            return parsed
    return ["/bin/sh", "-c", stripped]


def _pairs(value: str, instruction: str) -> list[tuple[str, str]]:
    """KEY=VALUE pairs (quoted values allowed), or the legacy `KEY VALUE` form."""
    words = shlex.split(value)
    if not words:
        raise InvalidArgument(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        key, _, rest = value.strip().partition(" ")
        return [(key, rest.strip())]
    out = []
    for word in words:
        key, sep, val = word.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{instruction}: {word!r} is not KEY=VALUE")
        out.append((key, val))
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Return `config` (the image's "config" object) with the instructions applied."""
    for change in changes:
        instruction, _, value = change.strip().partition(" ")
        instruction = instruction.upper()
        value = value.strip()
        if instruction not in _SUPPORTED:
            raise InvalidArgument(
                f"{instruction or change!r} is not a valid change command "
                f"(supported: {', '.join(_SUPPORTED)})"
            )
        if not value:
            raise InvalidArgument(f"{instruction} requires an argument")
        if instruction in ("CMD", "ENTRYPOINT"):
            config["Cmd" if instruction == "CMD" else "Entrypoint"] = _exec_or_shell(value)
        elif instruction == "ENV":
            env = [e for e in config.get("Env") or []]
            for key, val in _pairs(value, instruction):
                env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={val}"]
            config["Env"] = env
        elif instruction == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(_pairs(value, instruction))
            config["Labels"] = labels
        elif instruction == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for port in value.split():
                ports[port if "/" in port else f"{port}/tcp"] = {}
            config["ExposedPorts"] = ports
        elif instruction == "VOLUME":
            volumes = dict(config.get("Volumes") or {})
            for path in _exec_or_shell(value) if value.startswith("[") else value.split():
                volumes[path] = {}
            config["Volumes"] = volumes
        elif instruction == "USER":
            config["User"] = value
        elif instruction == "WORKDIR":
            config["WorkingDir"] = value
        elif instruction == "STOPSIGNAL":
            config["StopSignal"] = value
        elif instruction == "HEALTHCHECK":
            # The builder's reading of it: flags, CMD (exec or shell form) or NONE.
            healthcheck(parse_instruction_line(change.strip()), config)
        else:
            config["OnBuild"] = [*(config.get("OnBuild") or []), value]
    return config

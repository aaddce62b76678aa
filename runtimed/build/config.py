"""What the config-only instructions do to an image config (Docker's field names).

ENV, LABEL, EXPOSE, USER, WORKDIR, VOLUME, STOPSIGNAL, CMD, ENTRYPOINT,
SHELL, HEALTHCHECK, ONBUILD and MAINTAINER change the config and add no
files (WORKDIR also makes its directory, which the builder does). Words are
expanded with the stage's variables first, as Docker does.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

from runtimed.build.dockerfile import Instruction, parse_json_array
from runtimed.build.shellwords import expand_word, expand_words, split_quoted
from runtimed.errors import InvalidArgument
from runtimed.oci.signals import parse_signal

DEFAULT_SHELL = ["/bin/sh", "-c"]
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_HEALTH_FLAGS = {
    "interval": "Interval",
    "timeout": "Timeout",
    "start-period": "StartPeriod",
    "start-interval": "StartInterval",
}


def shell_of(config: Mapping[str, Any]) -> list[str]:
    return list(config.get("Shell") or DEFAULT_SHELL)


def command_form(inst: Instruction, config: Mapping[str, Any]) -> list[str]:
    """RUN/CMD/ENTRYPOINT: the exec form as written, or the shell form under SHELL."""
    if inst.json_args is not None:
        return list(inst.json_args)
    return [*shell_of(config), inst.args]


def key_values(inst: Instruction, env: Mapping[str, str], escape: str) -> list[tuple[str, str]]:
    """ENV and LABEL: KEY=VALUE words (quotes honoured), or the old `KEY VALUE` form."""
    words = split_quoted(inst.args, escape)
    if not words:
        raise InvalidArgument(f"line {inst.line}: {inst.keyword} requires at least one argument")
    if "=" not in words[0]:
        key, _, rest = inst.args.strip().partition(" ")
        if not rest.strip():
            raise InvalidArgument(f"line {inst.line}: {inst.keyword} {key} needs a value")
        return [(expand_word(key, env, escape), expand_word(rest.strip(), env, escape))]
    out = []
    for word in words:
        expanded = expand_word(word, env, escape)
        key, sep, value = expanded.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"line {inst.line}: {inst.keyword}: {word!r} is not KEY=VALUE")
        out.append((key, value))
    return out


def set_env(config: dict[str, Any], key: str, value: str) -> None:
    env = [e for e in config.get("Env") or [] if e.partition("=")[0] != key]
    config["Env"] = [*env, f"{key}={value}"]


def env_map(config: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in config.get("Env") or []:
        key, _, value = entry.partition("=")
        out[key] = value
    return out


def parse_duration(text: str, what: str) -> int:
    """A Go duration ("30s", "1m30s", "500ms") in nanoseconds."""
    pos, total = 0, 0
    if text in ("0", ""):
        return 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += int(float(match.group(1)) * _UNITS[match.group(2)])
        pos = match.end()
    if pos != len(text):
        raise InvalidArgument(f"invalid duration {text!r} for --{what}: use e.g. 30s, 1m30s")
    return total


def healthcheck(inst: Instruction, config: dict[str, Any]) -> None:
    """HEALTHCHECK [--interval=...] CMD ... | NONE into config.Healthcheck (also `import -c`)."""
    words = inst.args.split(None, 1)
    kind = words[0].upper()
    if kind == "NONE":
        if len(words) > 1:
            raise InvalidArgument(f"line {inst.line}: HEALTHCHECK NONE takes no arguments")
        config["Healthcheck"] = {"Test": ["NONE"]}
        return
    if kind != "CMD" or len(words) < 2:
        raise InvalidArgument(
            f"line {inst.line}: unknown type {words[0]!r} in HEALTHCHECK (try CMD or NONE)"
        )
    rest = words[1]
    exec_form = parse_json_array(rest)
    test = ["CMD", *exec_form] if exec_form is not None else ["CMD-SHELL", rest.strip()]
    check: dict[str, Any] = {"Test": test}
    for flag, field in _HEALTH_FLAGS.items():
        value = inst.flag(flag)
        if value:
            nanos = parse_duration(value, flag)
            if nanos and nanos < 1_000_000:
                raise InvalidArgument(f"line {inst.line}: --{flag} cannot be less than 1ms")
            if nanos:
                check[field] = nanos
    retries = inst.flag("retries")
    if retries:
        if not retries.isdigit() or int(retries) < 1:
            raise InvalidArgument(f"line {inst.line}: --retries must be at least 1")
        check["Retries"] = int(retries)
    known = set(_HEALTH_FLAGS) | {"retries"}
    for name, _ in inst.flags:
        if name not in known:
            raise InvalidArgument(f"line {inst.line}: unknown flag: --{name}")
    config["Healthcheck"] = check


def _ports(words: list[str], line: int) -> list[str]:
    out = []
    for word in words:
        port, _, proto = word.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"line {line}: invalid proto {proto!r} in EXPOSE {word}")
        low, _, high = port.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise InvalidArgument(f"line {line}: invalid containerPort: {port}")
        for number in range(int(low), int(high or low) + 1):
            out.append(f"{number}/{proto}")
    return out


def apply(
    inst: Instruction,
    config: dict[str, Any],
    image: dict[str, Any],
    env: Mapping[str, str],
    escape: str,
    *,
    cmd_set: bool,
) -> None:
    """Apply one config-only instruction. `image` is the whole image document (author).

    `cmd_set` tells whether this stage set CMD already: ENTRYPOINT clears an
    inherited CMD only.
    """
    key = inst.keyword
    line = inst.line
    if key == "ENV":
        for name, value in key_values(inst, env, escape):
            set_env(config, name, value)
    elif key == "LABEL":
        labels = dict(config.get("Labels") or {})
        labels.update(key_values(inst, env, escape))
        config["Labels"] = labels
    elif key == "MAINTAINER":
        image["author"] = expand_word(inst.args, env, escape)
    elif key == "EXPOSE":
        ports = dict(config.get("ExposedPorts") or {})
        for port in _ports(expand_words(inst.args, env, escape), line):
            ports[port] = {}
        config["ExposedPorts"] = ports
    elif key == "USER":
        user = expand_word(inst.args, env, escape).strip()
        if not user:
            raise InvalidArgument(f"line {line}: USER requires an argument")
        config["User"] = user
    elif key == "WORKDIR":
        config["WorkingDir"] = workdir(config, expand_word(inst.args, env, escape))
    elif key == "VOLUME":
        paths = (
            inst.json_args if inst.json_args is not None else expand_words(inst.args, env, escape)
        )
        volumes = dict(config.get("Volumes") or {})
        for path in paths:
            if not path.strip():
                raise InvalidArgument(f"line {line}: VOLUME specified can not be an empty string")
            volumes[path] = {}
        config["Volumes"] = volumes
    elif key == "STOPSIGNAL":
        signal = expand_word(inst.args, env, escape)
        parse_signal(signal)
        config["StopSignal"] = signal
    elif key == "CMD":
        config["Cmd"] = command_form(inst, config)
    elif key == "ENTRYPOINT":
        config["Entrypoint"] = command_form(inst, config)
        if not cmd_set:
            config.pop("Cmd", None)
    elif key == "SHELL":
        if not inst.json_args:
            raise InvalidArgument(f"line {line}: SHELL requires the arguments to be in JSON form")
        config["Shell"] = list(inst.json_args)
    elif key == "HEALTHCHECK":
        healthcheck(inst, config)
    elif key == "ONBUILD":
        trigger = inst.args.strip()
        word = trigger.partition(" ")[0].upper()
        if word in ("ONBUILD", "FROM", "MAINTAINER"):
            raise InvalidArgument(f"line {line}: {word} isn't allowed as an ONBUILD trigger")
        config["OnBuild"] = [*(config.get("OnBuild") or []), trigger]
    else:  # pragma: no cover - the builder only sends the instructions above
        raise InvalidArgument(f"line {line}: {key} does not change the config")


def workdir(config: Mapping[str, Any], path: str) -> str:
    if not path:
        raise InvalidArgument("WORKDIR requires an argument")
    if not path.startswith("/"):
        path = posixpath.join(config.get("WorkingDir") or "/", path)
    return posixpath.normpath(path) if path != "/" else "/"


CONFIG_ONLY = frozenset(
    {
        "ENV",
        "LABEL",
        "MAINTAINER",
        "EXPOSE",
        "USER",
        "WORKDIR",
        "VOLUME",
        "STOPSIGNAL",
        "CMD",
        "ENTRYPOINT",
        "SHELL",
        "HEALTHCHECK",
        "ONBUILD",
    }
)

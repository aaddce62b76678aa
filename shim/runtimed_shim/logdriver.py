"""The log driver interface, shared by the daemon (validation) and the shim (writing).

A log driver is a plugin object registered under the `runtimed.log_drivers`
entry point. Its module must import only the standard library at the top:
the daemon imports it to validate options when a container is created, and
the shim imports it only in shims of containers that use it. Heavy client
libraries (boto3, msgpack) are imported inside `open()`.

    class Plugin:
        name: str                      # the --log-driver value
        read_format: str | None        # "json-file" | "local" | "cri": the daemon reads
                                       # the driver's own file; None: needs the cache
        def validate(self, opts: dict[str, str]) -> None   # OptionError, Docker's text
        def open(self, info: LogInfo) -> Driver            # in the shim, before the
                                                           # container is created

A driver receives output already cut into runs of lines (see
runtimed_shim.logs.LineSplitter): `(pieces, complete)` where pieces hold no
newline and `complete` is False for the chunks of a line longer than the
driver's `max_line` and for an unterminated tail.

File drivers are synchronous (`write`, `reopen`, `close`) and run in the
shim's loop. Network drivers set `threaded = True` and implement
`encode(stream, runs, time_ns) -> list` (called once per chunk, in order) and
`send(items)` (deliver all or raise; raising Undelivered(n) says the first n
went through). A worker thread calls them; failures are retried after
`retry_delay(attempt)` seconds (None: give up and count the loss), so a
receiver that goes away and comes back gets everything, in order.
"""

from __future__ import annotations

import os
import re

TYPE_CHECKING = False  # typing costs every shim memory; annotations are strings
if TYPE_CHECKING:
    from typing import Any

Run = tuple  # (list[bytes], bool): pieces without newline, all complete or all partial

DEFAULT_TEMPLATE = "{{.ID}}"
ATTR_OPTS = ("labels", "labels-regex", "env", "env-regex", "tag")
MODE_OPTS = ("mode", "max-buffer-size")
CACHE_OPTS = ("cache-disabled", "cache-max-size", "cache-max-file", "cache-compress")


class OptionError(ValueError):
    """A log option is wrong; the message is Docker's for the same mistake."""


class Undelivered(OSError):
    """send() delivered only the first `done` items before the receiver failed."""

    def __init__(self, done: int, reason: str) -> None:
        super().__init__(reason)
        self.done = done


# -- Go-compatible value parsing (Docker's options are parsed by Go) -------------


def parse_bool(text: str) -> bool:
    """strconv.ParseBool."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise OptionError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


_INT64 = 1 << 63


def parse_int(text: str) -> int:
    """strconv.Atoi (a 64-bit int): syntax and range errors in Go's words."""
    if not re.fullmatch(r"[+-]?[0-9]+", text or ""):
        raise OptionError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    value = int(text)
    if not -_INT64 <= value < _INT64:
        raise OptionError(f'strconv.Atoi: parsing "{text}": value out of range')
    return value


_SIZE = re.compile(r"(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?", re.ASCII)
_UNITS = "kmgtp"


def _size(text: str, base: int) -> int:
    match = _SIZE.fullmatch(text)
    if not match:
        raise OptionError(f"invalid size: '{text}'")
    unit = match.group(2)
    scale = base ** (_UNITS.index(unit.lower()) + 1) if unit else 1
    return int(float(match.group(1)) * scale)


def from_human_size(text: str) -> int:
    """go-units FromHumanSize: decimal units (10m = 10,000,000 bytes), as max-size uses."""
    return _size(text, 1000)


def ram_in_bytes(text: str) -> int:
    """go-units RAMInBytes: binary units (1m = 1 MiB), as max-buffer-size uses."""
    return _size(text, 1024)


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", re.ASCII)


def parse_duration(text: str) -> float:
    """time.ParseDuration, in seconds."""
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION.match(body, pos)
        if match is None:
            raise OptionError(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not body:
        raise OptionError(f'time: invalid duration "{text}"')
    return -total if text.startswith("-") else total


def check_keys(opts: dict[str, str], allowed: tuple[str, ...], driver: str) -> None:
    for key in opts:
        if key not in allowed:
            raise OptionError(f"unknown log opt '{key}' for {driver} log driver")


# -- what a driver knows about its container -------------------------------------


class LogInfo:
    """The container a driver logs for, as the daemon describes it in the ShimConfig."""

    __slots__ = (
        "config",
        "container_id",
        "container_name",
        "entrypoint",
        "args",
        "image_id",
        "image_name",
        "created_ns",
        "env",
        "labels",
        "log_path",
        "daemon_name",
        "hostname",
        "mode",
    )

    def __init__(self, opts: dict[str, str], info: dict[str, Any] | None = None) -> None:
        info = info or {}
        self.config = dict(opts)
        self.container_id = str(info.get("id") or "")
        self.container_name = str(info.get("name") or "")
        self.entrypoint = str(info.get("entrypoint") or "")
        self.args = [str(a) for a in info.get("args") or []]
        self.image_id = str(info.get("image_id") or "")
        self.image_name = str(info.get("image_name") or "")
        self.created_ns = int(info.get("created") or 0)
        self.env = [str(e) for e in info.get("env") or []]
        self.labels = {str(k): str(v) for k, v in (info.get("labels") or {}).items()}
        self.log_path = str(info.get("log_path") or "")
        self.daemon_name = str(info.get("daemon_name") or "runtimed")
        self.hostname = str(info.get("hostname") or os.uname().nodename)
        self.mode = opts.get("mode") or "blocking"

    # The fields of Docker's tag templates.
    def field(self, name: str) -> str:
        image_id = self.image_id.removeprefix("sha256:")
        values = {
            "ID": self.container_id[:12],
            "FullID": self.container_id,
            "ContainerID": self.container_id,
            "Name": self.container_name.lstrip("/"),
            "ContainerName": self.container_name,
            "ImageID": image_id[:12],
            "ImageFullID": self.image_id,
            "ContainerImageID": self.image_id,
            "ImageName": self.image_name,
            "ContainerImageName": self.image_name,
            "Command": " ".join([self.entrypoint, *self.args]),
            "ContainerEntrypoint": self.entrypoint,
            "Hostname": self.hostname,
            "DaemonName": self.daemon_name,
            "LogPath": self.log_path,
        }
        if name not in values:
            raise OptionError(
                f'template: log-tag:1:2: executing "log-tag" at <.{name}>: '
                f"can't evaluate field {name} in type *logger.Info"
            )
        return values[name]

    def tag(self, default: str = DEFAULT_TEMPLATE) -> str:
        return render_template(self.config.get("tag") or default, self)

    def extra_attributes(self) -> dict[str, str]:
        """Labels and environment variables the labels/env(-regex) options select."""
        extra: dict[str, str] = {}
        labels = self.config.get("labels", "")
        if labels:
            for key in labels.split(","):
                if key in self.labels:
                    extra[key] = self.labels[key]
        if pattern := self.config.get("labels-regex", ""):
            regex = compile_regex(pattern, "labels-regex")
            extra.update({k: v for k, v in self.labels.items() if regex.search(k)})
        env: dict[str, str] = {}
        for item in self.env:
            key, sep, value = item.partition("=")
            if sep:
                env[key] = value
        names = self.config.get("env", "")
        if names:
            for key in names.split(","):
                if key in env:
                    extra[key] = env[key]
        if pattern := self.config.get("env-regex", ""):
            regex = compile_regex(pattern, "env-regex")
            extra.update({k: v for k, v in env.items() if regex.search(k)})
        return extra


def compile_regex(pattern: str, option: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise OptionError(f"error parsing regexp in {option}: {exc}") from None


_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)


def render_template(template: str, info: LogInfo) -> str:
    """Docker's tag templates: `{{.Field}}` actions in plain text (no functions)."""
    if "{{" in template and template.count("{{") != len(_ACTION.findall(template)):
        raise OptionError("template: log-tag:1: unclosed action")

    def action(match: re.Match[str]) -> str:
        body = match.group(1).strip().removeprefix("-").removesuffix("-").strip()
        if not re.fullmatch(r"\.[A-Za-z]\w*", body):
            raise OptionError(f'template: log-tag:1: unsupported action "{{{{{body}}}}}"')
        return info.field(body[1:])

    return _ACTION.sub(action, template)


def validate_template(template: str) -> None:
    """Refuse a tag template at create time (fields are checked against dummy values)."""
    render_template(template, LogInfo({}, {"id": "0" * 64, "image_id": "sha256:" + "0" * 64}))


def validate_common(opts: dict[str, str]) -> None:
    """Options every driver shares: mode, max-buffer-size and the local cache."""
    mode = opts.get("mode", "")
    if mode not in ("", "blocking", "non-blocking"):
        raise OptionError(f"logger: logging mode not supported: {mode}")
    if "max-buffer-size" in opts:
        if mode != "non-blocking":
            raise OptionError(
                "logger: max-buffer-size option is only supported with 'mode=non-blocking'"
            )
        try:
            ram_in_bytes(opts["max-buffer-size"])
        except OptionError as exc:
            raise OptionError(f"error parsing option max-buffer-size: {exc}") from None
    if opts.get("cache-disabled"):
        try:
            parse_bool(opts["cache-disabled"])
        except OptionError:
            raise OptionError(
                f"invalid value for option cache-disabled: {opts['cache-disabled']}"
            ) from None
    for key in ("labels-regex", "env-regex"):
        if key in opts:
            compile_regex(opts[key], key)
    if "tag" in opts:
        validate_template(opts["tag"])


def driver_opts(opts: dict[str, str]) -> dict[str, str]:
    """The options a driver's own validator sees: the shared ones are not its business."""
    return {k: v for k, v in opts.items() if k not in MODE_OPTS and k not in CACHE_OPTS}


# -- split lines -----------------------------------------------------------------


class PartialTracker:
    """Docker's partial-message metadata for lines split into chunks, per stream.

    `mark(stream, complete)` -> None for a whole line, else (id, ordinal, last):
    chunks of one line share a random id, ordinals count from 1, the final
    chunk has last=True. An unterminated tail stays last=False.
    """

    __slots__ = ("_groups",)

    def __init__(self) -> None:
        self._groups: dict[str, list[Any]] = {}

    def mark(self, stream: str, complete: bool) -> tuple[str, int, bool] | None:
        group = self._groups.get(stream)
        if complete:
            if group is None:
                return None
            del self._groups[stream]
            return group[0], group[1] + 1, True
        if group is None:
            group = self._groups[stream] = [os.urandom(32).hex(), 0]
        group[1] += 1
        return group[0], group[1], False

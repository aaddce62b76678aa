"""Log drivers on the daemon's side: find the plugins, check options, brief the shim.

Drivers are plugins registered under the `runtimed.log_drivers` entry point
(runtimed's own too). The daemon imports a driver's module to validate a
container's options at create time, through the same object the shim uses
to write; the shim imports it only when the container starts, told by the
ShimConfig "log" object which `module:attribute` to load and which folders
to add to its import path.

Daemon-wide defaults (runtimed.toml `default_log_driver`, `default_log_opts`)
merge as Docker's do: a container without --log-driver gets the default
driver; one whose driver is the default gets the default options it does
not set itself; the cache-* options always come from the defaults.
"""

from __future__ import annotations

import importlib.util
import os
import sysconfig
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from runtimed_shim.logdriver import (
    CACHE_OPTS,
    OptionError,
    driver_opts,
    parse_bool,
    validate_common,
)

from runtimed.core.hooks import ContainerHook
from runtimed.errors import InvalidArgument

if TYPE_CHECKING:
    from runtimed.core.containers import CreateRequest
    from runtimed.core.model import Container
    from runtimed.oci.spec import SpecRequest

log = structlog.get_logger(__name__)

GROUP = "runtimed.log_drivers"
DAEMON_NAME = "runtimed"
CACHE_FILE = "container-cached.log"
LOCAL_FILE = Path("local-logs") / "container.log"


@dataclass(frozen=True)
class LogSource:
    """Where and how the daemon reads a container's log back."""

    format: str  # json-file | local | cri
    path: Path


class LogDrivers:
    """The registered drivers, loaded on first use."""

    def __init__(self, default_driver: str = "json-file", default_opts: dict | None = None):
        self._entries: dict[str, EntryPoint] = {ep.name: ep for ep in entry_points(group=GROUP)}
        self._plugins: dict[str, Any] = {}
        self.default_driver = default_driver
        self.default_opts = dict(default_opts or {})

    def names(self) -> list[str]:
        return sorted(self._entries)

    def plugin(self, name: str) -> Any:
        if name not in self._plugins:
            entry = self._entries.get(name)
            if entry is None:
                raise InvalidArgument(f"logger: no log driver named '{name}' is registered")
            try:
                self._plugins[name] = entry.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin is the user's to fix
                raise InvalidArgument(f"log driver {name} cannot be loaded: {exc}") from None
        return self._plugins[name]

    def check_defaults(self) -> None:
        """At daemon start: a bad default refuses the start, not every later create."""
        self.validate(self.default_driver, dict(self.default_opts))

    def resolve(self, driver: str, opts: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Docker's merge of a container's logging with the daemon's defaults."""
        merged = dict(opts)
        driver = driver or self.default_driver
        if driver == self.default_driver:
            for key, value in self.default_opts.items():
                merged.setdefault(key, value)
        for key in CACHE_OPTS:
            if key in self.default_opts:
                merged.setdefault(key, self.default_opts[key])
        return driver, merged

    def validate(self, driver: str, opts: dict[str, str]) -> None:
        plugin = self.plugin(driver)
        try:
            if driver == "none":
                plugin.validate(opts)
                return
            validate_common(opts)
            plugin.validate(driver_opts(opts))
        except OptionError as exc:
            raise InvalidArgument(str(exc)) from None

    def read_format(self, driver: str) -> str | None:
        try:
            return getattr(self.plugin(driver), "read_format", None)
        except InvalidArgument:
            return None

    def uses_cache(self, driver: str, opts: dict[str, str]) -> bool:
        """Docker's dual logging: drivers that cannot be read back get a local cache."""
        if driver == "none" or self.read_format(driver) is not None:
            return False
        disabled = opts.get("cache-disabled", "")
        try:
            return not (disabled and parse_bool(disabled))
        except OptionError:
            return False

    def sys_path(self, driver: str) -> list[str]:
        """Folders the shim needs to import this driver and what it imports (the launcher
        runs without site-packages)."""
        entry = self._entries[driver]
        top = entry.value.split(":", 1)[0].split(".", 1)[0]
        paths: list[str] = []
        spec = importlib.util.find_spec(top)
        if spec is not None and spec.origin:
            origin = Path(spec.origin)
            root = origin.parent.parent if origin.name == "__init__.py" else origin.parent
            paths.append(str(root))
        for key in ("purelib", "platlib"):
            path = sysconfig.get_paths().get(key)
            if path and path not in paths:
                paths.append(path)
        return paths

    # -- per container -------------------------------------------------------------

    def source(self, container: Container, files_dir: Path) -> LogSource:
        """The file `logs` reads; InvalidArgument when the driver keeps none."""
        cfg = container.config
        fmt = self.read_format(cfg.log_driver)
        if fmt == "local":
            return LogSource("local", files_dir / LOCAL_FILE)
        if fmt is not None:
            return LogSource(fmt, Path(cfg.log_path))
        if self.uses_cache(cfg.log_driver, cfg.log_opts):
            return LogSource("json-file", files_dir / CACHE_FILE)  # see runtimed_shim.logpipe
        raise InvalidArgument(
            f'configured logging driver does not support reading: "{cfg.log_driver}"'
        )

    def shim_config(
        self, container: Container, spec: SpecRequest, files_dir: Path
    ) -> dict[str, Any]:
        """The ShimConfig "log" object: the driver's plugin, options and the container
        facts its tag templates and attributes use."""
        cfg = container.config
        driver, opts = cfg.log_driver, dict(cfg.log_opts)
        fmt = self.read_format(driver)
        if fmt == "local":
            path = str(files_dir / LOCAL_FILE)
        elif fmt is not None:
            path = cfg.log_path
        else:
            path = ""
        env = [*(spec.image_config.get("Env") or []), *spec.env]
        args = list(cfg.args)
        config: dict[str, Any] = {
            "driver": driver,
            "plugin": self._entries[driver].value if driver in self._entries else "",
            "sys_path": self.sys_path(driver) if driver in self._entries else [],
            "opts": opts,
            "path": path,
            "info": {
                "id": container.id,
                "name": "/" + container.name,
                "entrypoint": args[0] if args else "",
                "args": args[1:],
                "image_id": cfg.image_id,
                "image_name": cfg.image,
                "created": container.created_at,
                "env": _dedup_env(env),
                "labels": dict(cfg.labels),
                "daemon_name": DAEMON_NAME,
                "hostname": os.uname().nodename,
            },
            "cache": None,
        }
        if self.uses_cache(driver, opts):
            config["cache"] = {
                "path": str(files_dir / CACHE_FILE),
                "opts": {k.removeprefix("cache-"): v for k, v in opts.items() if k in CACHE_OPTS},
            }
        return config


def _dedup_env(env: list[str]) -> list[str]:
    """Later entries win, as in the process environment."""
    merged: dict[str, str] = {}
    for item in env:
        merged[item.partition("=")[0]] = item
    return list(merged.values())


class LoggingHook(ContainerHook):
    """At create: merge the daemon's defaults and refuse bad options with Docker's words."""

    def __init__(self, drivers: LogDrivers) -> None:
        self.drivers = drivers

    async def validate(self, request: CreateRequest, image_config: dict[str, Any]) -> None:
        if request.cri is not None:
            # kubelet's containers log in the CRI format where it says (or not at all).
            driver = request.log_driver or ("cri" if request.log_path else "none")
            self.drivers.validate(driver, dict(request.log_opts))
            request.log_driver = driver
            return
        driver, opts = self.drivers.resolve(request.log_driver, dict(request.log_opts))
        self.drivers.validate(driver, opts)
        request.log_driver, request.log_opts = driver, opts

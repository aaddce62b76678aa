"""VolumeService: volumes and their drivers, as `runtimectl volume` and containers see them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from runtimed.core.events import VOLUME, EventBus
from runtimed.core.model import Container, now_ns
from runtimed.errors import FailedPrecondition, InvalidArgument, NotFound, RuntimedError
from runtimed.store.metadata import MetadataStore
from runtimed.volumes.driver import (
    DriverContext,
    DriverEntry,
    VolumeDriver,
    VolumeInfo,
    entry_point_drivers,
)
from runtimed.volumes.names import ANONYMOUS_LABEL, anonymous_name, check_name
from runtimed.volumes.plan import volume_names
from runtimed.volumes.remote import RemoteVolumeDriver, discover, find_plugin
from runtimed.volumes.store import VolumeRecord, VolumeRecords

log = structlog.get_logger(__name__)

DEFAULT_DRIVER = "local"
LIST_TIMEOUT = 5.0  # seconds a plugin gets to answer List/Get/Activate for ls and inspect
LOG_DRIVER_GROUP = "runtimed.log_drivers"
BUILTIN_PACKAGE = "runtimed_plugins."


@dataclass
class VolumeView:
    """One volume as inspect and ls show it."""

    record: VolumeRecord
    scope: str = "local"
    used_by: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    managed: bool = True  # False: a plugin lists it but we never recorded it


@dataclass
class PluginView:
    name: str
    kind: str  # volumedriver | logdriver
    address: str
    state: str  # active | unreachable | builtin
    error: str = ""


def rfc3339(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _truthy(value: str) -> bool:
    if value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise InvalidArgument(f"invalid filter value {value!r}: use true or false")


def _has_label(labels: dict[str, str], want: str) -> bool:
    key, sep, value = want.partition("=")
    return key in labels and (not sep or labels[key] == value)


class VolumeService:
    def __init__(
        self,
        *,
        metadata: MetadataStore,
        data_dir: Path,
        run_dir: Path,
        plugin_dirs: list[Path],
        containers: Callable[[], list[Container]],
        drivers: dict[str, DriverEntry] | None = None,
    ) -> None:
        self.records = VolumeRecords(metadata)
        self.context = DriverContext(data_dir=data_dir, run_dir=run_dir)
        self.plugin_dirs = plugin_dirs
        self._containers = containers
        self._entries = entry_point_drivers() if drivers is None else drivers
        self._drivers: dict[str, VolumeDriver] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.events = EventBus()  # the daemon's shared bus replaces this one

    # -- drivers ---------------------------------------------------------------

    def driver(self, name: str) -> VolumeDriver:
        """The driver called `name`: a Python one first, else a plugin in our plugin dirs."""
        name = name or DEFAULT_DRIVER
        entry = self._entries.get(name)
        if entry is not None:
            cached = self._drivers.get(name)
            if cached is not None:
                return cached
            if entry.factory is None:
                raise FailedPrecondition(f"volume driver {name!r} is broken: {entry.error}")
            driver = self._drivers[name] = entry.factory(self.context)
            return driver
        # Plugins are looked up every time: one may move, or come and go, while we run.
        address = find_plugin(name, self.plugin_dirs)
        if address is None:
            raise NotFound(
                f"volume driver {name!r} not found: no Python driver is registered under "
                f"that name and no plugin socket or spec is in "
                f"{' or '.join(str(d) for d in self.plugin_dirs)}"
            )
        remote = self._drivers.get(name)
        if not isinstance(remote, RemoteVolumeDriver) or remote.address != address:
            remote = self._drivers[name] = RemoteVolumeDriver(address)
        return remote

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    # -- volumes ---------------------------------------------------------------

    async def create(
        self,
        name: str = "",
        driver: str = "",
        options: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        *,
        anonymous: bool = False,
    ) -> VolumeRecord:
        """Create a volume, or return the existing one of that name (docker's rule)."""
        name = check_name(name) if name else anonymous_name()
        async with self._lock(name):
            existing = self.records.get(name)
            if existing is not None:
                if driver and driver != existing.driver:
                    raise FailedPrecondition(
                        f"volume {name} already exists with driver {existing.driver!r}, "
                        f"not {driver!r}: remove it first or use another name"
                    )
                return existing
            driver = driver or DEFAULT_DRIVER
            impl = self.driver(driver)
            opts = dict(options or {})
            await impl.create(name, opts)
            mountpoint = ""
            with contextlib.suppress(RuntimedError, OSError):
                mountpoint = await asyncio.wait_for(impl.path(name), LIST_TIMEOUT)
            all_labels = dict(labels or {})
            if anonymous:
                all_labels.setdefault(ANONYMOUS_LABEL, "")
            record = VolumeRecord(
                name=name,
                driver=driver,
                created_at=now_ns(),
                mountpoint=mountpoint,
                labels=all_labels,
                options=opts,
                anonymous=anonymous,
            )
            try:
                self.records.add(record)
            except BaseException:
                with contextlib.suppress(Exception):
                    await impl.remove(name)
                raise
        self.events.publish(VOLUME, "create", name, {"driver": driver})
        log.info("volume_created", volume=name, driver=driver, anonymous=anonymous)
        return record

    def record(self, name: str) -> VolumeRecord:
        if not name:
            raise InvalidArgument("a volume name is required")
        record = self.records.get(name)
        if record is None:
            raise NotFound(f"no such volume: {name}")
        return record

    def used_by(self, name: str, *, excluding: str = "") -> list[str]:
        return [
            c.id
            for c in self._containers()
            if c.id != excluding and name in volume_names(c.config.extras)
        ]

    async def _scope(self, driver: VolumeDriver) -> str:
        try:
            caps = await asyncio.wait_for(driver.capabilities(), LIST_TIMEOUT)
        except (RuntimedError, OSError, TimeoutError):
            return "local"
        return str(caps.get("Scope") or "local")

    async def inspect(self, name: str) -> VolumeView:
        record = self.records.get(name)
        if record is None:
            return await self._inspect_unmanaged(name)
        view = VolumeView(record=record, used_by=self.used_by(name))
        if record.driver != DEFAULT_DRIVER:
            with contextlib.suppress(RuntimedError, OSError, TimeoutError):
                impl = self.driver(record.driver)
                view.scope = await self._scope(impl)
                info = await asyncio.wait_for(impl.get(name), LIST_TIMEOUT)
                view.status = info.status
                if info.mountpoint:
                    record.mountpoint = info.mountpoint
        return view

    async def _inspect_unmanaged(self, name: str) -> VolumeView:
        """A volume a plugin has but we never recorded (made by another daemon, say)."""
        if name:
            for address in discover(self.plugin_dirs)[0]:
                if address.name in self._entries:
                    continue
                with contextlib.suppress(RuntimedError, OSError, TimeoutError):
                    impl = self.driver(address.name)
                    info = await asyncio.wait_for(impl.get(name), LIST_TIMEOUT)
                    return self._unmanaged_view(address.name, info)
        raise NotFound(f"no such volume: {name}")

    @staticmethod
    def _unmanaged_view(driver: str, info: VolumeInfo) -> VolumeView:
        record = VolumeRecord(
            name=info.name, driver=driver, created_at=0, mountpoint=info.mountpoint
        )
        return VolumeView(record=record, scope="", status=info.status, managed=False)

    async def list(
        self, filters: Iterable[tuple[str, str]] = ()
    ) -> tuple[list[VolumeView], list[str]]:
        """docker volume ls: our volumes plus what plugins list; warnings for plugins that fail."""
        wanted = _list_filters(filters)
        users: dict[str, list[str]] = {}
        for container in self._containers():
            for name in volume_names(container.config.extras):
                users.setdefault(name, []).append(container.id)
        views = [VolumeView(record=r, used_by=users.get(r.name, [])) for r in self.records.list()]
        known = {v.record.name for v in views}
        warnings: list[str] = []
        plugin_names = {v.record.driver for v in views} - set(self._entries)
        plugin_names |= {a.name for a in discover(self.plugin_dirs)[0]} - set(self._entries)
        for driver in sorted(plugin_names):
            try:
                infos = await asyncio.wait_for(self.driver(driver).list(), LIST_TIMEOUT)
            except (RuntimedError, OSError, TimeoutError) as exc:
                message = exc.message if isinstance(exc, RuntimedError) else str(exc)
                warnings.append(f"volume driver {driver!r}: {message or 'timed out'}")
                continue
            for info in infos:
                if info.name and info.name not in known:
                    known.add(info.name)
                    views.append(self._unmanaged_view(driver, info))
        return [v for v in views if _matches(v, wanted)], warnings

    async def remove(self, name: str, *, force: bool = False, excluding: str = "") -> bool:
        """Remove a volume nobody (but `excluding`, a container going away) uses; False when
        it did not exist and force was given."""
        async with self._lock(name):
            record = self.records.get(name)
            if record is None:
                if force:
                    return False
                raise NotFound(f"get {name}: no such volume")
            users = self.used_by(name, excluding=excluding)
            if users:
                raise FailedPrecondition(f"remove {name}: volume is in use - [{', '.join(users)}]")
            try:
                await self.driver(record.driver).remove(name)
            except (RuntimedError, OSError) as exc:
                if not force:
                    raise
                log.warning("volume_driver_remove_failed_forced", volume=name, error=str(exc))
            self.records.delete(name)
        self._locks.pop(name, None)
        self.events.publish(VOLUME, "destroy", name, {"driver": record.driver})
        log.info("volume_removed", volume=name, driver=record.driver)
        return True

    async def size(self, record: VolumeRecord) -> int:
        """Bytes of the volume's files; -1 where its driver cannot tell (docker's "N/A")."""
        with contextlib.suppress(Exception):
            usage = getattr(self.driver(record.driver), "usage", None)
            if usage is not None:
                return int(await asyncio.to_thread(usage, record.name))
        return -1

    async def prune(
        self, filters: Iterable[tuple[str, str]] = (), *, all_volumes: bool = False
    ) -> tuple[list[str], int]:
        """Remove unused volumes: anonymous ones only, unless all_volumes (docker prune -a)."""
        pairs = list(filters)
        for key, value in pairs:
            if key == "all":
                all_volumes = all_volumes or _truthy(value)
            elif key not in ("label", "label!"):
                raise InvalidArgument(f"invalid filter {key!r} for volume prune")
        deleted: list[str] = []
        reclaimed = 0
        for record in self.records.list():
            if not all_volumes and not record.anonymous:
                continue
            if any(k == "label" and not _has_label(record.labels, v) for k, v in pairs):
                continue
            if any(k == "label!" and _has_label(record.labels, v) for k, v in pairs):
                continue
            if self.used_by(record.name):
                continue
            size = max(0, await self.size(record))
            try:
                if await self.remove(record.name):
                    deleted.append(record.name)
                    reclaimed += size
            except RuntimedError as exc:
                log.warning("volume_prune_skipped", volume=record.name, error=exc.message)
        return deleted, reclaimed

    # -- plugins ---------------------------------------------------------------

    async def plugins(self) -> list[PluginView]:
        """Python drivers, log drivers and every Docker plugin in the plugin dirs, probed."""
        out: list[PluginView] = []
        for entry in sorted(self._entries.values(), key=lambda e: e.name):
            state = "builtin" if entry.address.startswith(BUILTIN_PACKAGE) else "active"
            out.append(
                PluginView(
                    name=entry.name,
                    kind="volumedriver",
                    address=entry.address,
                    state="unreachable" if entry.error else state,
                    error=entry.error,
                )
            )
        for ep in sorted(importlib.metadata.entry_points(group=LOG_DRIVER_GROUP), key=str):
            state = "builtin" if ep.value.startswith(BUILTIN_PACKAGE) else "active"
            out.append(PluginView(ep.name, "logdriver", ep.value, state))
        addresses, problems = discover(self.plugin_dirs)
        for address in addresses:
            if address.name in self._entries:
                continue
            view = PluginView(address.name, "volumedriver", address.url, "active")
            try:
                probe = RemoteVolumeDriver(address, timeout=LIST_TIMEOUT)
                await asyncio.wait_for(probe.activate(), LIST_TIMEOUT + 1)
            except (RuntimedError, OSError, TimeoutError) as exc:
                view.state = "unreachable"
                view.error = exc.message if isinstance(exc, RuntimedError) else "timed out"
            out.append(view)
        for problem in problems:
            out.append(PluginView("?", "volumedriver", "", "unreachable", problem))
        return out


def _list_filters(filters: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    wanted: dict[str, list[str]] = {}
    for key, value in filters:
        if key not in ("dangling", "driver", "label", "label!", "name"):
            raise InvalidArgument(
                f"invalid filter {key!r}: use dangling, driver, label, label! or name"
            )
        if key == "dangling":
            _truthy(value)
        wanted.setdefault(key, []).append(value)
    return wanted


def _matches(view: VolumeView, wanted: dict[str, list[str]]) -> bool:
    record = view.record
    if "dangling" in wanted and not any(
        _truthy(v) == (not view.used_by) for v in wanted["dangling"]
    ):
        return False
    if "driver" in wanted and record.driver not in wanted["driver"]:
        return False
    if "name" in wanted and not any(part in record.name for part in wanted["name"]):
        return False
    if not all(_has_label(record.labels, v) for v in wanted.get("label", [])):
        return False
    return not any(_has_label(record.labels, v) for v in wanted.get("label!", []))

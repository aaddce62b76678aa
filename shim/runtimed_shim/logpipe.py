"""A container's output on its way to the log driver: split, stamp, write or queue.

The ShimConfig "log" object names the driver's plugin (an entry point value,
`module:attribute`, resolved by the daemon) and the folders to add to sys.path
so that it and its own dependencies import: the plugin is imported here, in
the shim of a container that uses it, never in the launcher.

    {"driver": "syslog", "plugin": "runtimed_plugins.logdrivers.syslog:PLUGIN",
     "sys_path": [...], "opts": {...}, "path": "<file of a file driver>",
     "info": {...LogInfo...}, "cache": {"path": ..., "opts": {...}} | null}

A config without "plugin" ({"driver", "path", "max_size", "max_file"}) gets
the writers built into the shim (json-file, cri, none).

File drivers write in the shim's loop. Drivers that talk to a receiver (and
every driver with mode=non-blocking) get a worker thread with a queue:
blocking mode lets the queue hold a bounded amount and then reports
`congested`, so the shim stops reading the container's output (the container
blocks on write, as with Docker) while the control socket stays responsive;
non-blocking mode drops the oldest output instead and counts it. A local
cache (Docker's dual logging, in the json-file format) keeps `logs` working
for drivers that cannot be read back.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time

# Preloaded in the launcher, so the shims that use them share their pages: importing a
# module after the fork costs a shim its own copy of every page the import touches.
# (Not the worker: threading in the launcher costs every json-file shim ~1 MB RSS.)
from runtimed_shim import filedrivers  # noqa: F401
from runtimed_shim.logdriver import LogInfo, OptionError, parse_bool, ram_in_bytes
from runtimed_shim.logs import JsonFileLog, LineSplitter, open_builtin

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_RING_BYTES = 1_000_000  # Docker's default max-buffer-size for mode=non-blocking
BLOCKING_QUEUE_BYTES = 4 << 20  # blocking mode: past this the container waits
# How long a removed container's shim still tries to deliver what it holds: blocking
# mode promised delivery; non-blocking mode promised never to make anyone wait.
CLOSE_TIMEOUT = {"blocking": 5.0, "non-blocking": 1.0}


class LogSetupError(Exception):
    """The driver cannot start; the container must not either."""


def load_plugin(spec: str, extra_path: list[str]) -> Any:
    """`module:attribute` -> the plugin object, importing only that module (nothing at
    all for a module the launcher loaded already: the built-in file drivers)."""
    module_name, _, attribute = spec.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        for entry in extra_path:
            if entry and entry not in sys.path:
                sys.path.append(entry)
        module = importlib.import_module(module_name)
    target = module
    for part in filter(None, attribute.split(".")):
        target = getattr(target, part)
    return target


def _cache_writer(cache: dict[str, Any], info: LogInfo) -> JsonFileLog:
    """Docker's dual-logging cache, with its options (cache-max-size 20m, cache-max-file 5,
    cache-compress true). Written in the json-file format rather than Docker's local one:
    plain lines then cost one bytes.replace instead of a record each, and the cache is
    the daemon's own business (`logs` reads it)."""
    from runtimed_shim.logdriver import from_human_size, parse_int

    opts = cache.get("opts") or {}
    return JsonFileLog(
        str(cache["path"]),
        max_size=from_human_size(opts["max-size"]) if opts.get("max-size") else 20 << 20,
        max_file=parse_int(opts["max-file"]) if opts.get("max-file") else 5,
        compress=parse_bool(opts["compress"]) if opts.get("compress") else True,
        attrs=info.extra_attributes(),
    )


def open_pipeline(config: dict[str, Any]) -> LogPipeline:
    """The pipeline a ShimConfig "log" object asks for; LogSetupError says why not."""
    if not config.get("plugin"):
        try:
            return LogPipeline(open_builtin(config))
        except OSError as exc:
            raise LogSetupError(
                f"cannot open the container log {config.get('path')}: {exc.strerror}"
            ) from None
        except ValueError as exc:
            raise LogSetupError(str(exc)) from None
    opts = {str(k): str(v) for k, v in (config.get("opts") or {}).items()}
    info = LogInfo(opts, dict(config.get("info") or {}, log_path=config.get("path") or ""))
    try:
        plugin = load_plugin(str(config["plugin"]), list(config.get("sys_path") or []))
        driver = plugin.open(info)
    except (OptionError, OSError, ImportError, AttributeError, ValueError) as exc:
        raise LogSetupError(f"failed to initialize logging driver: {_reason(exc)}") from None
    cache = None
    try:
        if config.get("cache"):
            cache = _cache_writer(config["cache"], info)
        mode = opts.get("mode") or "blocking"
        ring = ram_in_bytes(opts["max-buffer-size"]) if opts.get("max-buffer-size") else 0
        return LogPipeline(driver, cache, mode=mode, ring_bytes=ring or DEFAULT_RING_BYTES)
    except (OptionError, OSError, ValueError) as exc:
        with contextlib.suppress(Exception):
            driver.close()
        raise LogSetupError(f"failed to initialize logging driver: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class LogPipeline:
    """What the shim calls: write(stream, data), end(stream), reopen(), close()."""

    def __init__(
        self,
        driver: Any,
        cache: JsonFileLog | None = None,
        *,
        mode: str = "blocking",
        ring_bytes: int = DEFAULT_RING_BYTES,
    ) -> None:
        self.driver = driver
        self.cache = cache
        self.mode = mode
        self.max_line = int(getattr(driver, "max_line", 0) or 16 * 1024)
        self._splitters: dict[str, LineSplitter] = {}
        self.worker: Any = None
        # The fast path: whole blocks of lines, not lists of them, to a file driver written
        # in the loop (emit_block), or to the worker of a driver that encodes blocks.
        self.emit_block = getattr(driver, "emit_block", None) if cache is None else None
        self.put_block: Any = None
        self.wake_fd = -1
        threaded = bool(getattr(driver, "threaded", False))
        if threaded or mode == "non-blocking":
            from runtimed_shim.logworker import Worker

            if mode == "non-blocking":
                policy, max_bytes, max_lines = "drop-oldest", ring_bytes, 0
            else:
                policy = str(getattr(driver, "overflow", "") or "block")
                max_bytes = BLOCKING_QUEUE_BYTES
                max_lines = int(getattr(driver, "max_queued_lines", 0) or 0)
            self.worker = Worker(driver, policy=policy, max_bytes=max_bytes, max_lines=max_lines)
            self.wake_fd = self.worker.wake_r
            self.emit_block = None
            if self.worker.takes_blocks and (cache is None or hasattr(cache, "emit_block")):
                self.put_block = self.worker.put_block

    # -- output ------------------------------------------------------------------

    def write(self, stream: str, data: bytes) -> None:
        splitter = self._splitters.get(stream)
        if splitter is None:
            splitter = self._splitters[stream] = LineSplitter(self.max_line)
        if self.emit_block is not None or self.put_block is not None:
            block = splitter.feed_block(data)
            if block is not None:
                now = time.time_ns()
                if self.emit_block is not None:
                    self.emit_block(stream, block, now)
                    return
                self.put_block(stream, block, now)
                if self.cache is not None:
                    self.cache.emit_block(stream, block, now)
                return
        runs = splitter.feed(data)
        if runs:
            self._emit(stream, runs, time.time_ns())

    def end(self, stream: str) -> None:
        """The stream closed: its unterminated tail goes out as a partial line."""
        splitter = self._splitters.get(stream)
        if splitter is not None:
            runs = splitter.flush()
            if runs:
                self._emit(stream, runs, time.time_ns())

    def _emit(self, stream: str, runs: list[Any], time_ns: int) -> None:
        if self.worker is not None:
            self.worker.put(stream, runs, time_ns)
        else:
            self.driver.emit(stream, runs, time_ns)
        if self.cache is not None:
            self.cache.emit(stream, runs, time_ns)

    @property
    def congested(self) -> bool:
        """Blocking mode and the queue is full: stop reading the container's output."""
        return self.worker is not None and self.worker.congested

    def woken(self) -> None:
        """The worker wrote to wake_fd (the queue drained); read the byte away."""
        with contextlib.suppress(OSError):
            os.read(self.wake_fd, 4096)

    def flush(self) -> None:
        """The container is gone: send what batching drivers still hold."""
        if self.worker is not None:
            self.worker.flush()

    # -- control -----------------------------------------------------------------

    def reopen(self) -> None:
        if self.worker is not None:
            self.worker.reopen()
        else:
            self.driver.reopen()

    def stats(self) -> dict[str, int]:
        lines = bytes_ = 0
        if self.worker is not None:
            lines, bytes_ = self.worker.dropped_lines, self.worker.dropped_bytes
        lines += int(getattr(self.driver, "dropped_lines", 0) or 0)
        bytes_ += int(getattr(self.driver, "dropped", 0) or 0)
        return {"log_dropped_lines": lines, "log_dropped_bytes": bytes_}

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (for at most `timeout` seconds), then close."""
        if self.worker is not None:
            self.worker.close(CLOSE_TIMEOUT.get(self.mode, 5.0) if timeout is None else timeout)
        else:
            self.driver.close()
        if self.cache is not None:
            self.cache.close()

"""Health checks: an image's HEALTHCHECK or `run --health-*`, probed by the daemon.

The settings are Docker's config.Healthcheck {Test, Interval, Timeout, StartPeriod,
StartInterval, Retries} (durations in nanoseconds), merged at create time and kept
in the container's extras; the results are Docker's State.Health {Status,
FailingStreak, Log}, kept in the container state so they survive a daemon restart.

    (start) --> starting --probe ok--> healthy <--probe ok-- unhealthy
                   |                      |                     ^
                   +--`retries` failures in a row (not counted in the start period)
    (stop)  --> unhealthy (as Docker marks a stopped monitor)

The first probe comes one interval after the start (StartInterval while starting
inside a start period). A probe that outlives Timeout is killed and counts as a
failure (exit -1). The last five results are kept, output cut to 4096 bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from runtimed.core.execsync import run_to_exit
from runtimed.core.hooks import ContainerHook
from runtimed.errors import InvalidArgument, RuntimedError

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService, CreateRequest
    from runtimed.core.model import Container

log = structlog.get_logger(__name__)

EXTRAS_KEY = "healthcheck"
STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"
SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096
_DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


# -- settings --------------------------------------------------------------------------


def merge(image: dict[str, Any] | None, override: dict[str, Any] | None) -> dict[str, Any] | None:
    """The container's Healthcheck: the run flags, with what they leave out (empty Test,
    zero durations and retries) taken from the image's, as Docker merges them."""
    if not override:
        return dict(image) if image else None
    merged = dict(override)
    base = image or {}
    if not merged.get("Test"):
        merged["Test"] = list(base.get("Test") or [])
    for key in (*_DURATIONS, "Retries"):
        if not merged.get(key) and base.get(key):
            merged[key] = base[key]
    return {k: v for k, v in merged.items() if v} or None


def validate(check: dict[str, Any]) -> None:
    """Docker's limits on the settings: durations 0 or at least 1ms, retries not negative."""
    test = check.get("Test") or []
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise InvalidArgument(
            f"invalid health check test {test!r}: must start with CMD, CMD-SHELL or NONE"
        )
    for key in _DURATIONS:
        value = int(check.get(key) or 0)
        if value < 0 or 0 < value < 1_000_000:
            raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    if int(check.get("Retries") or 0) < 0:
        raise InvalidArgument("Retries in Healthcheck cannot be negative")


@dataclass(frozen=True)
class Probe:
    """A container's effective health check, defaults filled in (nanoseconds)."""

    command: list[str]
    interval: int
    timeout: int
    start_period: int
    start_interval: int
    retries: int

    @classmethod
    def of(cls, check: dict[str, Any] | None) -> Probe | None:
        """None when there is nothing to run (no Test, or NONE)."""
        test = list((check or {}).get("Test") or [])
        if not test or test[0] == "NONE":
            return None
        if test[0] == "CMD-SHELL":
            command = ["/bin/sh", "-c", " ".join(test[1:])]
        elif test[0] == "CMD":
            command = test[1:]
        else:
            return None
        if not command:
            return None
        assert check is not None
        return cls(
            command=command,
            interval=int(check.get("Interval") or DEFAULT_INTERVAL),
            timeout=int(check.get("Timeout") or DEFAULT_TIMEOUT),
            start_period=int(check.get("StartPeriod") or 0),
            start_interval=int(check.get("StartInterval") or DEFAULT_START_INTERVAL),
            retries=int(check.get("Retries") or DEFAULT_RETRIES),
        )


def probe_of(container: Container) -> Probe | None:
    return Probe.of(container.config.extras.get(EXTRAS_KEY))


# -- the state machine (pure: times are arguments) -------------------------------------


@dataclass(frozen=True)
class Result:
    start: int  # ns since the epoch
    end: int
    exit_code: int
    output: str


def begin(health: dict[str, Any] | None) -> dict[str, Any]:
    """At a start: starting, no failures counted; earlier results stay in the log."""
    return {"Status": STARTING, "FailingStreak": 0, "Log": list((health or {}).get("Log") or [])}


def stopped(health: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stopped container's monitor is gone: Docker calls it unhealthy from then on."""
    if health is None:
        return None
    return {**health, "Status": UNHEALTHY}


def record(health: dict[str, Any], result: Result, probe: Probe, started_at: int) -> dict[str, Any]:
    """The health after one probe's result."""
    entry = {
        "Start": result.start,
        "End": result.end,
        "ExitCode": result.exit_code,
        "Output": _truncate(result.output),
    }
    out = {**health, "Log": [*(health.get("Log") or []), entry][-MAX_LOG_ENTRIES:]}
    if result.exit_code == 0:
        out["Status"] = HEALTHY
        out["FailingStreak"] = 0
        return out
    in_start_period = (
        health.get("Status") == STARTING and result.start - started_at < probe.start_period
    )
    if in_start_period:
        return out  # failures while the container starts up do not count
    out["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
    if out["FailingStreak"] >= probe.retries:
        out["Status"] = UNHEALTHY
    return out


def next_delay(health: dict[str, Any], probe: Probe, started_at: int, now: int) -> int:
    """Nanoseconds until the next probe: the start interval while still starting inside
    the start period, else the interval."""
    if health.get("Status") == STARTING and now - started_at < probe.start_period:
        return probe.start_interval
    return probe.interval


def status_of(container: Container) -> str:
    """starting | healthy | unhealthy, or none without a health check (ps --filter health=)."""
    health = container.state.health
    if not health or probe_of(container) is None:
        return NONE
    return str(health.get("Status") or STARTING)


def _truncate(output: str) -> str:
    data = output.encode("utf-8", "replace")
    if len(data) <= MAX_OUTPUT:
        return output
    return data[:MAX_OUTPUT].decode("utf-8", "ignore")


def go_duration(ns: int) -> str:
    """As Go prints a time.Duration (1s, 500ms, 1m30s), for the timeout message."""
    if ns == 0:
        return "0s"
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{_trim(ns / 1_000)}µs"
    if ns < SECOND:
        return f"{_trim(ns / 1_000_000)}ms"
    hours, rest = divmod(ns, 3600 * SECOND)
    minutes, rest = divmod(rest, 60 * SECOND)
    text = f"{_trim(rest / SECOND)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return text


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


# -- the scheduler ---------------------------------------------------------------------

Runner = Callable[["Container", Probe], Awaitable[Result]]


class HealthMonitor(ContainerHook):
    """Runs each running container's probes on its schedule; driven by the lifecycle."""

    def __init__(
        self,
        containers: ContainerService,
        *,
        clock: Callable[[], int] = time.time_ns,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        runner: Runner | None = None,
        on_status: Callable[[Container, str], None] | None = None,
    ) -> None:
        self.containers = containers
        self.clock = clock
        self.sleep = sleep
        self.runner = runner or self._exec_probe
        # Told of every change of status (for an events bus).
        self.on_status = on_status
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- lifecycle hooks

    async def validate(self, request: CreateRequest, image_config: dict[str, Any]) -> None:
        # Kubernetes runs its own probes: CRI containers get no image health check.
        if request.cri is not None:
            request.extras.pop(EXTRAS_KEY, None)
            return
        check = merge(image_config.get("Healthcheck"), request.extras.get(EXTRAS_KEY))
        if check is None:
            request.extras.pop(EXTRAS_KEY, None)
            return
        validate(check)
        request.extras[EXTRAS_KEY] = check

    async def after_start(self, container: Container) -> None:
        if probe_of(container) is None:
            return
        # Called under the container's lock, right after its running state was saved.
        container.state.health = begin(container.state.health)
        self.containers.records.save_state(container)
        self._watch(container.id)

    async def restored(self, container: Container) -> None:
        if probe_of(container) is not None:
            self._watch(container.id)

    async def after_stop(self, container: Container) -> None:
        await self._cancel(container.id)
        if container.state.health is not None:
            await self.containers.update_state(container.id, self._mark_stopped)

    async def before_remove(self, container: Container, *, remove_volumes: bool) -> None:
        await self._cancel(container.id)

    async def aclose(self) -> None:
        for container_id in list(self._tasks):
            await self._cancel(container_id)

    # -- scheduling

    @staticmethod
    def _mark_stopped(container: Container) -> None:
        if not container.running:
            container.state.health = stopped(container.state.health)

    def _watch(self, container_id: str) -> None:
        old = self._tasks.get(container_id)
        if old is not None and not old.done():
            old.cancel()
        self._tasks[container_id] = asyncio.create_task(
            self._loop(container_id), name=f"health-{container_id[:12]}"
        )

    async def _cancel(self, container_id: str) -> None:
        task = self._tasks.pop(container_id, None)
        if task is None or task is asyncio.current_task():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def _loop(self, container_id: str) -> None:
        try:
            while True:
                container = self.containers.records.get(container_id)
                probe = probe_of(container) if container is not None else None
                if container is None or probe is None or not container.running:
                    return
                health = container.state.health or begin(None)
                delay = next_delay(health, probe, container.state.started_at, self.clock())
                await self.sleep(delay / SECOND)
                container = self.containers.records.get(container_id)
                if container is None or not container.running:
                    return
                if container.state.paused:
                    continue  # a frozen container cannot answer; Docker skips it too
                result = await self.runner(container, probe)
                await self._record(container_id, result, probe)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("health_monitor_failed", container_id=container_id)

    async def _record(self, container_id: str, result: Result, probe: Probe) -> None:
        before: list[str] = []

        def apply(container: Container) -> None:
            if not container.running:
                return
            health = container.state.health or begin(None)
            before.append(str(health.get("Status")))
            container.state.health = record(health, result, probe, container.state.started_at)

        container = await self.containers.update_state(container_id, apply)
        if container is None or not before or container.state.health is None:
            return
        status = str(container.state.health["Status"])
        if status != before[0]:
            log.info("container_health_changed", container_id=container_id, status=status)
            if self.on_status is not None:
                self.on_status(container, status)

    async def _exec_probe(self, container: Container, probe: Probe) -> Result:
        start = self.clock()
        try:
            done = await run_to_exit(
                self.containers,
                container.id,
                probe.command,
                timeout=probe.timeout / SECOND,
                exec_id=f"health-{secrets.token_hex(6)}",
            )
        except TimeoutError:
            message = f"Health check exceeded timeout ({go_duration(probe.timeout)})"
            return Result(start, self.clock(), -1, message)
        except RuntimedError as exc:
            return Result(start, self.clock(), -1, exc.message)
        output = (done.stdout + done.stderr).decode("utf-8", "replace")
        return Result(start, self.clock(), done.exit_code, output)

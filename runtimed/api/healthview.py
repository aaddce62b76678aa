"""Health checks as the Engine API shows them: the request's flags, inspect, ps status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtimed.core import health
from runtimed.core.model import Container
from runtimed.gen.runtimed.v1 import engine_pb2 as pb


def override(check: pb.HealthConfig) -> dict[str, Any]:
    """--health-* as Docker's config.Healthcheck (core/health.py merges the image's in)."""
    return {
        "Test": list(check.test),
        "Interval": check.interval,
        "Timeout": check.timeout,
        "StartPeriod": check.start_period,
        "StartInterval": check.start_interval,
        "Retries": check.retries,
    }


def config(container: Container) -> dict[str, Any] | None:
    """inspect's Config.Healthcheck (absent without one, as Docker leaves it out)."""
    return container.config.extras.get(health.EXTRAS_KEY)


def state(container: Container, timestamp: Callable[[int], str]) -> dict[str, Any] | None:
    """inspect's State.Health: the status, the failing streak and the last results
    (`timestamp` formats their times, as inspect does its others)."""
    record = container.state.health
    if not record or health.probe_of(container) is None:
        return None
    return {
        "Status": record.get("Status", health.STARTING),
        "FailingStreak": int(record.get("FailingStreak") or 0),
        "Log": [
            {
                "Start": timestamp(entry["Start"]),
                "End": timestamp(entry["End"]),
                "ExitCode": entry["ExitCode"],
                "Output": entry["Output"],
            }
            for entry in record.get("Log") or []
        ],
    }


def status_suffix(container: Container) -> str:
    """What ps adds after `Up 5 seconds`: ` (healthy)`, ` (unhealthy)`, ` (health: starting)`."""
    status = health.status_of(container)
    if status == health.NONE:
        return ""
    if status == health.STARTING:
        return " (health: starting)"
    return f" ({status})"

"""The health check flags of `run`/`create`: --health-cmd, --health-interval, ..."""

from __future__ import annotations

import argparse

from runtimed.cli.client import CliError
from runtimed.errors import InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

_DURATIONS = {
    "health_interval": "interval",
    "health_timeout": "timeout",
    "health_start_period": "start_period",
    "health_start_interval": "start_interval",
}


def add_health_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--health-cmd", help="command to run to check health")
    p.add_argument("--health-interval", help="time between running the check (ms|s|m|h)")
    p.add_argument("--health-retries", type=int, help="consecutive failures to report unhealthy")
    p.add_argument("--health-start-period", help="start period before retries count (ms|s|m|h)")
    p.add_argument("--health-start-interval", help="time between checks in the start period")
    p.add_argument("--health-timeout", help="maximum time to allow one check to run (ms|s|m|h)")
    p.add_argument(
        "--no-healthcheck", action="store_true", help="disable any container-specified HEALTHCHECK"
    )


def _usage(message: str) -> CliError:
    return CliError(message, 125)


def apply_health_flags(args: argparse.Namespace, req: pb.CreateContainerRequest) -> None:
    """Set req.healthcheck when a health flag was given (unset: the image's, as docker)."""
    given = (
        args.health_cmd is not None
        or args.health_retries is not None
        or any(getattr(args, name) is not None for name in _DURATIONS)
    )
    if args.no_healthcheck:
        if given:
            raise _usage("--no-healthcheck conflicts with --health-* options")
        req.healthcheck.CopyFrom(pb.HealthConfig(test=["NONE"]))
        return
    if not given:
        return
    from runtimed.build.config import parse_duration  # the Dockerfile code: only when asked

    check = pb.HealthConfig()
    if args.health_cmd:
        check.test.extend(["CMD-SHELL", args.health_cmd])
    for name, field in _DURATIONS.items():
        text = getattr(args, name)
        if text is None:
            continue
        flag = name.replace("_", "-")
        negative = text.startswith("-")
        try:
            nanos = parse_duration(text.removeprefix("-"), flag)
        except InvalidArgument:
            raise _usage(
                f'invalid argument "{text}" for "--{flag}" flag: time: invalid duration "{text}"'
            ) from None
        if negative and nanos:
            raise _usage(f"--{flag} cannot be negative")
        setattr(check, field, nanos)
    if args.health_retries is not None:
        if args.health_retries < 0:
            raise _usage("--health-retries cannot be negative")
        check.retries = args.health_retries
    req.healthcheck.CopyFrom(check)

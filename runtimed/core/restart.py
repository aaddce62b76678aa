"""Docker's restart policies: whether and when an exited container starts again."""

from __future__ import annotations

from runtimed.core.model import ContainerState, RestartPolicy
from runtimed.errors import InvalidArgument

POLICIES = ("no", "on-failure", "always", "unless-stopped")
# Docker doubles the delay from 100 ms after each restart, up to a minute.
BASE_DELAY = 0.1
MAX_DELAY = 60.0


def parse_policy(text: str) -> RestartPolicy:
    """`no`, `always`, `unless-stopped`, `on-failure[:N]`."""
    name, _, count = text.partition(":")
    name = name or "no"
    if name not in POLICIES:
        raise InvalidArgument(f"invalid restart policy {text!r}: want one of {', '.join(POLICIES)}")
    if count and name != "on-failure":
        raise InvalidArgument(f"maximum retry count cannot be used with restart policy {name!r}")
    try:
        retries = int(count) if count else 0
    except ValueError:
        raise InvalidArgument(f"invalid restart policy {text!r}: bad retry count") from None
    if retries < 0:
        raise InvalidArgument("maximum retry count cannot be negative")
    return RestartPolicy(name, retries)


def should_restart(
    policy: RestartPolicy, state: ContainerState, *, daemon_starting: bool = False
) -> bool:
    if policy.name == "always":
        return not state.manually_stopped or daemon_starting
    if state.manually_stopped:
        return False
    if policy.name == "unless-stopped":
        return True
    if policy.name == "on-failure":
        if state.exit_code == 0:
            return False
        return policy.max_retries == 0 or state.restart_count < policy.max_retries
    return False


def restart_delay(restart_count: int) -> float:
    return min(MAX_DELAY, BASE_DELAY * (2 ** min(restart_count, 10)))

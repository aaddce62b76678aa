"""Small helpers for tests that drive containers through runtimectl."""

from __future__ import annotations

import json

from tests.support.daemon import Daemon


def inspect(daemon: Daemon, name: str) -> dict:
    """`runtimectl container inspect NAME`'s document."""
    return json.loads(daemon.ok("container", "inspect", name).stdout)[0]

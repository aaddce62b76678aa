"""Where runtimed keeps things, and how a client names the daemon's socket.

Apart from runtimed.config so that runtimectl, which needs only the socket,
does not pay for loading the daemon's configuration machinery on every command.
"""

from __future__ import annotations

import os
from pathlib import Path

from runtimed.errors import InvalidArgument


def runtime_dir() -> Path:
    """$XDG_RUNTIME_DIR/runtimed, or a private /tmp directory when unset (as Podman does)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "runtimed"
    uid = os.getuid()
    if uid == 0:
        return Path("/run/runtimed")
    run_user = Path(f"/run/user/{uid}")
    if run_user.is_dir() and os.access(run_user, os.W_OK):
        return run_user / "runtimed"
    return Path(f"/tmp/runtimed-run-{uid}")


def data_dir() -> Path:
    if os.getuid() == 0 and "XDG_DATA_HOME" not in os.environ:
        return Path("/var/lib/runtimed")
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "runtimed"


def config_dir() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "runtimed"


def default_socket() -> Path:
    return runtime_dir() / "runtimed.sock"


def parse_host(value: str) -> Path:
    """A unix socket's path from `unix:///path`, `unix://path` or a bare path (where only a
    local socket will do: `--socket`; tcp:// listeners and clients use runtimed.hosts)."""
    from runtimed.hosts import parse_host as parse_any

    host = parse_any(value)
    if host.is_tcp:
        raise InvalidArgument(
            f"cannot use {value} here: only unix:///PATH sockets (tcp:// is for -H)"
        )
    return Path(host.path)

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
    """Accept `unix:///path`, `unix://path` or a bare path (docker's -H forms we support)."""
    scheme, sep, path = value.partition("://")
    if not sep:
        path = value
    elif scheme == "tcp":
        raise InvalidArgument(
            f"cannot use {value}: tcp:// hosts are not supported yet, only unix:///PATH sockets"
        )
    elif scheme != "unix":
        raise InvalidArgument(f"unsupported host {value}: only unix:///PATH sockets are supported")
    if not path:
        raise InvalidArgument(f"invalid host {value!r}: empty socket path, use unix:///PATH")
    return Path(path)

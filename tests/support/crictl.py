"""Run the real crictl (a Go CRI client: kubelet's own gRPC stubs) against a test daemon.

deploy/test.sh passes its path as RUNTIMED_CRICTL (see find_crictl in deploy/lib.sh);
otherwise crictl must be on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.support.daemon import CliResult, Daemon


def crictl_path() -> str:
    path = os.environ.get("RUNTIMED_CRICTL") or shutil.which("crictl")
    assert path, "crictl not found: set RUNTIMED_CRICTL or put crictl on PATH"
    return path


def crictl_argv(socket: Path) -> list[str]:
    """crictl with both endpoints on `socket`; append the subcommand and its arguments."""
    endpoint = f"unix://{socket}"
    return [crictl_path(), "-r", endpoint, "-i", endpoint, "--timeout", "30s"]


def crictl(daemon: Daemon, *args: str, input: str | None = None, timeout: float = 60) -> CliResult:
    proc = subprocess.run(
        [*crictl_argv(daemon.socket), *args],
        input=None if input is None else input.encode(),
        capture_output=True,
        timeout=timeout,
        env=daemon.env,
    )
    return CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def crictl_ok(daemon: Daemon, *args: str, timeout: float = 60) -> CliResult:
    result = crictl(daemon, *args, timeout=timeout)
    assert result.returncode == 0, (
        f"crictl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result


def crictl_json(daemon: Daemon, command: str, *args: str) -> Any:
    """`crictl COMMAND -o json ARGS...` parsed (options go before positional arguments)."""
    return json.loads(crictl_ok(daemon, command, "-o", "json", *args).stdout)


def write_config(path: Path, doc: dict[str, Any]) -> str:
    """A pod or container config file as crictl reads it (the CRI's JSON field names)."""
    path.write_text(json.dumps(doc))
    return str(path)

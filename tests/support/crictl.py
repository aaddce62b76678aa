"""cri-tools' crictl, a real Go CRI client (kubelet's gRPC stubs), pointed at a test daemon.

The binary is $RUNTIMED_CRICTL (deploy/lib.sh sets it for the staged tests), else
shared/bin/crictl beside the checkout, where CI lays shared/.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV = "RUNTIMED_CRICTL"


def crictl_binary() -> str:
    path = os.environ.get(ENV) or str(
        Path(__file__).resolve().parents[3] / "shared" / "bin" / "crictl"
    )
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            f"crictl not found at {path}: set {ENV} to cri-tools' crictl (deploy/test.sh "
            "passes shared/bin/crictl beside the checkout)"
        )
    return path


def crictl_argv(socket: Path) -> list[str]:
    """crictl with both endpoints on `socket`; append the subcommand and its arguments."""
    endpoint = f"unix://{socket}"
    return [crictl_binary(), "-r", endpoint, "-i", endpoint, "--timeout", "60s"]


def write_config(path: Path, doc: dict[str, Any]) -> str:
    """A pod or container config file as crictl reads it (the CRI's JSON field names)."""
    path.write_text(json.dumps(doc))
    return str(path)

"""Finding the OCI runtime binary (crun preferred, runc as fallback)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from runtimed.errors import FailedPrecondition

PREFERENCE = ("crun", "runc")


@dataclass(frozen=True)
class OciRuntime:
    name: str
    path: str
    version: str


def detect_runtime(choice: str = "auto") -> OciRuntime:
    candidates = PREFERENCE if choice == "auto" else (choice,)
    for name in candidates:
        path = shutil.which(name)
        if path:
            return OciRuntime(name, path, _version(path))
    wanted = " or ".join(candidates)
    raise FailedPrecondition(f"no OCI runtime found: install {wanted} (apt-get install crun)")


def _version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = out.stdout.strip().splitlines()[:1]
    # "crun version 1.8.1" / "runc version 1.1.5"
    return first[0].split()[-1] if first else "unknown"

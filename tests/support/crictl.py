"""crictl, the Kubernetes CRI command-line client (a real Go client: kubelet's gRPC stubs,
client-go's SPDY and WebSocket executors), pointed at one daemon."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.daemon import Daemon


def crictl_binary() -> str:
    """deploy/stage.sh puts it on the test user's PATH (from shared/bin beside the checkout)."""
    found = shutil.which("crictl")
    if found is None:
        raise RuntimeError("crictl is not on PATH: stage the tree with deploy/stage.sh")
    return found


class Crictl:
    def __init__(self, daemon: Daemon) -> None:
        endpoint = f"unix://{daemon.socket}"
        # An empty config file: no warning about a missing /etc/crictl.yaml.
        config = Path(daemon.root) / "crictl.yaml"
        config.touch()
        self.base = [
            crictl_binary(),
            "--config",
            str(config),
            "-r",
            endpoint,
            "-i",
            endpoint,
            "--timeout",
            "30s",
        ]

    def argv(self, *args: str) -> list[str]:
        return [*self.base, *args]

    def run(
        self, *args: str, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.argv(*args),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )

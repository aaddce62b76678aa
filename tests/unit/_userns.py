"""Run a test scenario as root of its own user (and mount) namespace.

Whiteout devices, owners and overlay mounts need root. The tests run as an
ordinary user, so a scenario (a plain function in a test module) is re-run in
`unshare --user --map-auto --map-root-user --mount`, exactly the namespace the
daemon gives itself. Real root gets a private mount namespace only, unless the
scenario needs user-namespace semantics (`userns=True`). Exit status 77 with a
reason on stdout means "skip".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SKIP = 77
_REPO = Path(__file__).resolve().parents[2]

# Files made in the namespace belong to subordinate ids the test user cannot
# delete from outside, so the scratch dir (first argument) is emptied here,
# after detaching any mount the scenario left behind.
_RUNNER = """
import importlib.util, os, shutil, sys
from pathlib import Path
from runtimed.snapshots import _mount
scratch = os.path.realpath(sys.argv[3])
try:
    spec = importlib.util.spec_from_file_location("scenario_module", sys.argv[1])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    getattr(mod, sys.argv[2])(*sys.argv[3:])
finally:
    for m in sorted(_mount.mount_points(), reverse=True):
        if m.startswith(scratch + "/"):
            _mount.umount(Path(m), _mount.MNT_DETACH)
    for name in os.listdir(scratch):
        path = os.path.join(scratch, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
"""


def namespace_prefix(*, userns: bool) -> list[str]:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    if os.geteuid() == 0 and not userns:
        return ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() == 0:
        # root has no /etc/subuid range; mapping root alone is enough here.
        return ["unshare", "--user", "--map-root-user", "--mount"]
    if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
        pytest.skip("newuidmap/newgidmap (package uidmap) are not installed")
    return ["unshare", "--user", "--map-auto", "--map-root-user", "--mount"]


def run_scenario(
    module_file: str, func: str, scratch: str, *args: str, userns: bool = False
) -> str:
    """Call `func(scratch, *args)` from `module_file` as namespace root.

    The test fails with the scenario's output if it raises; `scratch` is
    emptied afterwards.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(_REPO), str(Path(module_file).parent), env.get("PYTHONPATH", "")]
    )
    cmd = [*namespace_prefix(userns=userns), sys.executable, "-c", _RUNNER, module_file, func]
    proc = subprocess.run(
        [*cmd, scratch, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    if proc.returncode == SKIP:
        pytest.skip(proc.stdout.strip())
    if proc.returncode != 0:
        pytest.fail(
            f"scenario {func} failed (exit {proc.returncode})\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}",
            pytrace=False,
        )
    return proc.stdout


def skip_scenario(reason: str) -> None:
    print(reason)
    sys.exit(SKIP)


def real_root() -> bool:
    """Root of the initial user namespace (trusted.* xattrs are writable)."""
    first = Path("/proc/self/uid_map").read_text().split()
    return os.geteuid() == 0 and first[:3] == ["0", "0", "4294967295"]

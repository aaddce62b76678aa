"""A full disk under the data dir: exits are kept, no command hangs, removals free space.

The data dir lives on a small tmpfs the test harness mounts for the test user
(deploy/test.sh: STAGE/smallfs); a container fills it by writing into a volume.
Every command runs under a subprocess timeout: one that runs into it hung.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SMALLFS = Path(os.environ.get("STAGE", "/nonexistent")) / "smallfs"
PROMPT = 30.0  # seconds; a command still running after this hung
NO_SPACE = "no space left on device"


@pytest.fixture
def small() -> Iterator[Daemon]:
    assert os.path.ismount(SMALLFS), f"{SMALLFS} is not mounted: run the tests with deploy/test.sh"
    daemon = Daemon(data_dir=Path(tempfile.mkdtemp(prefix="data-", dir=SMALLFS)))
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.cleanup()


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def statuses(d: Daemon) -> dict[str, str]:
    out = d.ok("ps", "-a", "--format", "{{.Names}}\t{{.Status}}", timeout=PROMPT).stdout
    return dict(line.split("\t", 1) for line in out.splitlines())


def exit_code(d: Daemon, name: str) -> tuple[str, int]:
    state = json.loads(d.ok("inspect", name, timeout=PROMPT).stdout)[0]["State"]
    return state["Status"], state["ExitCode"]


def test_a_full_disk_keeps_exits_hangs_nothing_and_lets_removals_free_space(
    small: Daemon,
) -> None:
    d = small
    image = d.import_busybox("diskbox:1")
    spare = d.import_busybox("spare:1")
    ids = d.ok("images", "-q", "--no-trunc").stdout.split()
    assert len(set(ids)) == 2, ids  # two images: rmi of one removes an image, not a tag
    ctl = d.root / "ctl"
    ctl.mkdir()
    d.ok("run", "-d", "--name", "waiter", "-v", f"{ctl}:/ctl", image, "sh", "-c",
         "until [ -e /ctl/go ]; do sleep 0.1; done; exit 7")  # fmt: skip
    d.ok("run", "-d", "--name", "sleeper", image, "sleep", "600")
    d.ok("run", "-d", "--name", "doomed", image, "sleep", "600")

    # The filler: dd ends with ENOSPC once the data dir's filesystem is full.
    d.ok("run", "-d", "--name", "hog", "-v", "hog:/hog", "-v", f"{ctl}:/ctl", image, "sh", "-c",
         "dd if=/dev/zero of=/hog/big bs=1M; touch /ctl/full; exec sleep 600")  # fmt: skip
    wait_for(lambda: (ctl / "full").exists(), timeout=PROMPT, what="the disk to fill up")
    assert free_bytes(d.data_dir) < 1 << 20

    # What needs space fails at once, saying so in the user's terms.
    for args in (("create", "--name", "more", image), ("volume", "create", "more")):
        refused = d.ctl(*args, timeout=PROMPT)
        assert refused.returncode != 0, args
        assert NO_SPACE in refused.stderr and "Errno" not in refused.stderr, refused.stderr

    # An exit while the disk is full is seen at once, with its code.
    (ctl / "go").touch()
    assert d.ok("wait", "waiter", timeout=PROMPT).stdout.strip() == "7"
    assert statuses(d)["waiter"].startswith("Exited (7)")

    # Stopping and removing end promptly: done, or refused in so many words.
    stops = (("stop", "-t", "1", "hog"), ("stop", "-t", "1", "sleeper"), ("rm", "-f", "doomed"))
    for args in stops:
        result = d.ctl(*args, timeout=PROMPT)
        assert result.returncode == 0 or NO_SPACE in result.stderr, (args, result)
    if statuses(d)["hog"].startswith("Up"):  # its stop said "no space left on device"
        d.ok("kill", "hog", timeout=PROMPT)
    assert d.ok("wait", "hog", timeout=PROMPT).stdout.strip() == "137"

    # Removals free space on a full disk: the filler (its volume still fills the disk) and
    # an image.
    d.ok("rm", "hog", timeout=PROMPT)
    d.ok("rmi", spare, timeout=PROMPT)
    assert (d.data_dir / "volumes" / "hog" / "_data" / "big").exists()
    assert "hog" not in statuses(d)
    d.ok("volume", "rm", "hog", timeout=PROMPT)

    # Space is back: everything goes on as usual, and the exits were recorded for good.
    d.ctl("rm", "-f", "doomed", timeout=PROMPT)
    d.ok("stop", "-t", "1", "sleeper", timeout=PROMPT)
    wait_for(lambda: statuses(d)["waiter"].startswith("Exited (7)"), what="waiter exited")
    assert d.ok("run", "--rm", image, "echo", "room again", timeout=PROMPT).stdout == "room again\n"
    d.stop()
    d.start()
    assert exit_code(d, "waiter") == ("exited", 7)
    assert exit_code(d, "sleeper")[0] == "exited"
    assert set(statuses(d)) == {"waiter", "sleeper"}

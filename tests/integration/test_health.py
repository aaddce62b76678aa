"""Health checks run by the daemon: run --health-*, an image's HEALTHCHECK, ps, inspect."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "bb:health"
FAST = ["--health-interval", "200ms"]


def doc(daemon: Daemon, name: str) -> dict:
    return json.loads(daemon.ok("inspect", name).stdout)[0]


def health(daemon: Daemon, name: str) -> dict:
    return doc(daemon, name)["State"].get("Health") or {}


def status_of(daemon: Daemon, name: str) -> str:
    out = daemon.ok("ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Status}}")
    return out.stdout.strip()


def names(daemon: Daemon, *filters: str) -> set[str]:
    args = [x for f in filters for x in ("--filter", f)]
    return set(daemon.ok("ps", *args, "--format", "{{.Names}}").out_lines)


def run(daemon: Daemon, name: str, *flags: str, image: str = IMAGE) -> None:
    daemon.ok("run", "-d", "--name", name, *flags, image, "sleep", "1000")


def wait_status(daemon: Daemon, name: str, want: str) -> dict:
    wait_for(lambda: health(daemon, name).get("Status") == want, what=f"{name} {want}")
    return health(daemon, name)


@pytest.fixture(scope="module", autouse=True)
def image(daemon: Daemon) -> None:
    daemon.import_busybox(IMAGE)


def busybox_with(daemon: Daemon, tag: str, *changes: str) -> None:
    tarball = daemon.root / f"{tag.replace(':', '-')}.tar"
    subprocess.run([str(ROOT / "deploy" / "make-busybox-rootfs.sh"), str(tarball)], check=True)
    daemon.ok("import", *[x for c in changes for x in ("-c", c)], str(tarball), tag)


def test_passing_check_makes_it_healthy(daemon: Daemon) -> None:
    run(daemon, "hc-ok", "--health-cmd", "echo fine; echo also >&2", *FAST)
    state = wait_status(daemon, "hc-ok", "healthy")
    assert state["FailingStreak"] == 0
    entry = state["Log"][0]
    assert entry["ExitCode"] == 0 and entry["Output"] == "fine\nalso\n"
    assert entry["Start"] <= entry["End"] and entry["Start"].endswith("Z")
    assert status_of(daemon, "hc-ok").endswith("(healthy)")
    assert status_of(daemon, "hc-ok").startswith("Up ")
    config = doc(daemon, "hc-ok")["Config"]["Healthcheck"]
    assert config == {"Test": ["CMD-SHELL", "echo fine; echo also >&2"], "Interval": 200_000_000}
    # A stopped container's checks end, and Docker reports that as unhealthy.
    daemon.ok("stop", "-t", "0", "hc-ok")
    assert health(daemon, "hc-ok")["Status"] == "unhealthy"
    assert status_of(daemon, "hc-ok").startswith("Exited (137)")
    daemon.ok("rm", "hc-ok")


def test_failing_check_is_unhealthy_after_retries(daemon: Daemon) -> None:
    run(daemon, "hc-bad", "--health-cmd", "echo broken; exit 3", "--health-retries", "2", *FAST)
    state = wait_status(daemon, "hc-bad", "unhealthy")
    assert state["FailingStreak"] >= 2
    assert {(e["ExitCode"], e["Output"]) for e in state["Log"]} == {(3, "broken\n")}
    assert status_of(daemon, "hc-bad").endswith("(unhealthy)")
    # It goes on probing; only the last five results are kept.
    wait_for(lambda: health(daemon, "hc-bad")["FailingStreak"] >= 7, what="seven failures")
    assert len(health(daemon, "hc-bad")["Log"]) == 5
    daemon.ok("rm", "-f", "hc-bad")


def test_recovers_when_the_check_passes_again(daemon: Daemon) -> None:
    run(daemon, "hc-flip", "--health-cmd", "test ! -e /tmp/broken", "--health-retries", "1", *FAST)
    wait_status(daemon, "hc-flip", "healthy")
    daemon.ok("exec", "hc-flip", "touch", "/tmp/broken")
    assert wait_status(daemon, "hc-flip", "unhealthy")["FailingStreak"] >= 1
    daemon.ok("exec", "hc-flip", "rm", "/tmp/broken")
    assert wait_status(daemon, "hc-flip", "healthy")["FailingStreak"] == 0
    daemon.ok("rm", "-f", "hc-flip")


def test_failures_in_the_start_period_do_not_count(daemon: Daemon) -> None:
    run(
        daemon,
        "hc-slow",
        "--health-cmd",
        "test -e /tmp/ready",
        "--health-retries",
        "1",
        "--health-start-period",
        "1h",
        "--health-start-interval",
        "200ms",
        "--health-interval",
        "1h",
    )
    wait_for(lambda: len(health(daemon, "hc-slow").get("Log", [])) >= 3, what="three probes")
    state = health(daemon, "hc-slow")
    assert state["Status"] == "starting" and state["FailingStreak"] == 0
    assert all(e["ExitCode"] == 1 for e in state["Log"])
    assert status_of(daemon, "hc-slow").endswith("(health: starting)")
    assert "hc-slow" in names(daemon, "health=starting")
    daemon.ok("exec", "hc-slow", "touch", "/tmp/ready")
    wait_status(daemon, "hc-slow", "healthy")
    daemon.ok("rm", "-f", "hc-slow")


def test_a_probe_past_its_timeout_is_killed_and_fails(daemon: Daemon) -> None:
    run(
        daemon,
        "hc-hang",
        "--health-cmd",
        "sleep 30",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        *FAST,
    )
    state = wait_status(daemon, "hc-hang", "unhealthy")
    entry = state["Log"][0]
    assert entry["ExitCode"] == -1
    assert entry["Output"] == "Health check exceeded timeout (300ms)"
    # Timed-out probes are gone, not left sleeping in the container: once two have timed
    # out, only the one in flight may sleep (left alone, each would sleep for 30 s).
    wait_for(lambda: len(health(daemon, "hc-hang")["Log"]) >= 2, what="a second probe")

    def sleeping() -> int:
        probes = daemon.ok("exec", "hc-hang", "ps", "-o", "args").out_lines
        return sum(1 for line in probes if line.strip() == "sleep 30")

    wait_for(lambda: sleeping() <= 1, timeout=10, what="at most one probe left sleeping")
    daemon.ok("rm", "-f", "hc-hang")


def test_image_healthcheck_applies_and_no_healthcheck_disables_it(daemon: Daemon) -> None:
    busybox_with(daemon, "bb:checked", 'CMD ["/bin/sh"]', "HEALTHCHECK --interval=300ms CMD true")
    image_config = json.loads(daemon.ok("image", "inspect", "bb:checked").stdout)[0]["Config"]
    assert image_config["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 300_000_000}
    run(daemon, "hc-off", "--no-healthcheck", image="bb:checked")
    run(daemon, "hc-image", image="bb:checked")
    # The flags override parts and keep the rest of the image's check.
    run(daemon, "hc-merged", "--health-retries", "4", image="bb:checked")
    wait_status(daemon, "hc-image", "healthy")
    wait_status(daemon, "hc-merged", "healthy")
    merged = doc(daemon, "hc-merged")["Config"]["Healthcheck"]
    assert merged == {"Test": ["CMD-SHELL", "true"], "Interval": 300_000_000, "Retries": 4}
    off = doc(daemon, "hc-off")
    assert "Health" not in off["State"]
    assert off["Config"]["Healthcheck"]["Test"] == ["NONE"]
    assert status_of(daemon, "hc-off").startswith("Up ")
    assert not status_of(daemon, "hc-off").endswith(")")
    daemon.ok("rm", "-f", "hc-off", "hc-image", "hc-merged")


def test_ps_filter_health(daemon: Daemon) -> None:
    run(daemon, "f-good", "--health-cmd", "true", *FAST)
    run(daemon, "f-bad", "--health-cmd", "false", "--health-retries", "1", *FAST)
    run(daemon, "f-plain")
    wait_status(daemon, "f-good", "healthy")
    wait_status(daemon, "f-bad", "unhealthy")
    mine = {"f-good", "f-bad", "f-plain"}
    assert names(daemon, "health=healthy") & mine == {"f-good"}
    assert names(daemon, "health=unhealthy") & mine == {"f-bad"}
    assert names(daemon, "health=none") & mine == {"f-plain"}
    assert names(daemon, "health=healthy", "health=unhealthy") & mine == {"f-good", "f-bad"}
    bad = daemon.ctl("ps", "--filter", "health=sick")
    assert bad.returncode != 0 and "Unrecognised filter value for health: sick" in bad.stderr
    daemon.ok("rm", "-f", *sorted(mine))


def test_bad_health_flags_are_refused(daemon: Daemon) -> None:
    both = daemon.ctl("create", "--no-healthcheck", "--health-cmd", "true", IMAGE)
    assert both.returncode == 125
    assert "--no-healthcheck conflicts with --health-* options" in both.stderr
    short = daemon.ctl("create", "--health-interval", "10us", "--health-cmd", "true", IMAGE)
    assert short.returncode == 125
    assert "Interval in Healthcheck cannot be less than 1ms" in short.stderr
    garbage = daemon.ctl("create", "--health-timeout", "soon", IMAGE)
    assert garbage.returncode == 125 and 'invalid duration "soon"' in garbage.stderr
    assert daemon.ok("ps", "-aq", "--filter", "ancestor=" + IMAGE).stdout.strip() == ""


def test_health_survives_a_daemon_restart() -> None:
    d = Daemon()
    try:
        d.start()
        d.import_busybox(IMAGE)
        run(d, "hc-keep", "--health-cmd", "echo alive", *FAST)
        run(d, "hc-sick", "--health-cmd", "false", "--health-retries", "1", *FAST)
        wait_status(d, "hc-keep", "healthy")
        wait_status(d, "hc-sick", "unhealthy")
        last_before = health(d, "hc-keep")["Log"][-1]["End"]
        d.stop()
        d.start()
        kept = health(d, "hc-keep")
        assert kept["Status"] == "healthy" and kept["Log"]
        assert health(d, "hc-sick")["Status"] == "unhealthy"
        # The checks run on: new results come in after the restart.
        wait_for(lambda: health(d, "hc-keep")["Log"][-1]["End"] > last_before, what="a new probe")
        assert status_of(d, "hc-keep").endswith("(healthy)")
    finally:
        d.cleanup()

"""Health checks: Docker's settings merge, the state machine and the scheduler, on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from runtimed.core import health
from runtimed.core.health import HealthMonitor, Probe, Result
from runtimed.core.model import Container, ContainerConfig, ContainerState, Status
from runtimed.errors import InvalidArgument

S = health.SECOND
MS = S // 1000


def probe(**overrides: int) -> Probe:
    check = {"Test": ["CMD", "true"], "Interval": 10 * S, "Retries": 3, **overrides}
    found = Probe.of(check)
    assert found is not None
    return found


def result(at: int, code: int, output: str = "") -> Result:
    return Result(start=at, end=at + MS, exit_code=code, output=output)


# -- settings ---------------------------------------------------------------------------


def test_probe_defaults_and_forms() -> None:
    shell = Probe.of({"Test": ["CMD-SHELL", "curl -f localhost || exit 1"]})
    assert shell is not None
    assert shell.command == ["/bin/sh", "-c", "curl -f localhost || exit 1"]
    assert (shell.interval, shell.timeout, shell.start_period) == (30 * S, 30 * S, 0)
    assert (shell.start_interval, shell.retries) == (5 * S, 3)
    exec_form = Probe.of({"Test": ["CMD", "/bin/check", "--fast"], "Retries": 1})
    assert exec_form is not None and exec_form.command == ["/bin/check", "--fast"]
    assert exec_form.retries == 1
    assert Probe.of({"Test": ["NONE"]}) is None
    assert Probe.of({}) is None
    assert Probe.of(None) is None


def test_merge_takes_what_the_flags_leave_out_from_the_image() -> None:
    image = {"Test": ["CMD-SHELL", "true"], "Interval": 5 * S, "Retries": 7}
    assert health.merge(image, None) == image
    merged = health.merge(image, {"Test": [], "Interval": 0, "Timeout": 2 * S, "Retries": 0})
    assert merged == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 5 * S,
        "Timeout": 2 * S,
        "Retries": 7,
    }
    assert health.merge(image, {"Test": ["NONE"]}) == {
        "Test": ["NONE"],
        "Interval": 5 * S,
        "Retries": 7,
    }
    assert health.merge(None, None) is None
    assert health.merge(None, {"Test": ["CMD", "x"], "Interval": 0}) == {"Test": ["CMD", "x"]}


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (
            {"Test": ["CMD", "x"], "Interval": 500},
            "Interval in Healthcheck cannot be less than 1ms",
        ),
        ({"Test": ["CMD", "x"], "Timeout": -1}, "Timeout in Healthcheck cannot be less than 1ms"),
        ({"Test": ["CMD", "x"], "Retries": -1}, "Retries in Healthcheck cannot be negative"),
        ({"Test": ["SHELL", "x"]}, "must start with CMD, CMD-SHELL or NONE"),
    ],
)
def test_validate_refuses_docker_s_bad_settings(check: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        health.validate(check)


def test_go_duration() -> None:
    assert health.go_duration(300 * MS) == "300ms"
    assert health.go_duration(S) == "1s"
    assert health.go_duration(1500 * MS) == "1.5s"
    assert health.go_duration(90 * S) == "1m30s"
    assert health.go_duration(3600 * S) == "1h0m0s"


# -- the state machine -----------------------------------------------------------------


def test_first_success_is_healthy_and_resets_the_streak() -> None:
    p = probe()
    h = health.begin(None)
    assert h == {"Status": "starting", "FailingStreak": 0, "Log": []}
    h = health.record(h, result(10 * S, 1, "no"), p, started_at=0)
    assert (h["Status"], h["FailingStreak"]) == ("starting", 1)
    h = health.record(h, result(20 * S, 0, "yes"), p, started_at=0)
    assert (h["Status"], h["FailingStreak"]) == ("healthy", 0)
    assert [e["ExitCode"] for e in h["Log"]] == [1, 0]
    assert h["Log"][1] == {"Start": 20 * S, "End": 20 * S + MS, "ExitCode": 0, "Output": "yes"}


def test_unhealthy_after_retries_consecutive_failures() -> None:
    p = probe(Retries=3)
    h = health.record(health.begin(None), result(1 * S, 0), p, started_at=0)
    for n, at in enumerate((2, 3), start=1):
        h = health.record(h, result(at * S, 2), p, started_at=0)
        assert (h["Status"], h["FailingStreak"]) == ("healthy", n)
    h = health.record(h, result(4 * S, 2), p, started_at=0)
    assert (h["Status"], h["FailingStreak"]) == ("unhealthy", 3)
    h = health.record(h, result(5 * S, 0), p, started_at=0)
    assert (h["Status"], h["FailingStreak"]) == ("healthy", 0)


def test_failures_in_the_start_period_do_not_count() -> None:
    p = probe(StartPeriod=60 * S, Retries=1)
    started = 1000 * S
    h = health.begin(None)
    for at in (5, 10, 59):
        h = health.record(h, result(started + at * S, 1), p, started_at=started)
        assert (h["Status"], h["FailingStreak"]) == ("starting", 0)
    # After the start period the first failure counts (and one is all Retries=1 allows).
    h = health.record(h, result(started + 61 * S, 1), p, started_at=started)
    assert (h["Status"], h["FailingStreak"]) == ("unhealthy", 1)


def test_a_success_ends_the_start_period_early() -> None:
    p = probe(StartPeriod=60 * S, Retries=1)
    h = health.record(health.begin(None), result(5 * S, 0), p, started_at=0)
    assert h["Status"] == "healthy"
    # Healthy once: failures count at once, start period or not (Docker's rule).
    h = health.record(h, result(6 * S, 1), p, started_at=0)
    assert (h["Status"], h["FailingStreak"]) == ("unhealthy", 1)


def test_log_keeps_five_results_and_cuts_output() -> None:
    p = probe()
    h = health.begin(None)
    for at in range(8):
        h = health.record(h, result(at * S, 0, f"run {at}"), p, started_at=0)
    assert [e["Output"] for e in h["Log"]] == [f"run {n}" for n in range(3, 8)]
    h = health.record(h, result(9 * S, 0, "x" * 10_000), p, started_at=0)
    assert len(h["Log"][-1]["Output"]) == 4096


def test_next_delay_uses_the_start_interval_while_starting() -> None:
    p = probe(Interval=30 * S, StartPeriod=20 * S, StartInterval=2 * S)
    starting = health.begin(None)
    assert health.next_delay(starting, p, started_at=0, now=5 * S) == 2 * S
    assert health.next_delay(starting, p, started_at=0, now=25 * S) == 30 * S
    healthy = {**starting, "Status": "healthy"}
    assert health.next_delay(healthy, p, started_at=0, now=5 * S) == 30 * S
    assert health.next_delay(starting, probe(), started_at=0, now=0) == 10 * S


def test_restart_resets_status_but_keeps_the_log_and_stop_is_unhealthy() -> None:
    h = health.record(health.begin(None), result(S, 0, "ok"), probe(), started_at=0)
    assert health.stopped(h)["Status"] == "unhealthy"
    again = health.begin(health.stopped(h))
    assert (again["Status"], again["FailingStreak"], len(again["Log"])) == ("starting", 0, 1)
    assert health.stopped(None) is None


# -- the scheduler ---------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000 * S
        self.sleeps: list[float] = []

    def __call__(self) -> int:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += int(seconds * S)
        await asyncio.sleep(0)


class FakeRecords:
    def __init__(self, container: Container) -> None:
        self.container = container
        self.saved = 0

    def get(self, container_id: str) -> Container | None:
        return self.container if self.container.id == container_id else None

    def save_state(self, container: Container) -> None:
        self.saved += 1


class FakeContainers:
    def __init__(self, container: Container) -> None:
        self.records = FakeRecords(container)

    async def update_state(
        self, container_id: str, change: Callable[[Container], None]
    ) -> Container | None:
        found = self.records.get(container_id)
        if found is not None:
            change(found)
            self.records.save_state(found)
        return found


def running_container(check: dict, started_at: int) -> Container:
    return Container(
        id="c" * 64,
        name="web",
        sandbox_id="c" * 64,
        config=ContainerConfig(
            image="bb", image_id="i", spec={}, args=["sleep"], extras={"healthcheck": check}
        ),
        state=ContainerState(status=Status.RUNNING, started_at=started_at),
        created_at=0,
    )


async def run_monitor(codes: list[int], check: dict) -> tuple[Container, FakeClock, list[str]]:
    """Start a monitor on a running container; each probe answers the next code, and the
    container exits after the last one."""
    clock = FakeClock()
    container = running_container(check, clock.now)
    containers = FakeContainers(container)
    answers = iter(codes)
    changes: list[str] = []
    done = asyncio.Event()

    async def runner(_c: Container, _p: Probe) -> Result:
        code = next(answers, None)
        if code is None:
            container.state.status = Status.EXITED
            done.set()
            return result(clock.now, 0)
        return result(clock.now, code, f"code {code}")

    monitor = HealthMonitor(
        containers,  # type: ignore[arg-type]
        clock=clock,
        sleep=clock.sleep,
        runner=runner,
        on_status=lambda _c, status: changes.append(status),
    )
    await monitor.after_start(container)
    await asyncio.wait_for(done.wait(), 5)
    await monitor.after_stop(container)
    return container, clock, changes


def test_monitor_runs_probes_on_schedule_and_reports_changes() -> None:
    check = {"Test": ["CMD", "check"], "Interval": 3 * S, "Retries": 2}
    container, clock, changes = asyncio.run(run_monitor([0, 1, 1, 0], check))
    # One interval before every probe (and before the one that found it exited).
    assert clock.sleeps == [3.0] * 5
    assert changes == ["healthy", "unhealthy", "healthy"]
    h = container.state.health
    assert h is not None
    assert [e["ExitCode"] for e in h["Log"]] == [0, 1, 1, 0]
    # Stopped: the monitor is gone, and Docker calls that unhealthy.
    assert h["Status"] == "unhealthy"


def test_monitor_probes_at_the_start_interval_during_the_start_period() -> None:
    check = {
        "Test": ["CMD", "check"],
        "Interval": 30 * S,
        "StartPeriod": 10 * S,
        "StartInterval": 4 * S,
        "Retries": 1,
    }
    container, clock, changes = asyncio.run(run_monitor([1, 1, 1, 1], check))
    # 4s, 8s inside the start period (failures not counted), then the interval.
    assert clock.sleeps == [4.0, 4.0, 4.0, 30.0, 30.0]
    assert changes == ["unhealthy"]
    assert container.state.health is not None


def test_monitor_ignores_containers_without_a_check() -> None:
    clock = FakeClock()
    container = running_container({"Test": ["NONE"]}, clock.now)
    monitor = HealthMonitor(FakeContainers(container), clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    asyncio.run(monitor.after_start(container))
    assert container.state.health is None and not clock.sleeps

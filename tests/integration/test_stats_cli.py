"""runtimectl stats against what the containers do: a busy loop shows CPU, a 50 MiB
allocation shows memory, 10 MB sent from one container to another (HTTP) shows on
both sides' NET I/O; --format, --no-trunc, -a, and a stream of tables."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.daemon import BIN, Daemon
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

HEADER = re.compile(
    r"^CONTAINER ID\s+NAME\s+CPU %\s+MEM USAGE / LIMIT\s+MEM %\s+NET I/O\s+BLOCK I/O\s+PIDS$"
)
_UNITS = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}  # fmt: skip
TEN_MB = 10 * 10**6
TEN_MIB = 10 * 2**20  # sent: 10 MB and then some, as the shown sizes have 3 digits
FIFTY_MIB = 50 * 2**20


def to_bytes(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.e+]+)([A-Za-z]+)", text.strip()).groups()
    return float(number) * _UNITS[unit]


def pair(text: str) -> tuple[float, float]:
    left, right = text.split(" / ")
    return to_bytes(left), to_bytes(right)


@pytest.fixture(scope="module")
def image(daemon: Daemon) -> str:
    return daemon.import_busybox("statsbox:1")


@pytest.fixture
def names(daemon: Daemon) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        daemon.ctl("rm", "-f", name)


def run(daemon: Daemon, names: list[str], name: str, image: str, script: str) -> None:
    names.append(name)
    daemon.ok("run", "-d", "--name", name, image, "sh", "-c", script)


def fields(daemon: Daemon, *args: str) -> dict[str, dict[str, str]]:
    """One --no-stream sample as {name: {field: value}}, through a JSON --format."""
    out = daemon.ok("stats", "--no-stream", "--format", "{{json .}}", *args).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    return {row["Name"]: row for row in rows}


def test_busy_loop_and_allocation_show_in_the_default_table(
    daemon: Daemon, image: str, names: list[str]
) -> None:
    run(daemon, names, "busy", image, "while :; do :; done")
    # The shell keeps the 50 MiB string in its own (anonymous) memory, and waits: it would
    # exec a last command in its place and drop the variable.
    hold = f"x=$(head -c {FIFTY_MIB} /dev/zero | tr '\\000' a)"
    run(daemon, names, "hog", image, f"{hold}; echo ready; sleep 100000 & wait")
    wait_for(lambda: "ready" in daemon.ok("logs", "hog").stdout, timeout=60)

    out = daemon.ok("stats", "--no-stream", "busy", "hog").stdout
    lines = out.splitlines()
    assert HEADER.match(lines[0]), out
    rows = {line.split()[1]: line for line in lines[1:]}
    assert set(rows) == {"busy", "hog"}, out

    sample = fields(daemon, "busy", "hog")
    busy, hog = sample["busy"], sample["hog"]
    assert float(busy["CPUPerc"].rstrip("%")) > 10, busy
    used, limit = pair(hog["MemUsage"])
    assert used >= FIFTY_MIB and limit > used, hog
    assert 0 < float(hog["MemPerc"].rstrip("%")) <= 100, hog
    assert int(hog["PIDs"]) >= 1 and int(busy["PIDs"]) >= 1
    # The short id, and what the user named the container by.
    full = daemon.ok("inspect", "-f", "{{.Id}}", "busy").stdout.strip()
    assert busy["ID"] == full[:12] and busy["Container"] == "busy"


def test_network_bytes_between_two_containers(daemon: Daemon, image: str, names: list[str]) -> None:
    serve = f"mkdir /www && head -c {TEN_MIB} /dev/zero > /www/big && exec httpd -f -p 80 -h /www"
    run(daemon, names, "web", image, serve)
    ip = json.loads(daemon.ok("inspect", "web").stdout)[0]["NetworkSettings"]["IPAddress"]
    assert ip
    before = pair(fields(daemon, "web")["web"]["NetIO"])
    # Until the server listens (it starts a moment after `run -d` returns).
    fetch = f"until wget -q -O /dev/null http://{ip}/big; do sleep 0.2; done; echo got"
    run(daemon, names, "client", image, f"{fetch}; sleep 100000")
    wait_for(lambda: "got" in daemon.ok("logs", "client").stdout, timeout=60)

    sample = fields(daemon, "web", "client")
    _, web_tx = pair(sample["web"]["NetIO"])
    client_rx, _ = pair(sample["client"]["NetIO"])
    shown = {name: row["NetIO"] for name, row in sample.items()}
    assert web_tx - before[1] >= TEN_MB, shown
    assert client_rx >= TEN_MB, shown


def test_format_no_trunc_and_all(daemon: Daemon, image: str, names: list[str]) -> None:
    names.append("idle")
    daemon.ok("create", "--name", "idle", image, "true")
    names.append("live")
    daemon.ok("run", "-d", "--name", "live", image, "sleep", "100000")
    full = daemon.ok("inspect", "-f", "{{.Id}}", "live").stdout.strip()

    running = daemon.ok("stats", "--no-stream", "--format", "{{.Name}}").stdout.split()
    assert "live" in running and "idle" not in running
    out = daemon.ok(
        "stats", "--no-stream", "-a", "--format",
        "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.MemPerc}} {{.NetIO}} {{.BlockIO}} {{.PIDs}}",
    ).stdout  # fmt: skip
    assert "idle 0.00% 0B / 0B 0.00% 0B / 0B 0B / 0B 0" in out.splitlines(), out

    out = daemon.ok("stats", "--no-stream", "--no-trunc", "--format", "{{.ID}}", "live").stdout
    assert out == full + "\n"
    out = daemon.ok(
        "stats", "--no-stream", "--format", "table {{.Container}}\t{{.PIDs}}", full[:8]
    ).stdout
    header, row = out.splitlines()
    assert header.split() == ["CONTAINER", "PIDS"] and row.split() == [full[:8], "1"]


def test_unknown_container_is_an_error(daemon: Daemon) -> None:
    result = daemon.ctl("stats", "--no-stream", "nosuchthing")
    assert result.returncode == 1 and "nosuchthing" in result.stderr
    assert result.stdout == ""


def test_stream_prints_a_table_per_second_without_escapes_off_a_terminal(
    daemon: Daemon, image: str, names: list[str]
) -> None:
    run(daemon, names, "ticker", image, "sleep 100000")
    proc = subprocess.Popen(
        [str(BIN / "runtimectl"), "-H", f"unix://{daemon.socket}", "stats", "ticker"],
        stdout=subprocess.PIPE,
        env=daemon.env,
    )
    try:
        assert proc.stdout is not None
        headers = rows = 0
        while headers < 3:
            line = proc.stdout.readline().decode()
            assert line, "the stream ended"
            assert "\033" not in line
            headers += bool(HEADER.match(line.rstrip("\n")))
            rows += line.split()[1:2] == ["ticker"]
        assert rows >= 2
    finally:
        proc.kill()
        proc.wait()

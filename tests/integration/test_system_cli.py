"""runtimectl system df and system prune on a daemon of their own: the counts and sizes
after importing, running, creating volumes and networks, and what prune removes."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.daemon import Daemon

pytestmark = pytest.mark.integration

SUMMARY_HEADER = re.compile(r"^TYPE\s+TOTAL\s+ACTIVE\s+SIZE\s+RECLAIMABLE$")
_UNITS = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9}


def to_bytes(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]+)", text).groups()
    return float(number) * _UNITS[unit]


def df(daemon: Daemon) -> dict[str, list[str]]:
    """TYPE -> [TOTAL, ACTIVE, SIZE, RECLAIMABLE...] (two-word types joined)."""
    lines = daemon.ok("system", "df").stdout.splitlines()
    assert SUMMARY_HEADER.match(lines[0]), lines
    rows = {}
    for line in lines[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells[1:]
    assert list(rows) == ["Images", "Containers", "Local Volumes", "Build Cache"], lines
    return rows


def test_df_and_prune(daemon: Daemon) -> None:
    empty = df(daemon)
    assert empty["Images"] == ["0", "0", "0B", "0B"]
    assert empty["Containers"] == ["0", "0", "0B", "0B"]
    assert empty["Local Volumes"] == ["0", "0", "0B", "0B"]
    assert empty["Build Cache"] == ["0", "0", "0B", "0B"]

    image = daemon.import_busybox("dfbox:1")
    rows = df(daemon)
    total, active, size, reclaim = rows["Images"]
    assert (total, active) == ("1", "0")
    assert to_bytes(size) > 100_000  # busybox
    assert reclaim == f"{size} (100%)"

    # A running container with a named volume; a stopped one with 1 MB in its layer.
    daemon.ok("volume", "create", "keep")
    daemon.ok("run", "-d", "--name", "up", "-v", "keep:/data", image, "sleep", "100000")
    daemon.ok("run", "--name", "down", image, "sh", "-c", "head -c 1000000 /dev/zero > /junk")
    # A stopped container's anonymous volume outlives it (rm without -v).
    daemon.ok("run", "--name", "anon", "-v", "/scratch", image,
              "sh", "-c", "head -c 2000 /dev/zero > /scratch/f")  # fmt: skip
    daemon.ok("rm", "anon")
    daemon.ok("network", "create", "spare")
    rows = df(daemon)
    assert rows["Images"][:2] == ["1", "1"]
    total, active, size, reclaim = rows["Containers"]
    assert (total, active) == ("2", "1")
    assert to_bytes(size) >= 1_000_000
    assert re.fullmatch(r"\S+ \((\d+)%\)", reclaim) and to_bytes(reclaim.split()[0]) >= 1_000_000
    total, active, size, reclaim = rows["Local Volumes"]
    assert (total, active) == ("2", "1")
    assert to_bytes(size) >= 2000
    assert to_bytes(reclaim.split()[0]) >= 2000

    verbose = daemon.ok("system", "df", "-v").stdout
    for title in (
        "Images space usage:",
        "Containers space usage:",
        "Local Volumes space usage:",
        "Build cache usage: 0B",
    ):
        assert title in verbose
    assert re.search(r"^dfbox\s+1\s+[0-9a-f]{12}\s", verbose, re.M), verbose
    assert re.search(r"^keep\s+1\s+\S+$", verbose, re.M), verbose
    assert re.search(r"\sdown$", verbose, re.M) and re.search(r"\sup$", verbose, re.M)

    # Saying no changes nothing; the prompt is docker's.
    answer = daemon.ok("system", "prune", "--volumes", input="n\n").stdout
    assert answer == (
        "WARNING! This will remove:\n"
        "  - all stopped containers\n"
        "  - all networks not used by at least one container\n"
        "  - all anonymous volumes not used by at least one container\n"
        "  - all dangling images\n"
        "  - unused build cache\n"
        "\n"
        "Are you sure you want to continue? [y/N] "
    )
    assert df(daemon)["Containers"][0] == "2"

    down_id = daemon.ok("inspect", "-f", "{{.Id}}", "down").stdout.strip()
    out = daemon.ok("system", "prune", "-f", "--volumes").stdout
    assert f"Deleted Containers:\n{down_id}\n" in out
    assert "Deleted Networks:\nspare\n" in out
    assert "Deleted Volumes:\n" in out
    reclaimed = re.search(r"^Total reclaimed space: (\S+)$", out, re.M)
    assert reclaimed and to_bytes(reclaimed.group(1)) >= 1_002_000, out
    assert daemon.ok("ps", "-aq").stdout.split() == [
        daemon.ok("inspect", "-f", "{{.Id}}", "up").stdout.strip()[:12]
    ]
    assert "spare" not in daemon.ok("network", "ls").stdout
    assert daemon.ok("volume", "ls", "-q").stdout.split() == ["keep"]
    rows = df(daemon)
    assert rows["Containers"][:2] == ["1", "1"] and rows["Local Volumes"][:2] == ["1", "1"]
    assert rows["Images"][:2] == ["1", "1"]  # in use: not even -a takes it

    # -a: images no container uses go too, once the last container is gone.
    daemon.ok("rm", "-f", "up")
    out = daemon.ok("system", "prune", "-a", "-f").stdout
    assert "Deleted Images:\nuntagged: dfbox:1\n" in out, out
    rows = df(daemon)
    assert rows["Images"] == ["0", "0", "0B", "0B"]
    assert rows["Containers"] == ["0", "0", "0B", "0B"]
    assert rows["Local Volumes"][:2] == ["1", "0"]  # named volumes stay without --volumes -a
    daemon.ok("volume", "rm", "keep")


def test_prune_filter_and_bad_filter(daemon: Daemon) -> None:
    image = daemon.import_busybox("dfbox:2")
    daemon.ok("create", "--name", "tagged", "--label", "sweep=yes", image, "true")
    daemon.ok("create", "--name", "other", image, "true")
    out = daemon.ok("system", "prune", "-f", "--filter", "label=sweep=yes").stdout
    assert "Deleted Containers:\n" in out
    names = json.loads(daemon.ok("inspect", "other").stdout)[0]["Name"]
    assert names.lstrip("/") == "other"
    assert daemon.ctl("inspect", "tagged").returncode != 0
    bad = daemon.ctl("system", "prune", "-f", "--filter", "colour=red")
    assert bad.returncode != 0 and "colour" in bad.stderr
    daemon.ok("rm", "other")

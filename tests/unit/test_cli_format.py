"""Docker's presentation rules the CLI follows."""

from __future__ import annotations

import pytest

from runtimed.cli.format import human_duration, human_size, render_template, table
from runtimed.cli.progress import PullDisplay, bar
from runtimed.errors import InvalidArgument


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1kB"),
        (4_261_550, "4.26MB"),
        (123_456_789, "123MB"),
        (1_500_000_000, "1.5GB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "Less than a second"),
        (30, "30 seconds"),
        (61, "About a minute"),
        (600, "10 minutes"),
        (3700, "About an hour"),
        (5 * 3600, "5 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_table_pads_like_tabwriter() -> None:
    out = table(["REPOSITORY", "TAG"], [["busybox", "1.36"]]).splitlines()
    assert out == ["REPOSITORY   TAG", "busybox      1.36"]


def test_templates() -> None:
    doc = {"Id": "sha256:ab", "Config": {"Cmd": ["sh", "-c"], "Env": None}}
    assert render_template("{{.Id}}", doc) == "sha256:ab"
    assert render_template("{{json .Config.Cmd}}", doc) == '["sh","-c"]'
    assert render_template("{{.Config.Cmd}}", doc) == "[sh -c]"
    with pytest.raises(InvalidArgument, match="can't evaluate field Nope"):
        render_template("{{.Nope}}", doc)


def test_progress_without_tty_prints_status_changes_only(capsys: pytest.CaptureFixture) -> None:
    import sys

    display = PullDisplay(sys.stdout, tty=False)
    display.layer("abc", "Downloading", 10, 100)
    display.layer("abc", "Downloading", 50, 100)
    display.layer("abc", "Pull complete", 0, 0)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1] == "abc: Pull complete"
    assert bar(50, 100).startswith("[" + "=" * 25 + ">")

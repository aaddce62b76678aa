"""Docker's presentation rules the CLI follows."""

from __future__ import annotations

import json

import pytest

from runtimed.cli.client import CliError
from runtimed.cli.format import (
    format_rows,
    human_duration,
    human_size,
    inspect_template,
    print_docs,
    table,
    tabwrite,
)
from runtimed.cli.images import IMAGE_HEADERS, _image_rows, short
from runtimed.cli.progress import PullDisplay, bar
from runtimed.cli.psformat import format_ps, ps_row
from runtimed.gen.runtimed.v1 import engine_pb2 as pb


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


def test_tabwrite_aligns_column_blocks_like_go() -> None:
    # A column's width holds for the block of consecutive lines that have it; a line's
    # last cell is not padded; minimum width 10, padding 3.
    text = "a\tbbbbbbbbbbbbb\tc\nlonger-first-cell\tb\nno tabs here\nx\ty\n"
    assert tabwrite(text).split("\n") == [
        "a                   bbbbbbbbbbbbb   c",
        "longer-first-cell   b",
        "no tabs here",
        "x         y",
        "",
    ]


# --- the examples of Docker's "Format command and log output" page, one test each ------------

CONTAINER = {
    "Id": "4e5021d210f6" + "0" * 52,
    "Name": "/Web_App-1",
    "Args": ["-c", "sleep 60"],
    "Image": "sha256:8135583d97fe",
    "Mounts": [
        {"Type": "volume", "Name": "data", "Source": "/v/data", "Destination": "/data",
         "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""},
    ],
    "NetworkSettings": {
        "Networks": {"web": {"IPAddress": "10.89.0.3"}, "bridge": {"IPAddress": "10.88.0.2"}},
    },
}  # fmt: skip


def inspect_output(template: str, capsys: pytest.CaptureFixture[str]) -> str:
    """What `docker inspect --format TEMPLATE container` prints."""
    assert print_docs([CONTAINER], inspect_template(template))
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def image_rows() -> list[dict[str, object]]:
    images = [
        pb.ImageSummary(id="sha256:" + "4e5021d210f6" * 5 + "abcd", repo_tags=["busybox:1.36"],
                        size=4_261_550, created=1_700_000_000),
        pb.ImageSummary(id="sha256:" + "a1b2c3d4e5f6" * 5 + "abcd",
                        repo_tags=["registry.example.com/team/app:v2"], size=123_456_789,
                        created=1_700_000_000),
    ]  # fmt: skip
    rows = list(_image_rows(images))
    for row in rows:
        row["ID"] = short(str(row["ID"]))
    return rows


def image_list(fmt: str) -> str:
    """What `docker image list --format FMT` prints for image_rows()."""
    return format_rows(
        image_rows(), fmt, type_name="*formatter.imageContext", headers=IMAGE_HEADERS
    )


def test_docs_join(capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect_output('{{join .Args " , "}}', capsys) == "-c , sleep 60\n"


def test_docs_table() -> None:
    assert image_list("table {{.ID}}\\t{{.Repository}}\\t{{.Tag}}\\t{{.Size}}") == (
        "IMAGE ID       REPOSITORY                      TAG       SIZE\n"
        "4e5021d210f6   busybox                         1.36      4.26MB\n"
        "a1b2c3d4e5f6   registry.example.com/team/app   v2        123MB\n"
    )


def test_docs_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect_output("{{json .Mounts}}", capsys) == (
        '[{"Type":"volume","Name":"data","Source":"/v/data","Destination":"/data",'
        '"Driver":"local","Mode":"z","RW":true,"Propagation":""}]\n'
    )


def test_docs_lower(capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect_output("{{lower .Name}}", capsys) == "/web_app-1\n"


def test_docs_split(capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect_output('{{split .Image ":"}}', capsys) == "[sha256 8135583d97fe]\n"


def test_docs_title(capsys: pytest.CaptureFixture[str]) -> None:
    # strings.Title: each word's first letter; "_" joins a word, "-" and "/" separate.
    CONTAINER["Name"] = "/web_app-one"
    try:
        assert inspect_output("{{title .Name}}", capsys) == "/Web_app-One\n"
    finally:
        CONTAINER["Name"] = "/Web_App-1"


def test_docs_upper(capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect_output("{{upper .Name}}", capsys) == "/WEB_APP-1\n"


def test_docs_pad() -> None:
    assert image_list("{{pad .Repository 5 10}}") == (
        "     busybox          \n     registry.example.com/team/app          \n"
    )


def test_docs_truncate() -> None:
    assert image_list("{{truncate .Repository 15}}") == "busybox\nregistry.exampl\n"


def test_docs_println(capsys: pytest.CaptureFixture[str]) -> None:
    template = "{{range .NetworkSettings.Networks}}{{println .IPAddress}}{{end}}"
    assert inspect_output(template, capsys) == "10.88.0.2\n10.89.0.3\n\n"


def test_docs_hint_json_of_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    row = ps_row(pb.ContainerSummary(id="c0ffee" + "0" * 58, name="/web", image="busybox",
                                     command="sh", state="running", status="Up 1 second",
                                     labels={"a": "1"}), trunc=True)  # fmt: skip
    line = format_ps([row], "{{json .}}", quiet=False, size=False)
    doc = json.loads(line)
    assert line.endswith("}\n") and list(doc) == sorted(doc)  # docker marshals a map
    assert doc["Names"] == "web" and doc["Labels"] == "a=1" and "Label" not in doc


# --- tables, errors ----------------------------------------------------------------------------


def test_table_headers_follow_the_template() -> None:
    # docker runs the template over the column names, with json/upper/... left out
    out = image_list("table {{upper .Repository}}:{{.Tag}}\\t{{json .Size}}").splitlines()
    assert out == [
        "REPOSITORY:TAG                     SIZE",
        'BUSYBOX:1.36                       "4.26MB"',
        'REGISTRY.EXAMPLE.COM/TEAM/APP:v2   "123MB"',
    ]
    assert image_list("table {{.ID}}") == "IMAGE ID\n4e5021d210f6\na1b2c3d4e5f6\n"


def test_ps_label_method_and_its_header() -> None:
    labels = {"com.example.team-name": "core"}
    row = ps_row(pb.ContainerSummary(id="c" * 64, name="/web", labels=labels), trunc=True)
    out = format_ps([row], 'table {{.Names}}\\t{{.Label "com.example.team-name"}}',
                    quiet=False, size=False)  # fmt: skip
    assert out == "NAMES     team name\nweb       core\n"


def test_bad_templates_end_the_command_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(CliError) as caught:
        inspect_template("{{.State.Status")
    assert (caught.value.message, caught.value.exit_code) == (
        "template parsing error: template: :1: unclosed action",
        64,
    )
    with pytest.raises(CliError) as caught:
        image_list("{{.Nope}}")
    assert caught.value.message == (
        'template parsing error: template: :1:2: executing "" at <.Nope>: '
        "can't evaluate field Nope in type *formatter.imageContext"
    )
    # inspect prints the documents it can, then one line for each it cannot
    docs = [CONTAINER, {"Name": "/other"}]
    assert not print_docs(docs, inspect_template("{{.Name}} {{len .Args}}"))
    captured = capsys.readouterr()
    assert captured.out == "/Web_App-1 2\n"
    assert captured.err == (
        'template parsing error: template: :1:16: executing "" at <.Args>: '
        'map has no entry for key "Args"\n'
    )


def test_progress_without_tty_prints_status_changes_only(capsys: pytest.CaptureFixture) -> None:
    import sys

    display = PullDisplay(sys.stdout, tty=False)
    display.layer("abc", "Downloading", 10, 100)
    display.layer("abc", "Downloading", 50, 100)
    display.layer("abc", "Pull complete", 0, 0)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1] == "abc: Pull complete"
    assert bar(50, 100).startswith("[" + "=" * 25 + ">")


@pytest.mark.parametrize(
    ("field", "header"),
    [("Name", "NAME"), ("CreatedAt", "CREATED AT"), ("ID", "ID"), ("IPv6", "IPV6")],
)
def test_headers_derived_from_field_names(field: str, header: str) -> None:
    rows = [{field: "x"}]
    assert format_rows(rows, "table {{." + field + "}}", type_name="t").splitlines()[0] == header

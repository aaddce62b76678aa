"""Go templates through runtimectl: inspect -f, ps/ls --format tables, info and version."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from runtimed import __version__
from tests.support.daemon import Daemon

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def image(daemon: Daemon) -> str:
    return daemon.import_busybox("bb:tmpl")


@pytest.fixture(scope="module")
def web(daemon: Daemon, image: str) -> Iterator[str]:
    """A running container with two labels, on the default bridge network."""
    daemon.ok(
        "run", "-d", "--name", "tmpl-web", "--label", "b=2", "--label", "a=1",
        image, "sleep", "300",
    )  # fmt: skip
    yield "tmpl-web"
    daemon.ctl("rm", "-f", "tmpl-web")


def test_inspect_ranges_over_networks_and_labels(daemon: Daemon, web: str) -> None:
    doc = json.loads(daemon.ok("inspect", web).stdout)[0]
    ip = doc["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ip)
    networks = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    assert daemon.ok("inspect", "-f", networks, web).stdout == ip + "\n"

    labels = daemon.ok(
        "inspect", "-f", "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", web
    )
    assert (
        labels.stdout
        == "".join(f"{k}={v};" for k, v in sorted(doc["Config"]["Labels"].items())) + "\n"
    )
    assert "a=1;b=2;" in labels.stdout

    mixed = daemon.ok(
        "container", "inspect", "--format",
        '{{.State.Status}} {{if .State.Running}}up{{end}} [{{index .Config.Labels "nope"}}] '
        "{{json .Config.Labels.a}} {{len .Name | printf \"%03d\"}}",
        web,
    )  # fmt: skip
    assert mixed.stdout == f'running up [] "1" {len(doc["Name"]):03d}\n'


def test_bad_inspect_templates_are_one_line_and_an_exit_code(daemon: Daemon, web: str) -> None:
    unclosed = daemon.ctl("inspect", "-f", "{{.State.Status", web)
    assert (unclosed.returncode, unclosed.stdout, unclosed.stderr) == (
        64,
        "",
        "template parsing error: template: :1: unclosed action\n",
    )
    nofunc = daemon.ctl("inspect", "-f", "{{foo .Name}}", web)
    assert nofunc.returncode == 64
    assert nofunc.stderr == 'template parsing error: template: :1: function "foo" not defined\n'
    missing = daemon.ctl("inspect", "-f", "{{.State.Nope}}", web)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == (
        'template parsing error: template: :1:8: executing "" at <.State.Nope>: '
        'map has no entry for key "Nope"\n'
    )


def test_ps_table_template(daemon: Daemon, web: str) -> None:
    out = daemon.ok("ps", "--filter", f"name={web}", "--format", "table {{.Names}}\\t{{.Status}}")
    lines = out.stdout.splitlines()
    assert lines[0] == "NAMES      STATUS"  # tmpl-web (8) + 3 columns of padding
    assert len(lines) == 2 and re.fullmatch(r"tmpl-web   Up .+", lines[1])
    labelled = daemon.ok(
        "ps", "--filter", f"name={web}", "--format", '{{.Label "b"}}{{.Label "x"}}'
    )
    assert labelled.stdout == "2\n"
    bad = daemon.ctl("ps", "--format", "{{.Names")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == "failed to parse template: template: :1: unclosed action\n"


def test_list_and_system_commands_take_templates(daemon: Daemon, web: str) -> None:
    nets = daemon.ok("network", "ls", "--format", "table {{.Name}}\\t{{upper .Driver}}").out_lines
    assert nets[0] == "NAME      DRIVER" and "bridge    BRIDGE" in nets
    daemon.ok("volume", "create", "--label", "team=core", "tmpl-vol")
    try:
        vols = daemon.ok(
            "volume", "ls", "--filter", "name=tmpl-vol", "--format", "table {{.Name}}\\t{{.Labels}}"
        ).out_lines
        assert vols == ["VOLUME NAME   LABELS", "tmpl-vol      team=core"]
        labels = daemon.ok(
            "volume", "inspect", "-f", "{{range $k, $v := .Labels}}{{$k}}:{{$v}}{{end}}", "tmpl-vol"
        )
        assert labels.stdout == "team:core\n"
    finally:
        daemon.ctl("volume", "rm", "tmpl-vol")
    images = daemon.ok("images", "--format", "{{.Repository}}:{{.Tag}}").out_lines
    assert "bb:tmpl" in images
    info = daemon.ok("info", "--format", "{{.ContainersRunning}} {{json .Rootless}}").stdout
    assert re.fullmatch(r"[1-9]\d* (true|false)\n", info)
    version = daemon.ok("version", "--format", "{{.Client.Version}} {{.Server.Version}}").stdout
    assert version == f"{__version__} {__version__}\n"
    bad = daemon.ctl("info", "--format", "{{.Nope}}")
    assert bad.returncode == 1
    assert bad.stderr == (
        'template: :1:2: executing "" at <.Nope>: can\'t evaluate field Nope in type '
        "system.dockerInfo\n"
    )

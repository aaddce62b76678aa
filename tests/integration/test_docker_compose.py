"""docker-compose (Debian's 1.29, on docker-py) against runtimed's Docker API: two services
that find each other by name on the project's network, and a named volume."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.daemon import CliResult, Daemon
from tests.support.dockercli import DockerCli, require
from tests.support.images import ImageScenario, push_busybox
from tests.support.registry import Registry
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

COMPOSE_FILE = """\
version: "3.8"
services:
  web:
    image: {image}
    command: ["sh", "-c", "echo served-by-web > /www/index.html && exec httpd -f -p 80 -h /www"]
    volumes:
      - content:/www
  client:
    image: {image}
    depends_on: [web]
    command:
      - sh
      - -c
      - for i in $$(seq 30); do wget -qO- http://web/ && exit 0; sleep 1; done; exit 1
volumes:
  content:
"""


def _compose(daemon: Daemon, project: Path, *args: str) -> CliResult:
    docker = DockerCli(daemon)
    proc = subprocess.run(
        [require("docker-compose"), "--ansi", "never", *args],
        cwd=project,
        capture_output=True,
        timeout=300,
        env={**docker.env, "COMPOSE_PROJECT_NAME": "demo"},
    )
    return CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.fixture(scope="module")
def busybox(registry: Registry) -> ImageScenario:
    return push_busybox(registry)


def test_compose_up_ps_logs_down(daemon: Daemon, busybox: ImageScenario) -> None:
    docker = DockerCli(daemon)
    docker.ok("pull", busybox.ref)
    project = daemon.root / "compose-demo"
    project.mkdir()
    (project / "docker-compose.yml").write_text(COMPOSE_FILE.format(image=busybox.ref))

    up = _compose(daemon, project, "up", "-d")
    assert up.returncode == 0, up.stderr
    assert 'Creating network "demo_default"' in up.stderr
    assert 'Creating volume "demo_content"' in up.stderr
    assert "Creating demo_web_1" in up.stderr and "Creating demo_client_1" in up.stderr

    def client_done() -> bool:
        state = docker("inspect", "-f", "{{.State.Status}}", "demo_client_1").stdout
        return state.strip() == "exited"

    wait_for(client_done, timeout=60, what="the client service to finish")
    code = docker.ok("inspect", "-f", "{{.State.ExitCode}}", "demo_client_1").stdout
    assert code == "0\n"
    ps = _compose(daemon, project, "ps")
    assert ps.returncode == 0, ps.stderr
    rows = {line.split()[0]: line for line in ps.stdout.splitlines()[2:]}
    assert set(rows) == {"demo_client_1", "demo_web_1"}
    assert "Up" in rows["demo_web_1"] and "Exit 0" in rows["demo_client_1"]
    logs = _compose(daemon, project, "logs", "client")
    assert logs.returncode == 0, logs.stderr
    assert "served-by-web" in logs.stdout
    volumes = docker.ok("volume", "ls", "-q").stdout.split()
    assert "demo_content" in volumes

    down = _compose(daemon, project, "down", "-v")
    assert down.returncode == 0, down.stderr
    assert "Removing demo_web_1" in down.stderr and "Removing network demo_default" in down.stderr
    assert "Removing volume demo_content" in down.stderr
    assert docker.ok("ps", "-aq").stdout == ""
    assert "demo_content" not in docker.ok("volume", "ls", "-q").stdout.split()
    assert "demo_default" not in docker.ok("network", "ls", "--format", "{{.Name}}").stdout

"""`--link NAME:ALIAS` on the default bridge, through runtimectl: docker's link variables in
the linking container, and docker's refusal to link to a container that is not running."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon

pytestmark = pytest.mark.integration

MAKE_ROOTFS = Path(__file__).resolve().parents[2] / "deploy" / "make-busybox-rootfs.sh"


@pytest.fixture(scope="module")
def image(daemon: Daemon) -> str:
    """busybox that EXPOSEs a run of two TCP ports and sets a variable of its own."""
    tarball = daemon.root / "linkbox.tar"
    subprocess.run([str(MAKE_ROOTFS), str(tarball)], check=True)
    daemon.ok(
        "import", "-c", 'CMD ["/bin/sh"]', "-c", "EXPOSE 80 81", "-c", "ENV FROM_IMAGE=yes",
        str(tarball), "linkbox:1",
    )  # fmt: skip
    return "linkbox:1"


@pytest.fixture
def names(daemon: Daemon) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in reversed(made):
        daemon.ctl("rm", "-f", name)


def env_of(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def test_link_variables_name_the_targets_ports_name_and_environment(
    daemon: Daemon, image: str, names: list[str]
) -> None:
    names += ["db", "web", "web2"]
    daemon.ok("run", "-d", "--name", "db", "-e", "DB_PASSWORD=s3cret", "-e", "EMPTY=",
              "-p", "127.0.0.1::9000", image, "sleep", "300")  # fmt: skip
    doc = json.loads(daemon.ok("inspect", "db").stdout)[0]
    ip = doc["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    assert ip
    out = daemon.ok("run", "--name", "web", "--link", "db:my-db", image, "env").stdout
    env = env_of(out)
    assert env["MY_DB_PORT"] == f"tcp://{ip}:80"
    for port in (80, 81, 9000):  # the image's EXPOSE and the container's own -p
        assert env[f"MY_DB_PORT_{port}_TCP"] == f"tcp://{ip}:{port}"
        assert env[f"MY_DB_PORT_{port}_TCP_ADDR"] == ip
        assert env[f"MY_DB_PORT_{port}_TCP_PORT"] == str(port)
        assert env[f"MY_DB_PORT_{port}_TCP_PROTO"] == "tcp"
    assert env["MY_DB_PORT_80_TCP_START"] == f"tcp://{ip}:80"
    assert env["MY_DB_PORT_80_TCP_PORT_START"] == "80"
    assert env["MY_DB_PORT_80_TCP_END"] == f"tcp://{ip}:81"
    assert env["MY_DB_PORT_80_TCP_PORT_END"] == "81"
    assert env["MY_DB_NAME"] == "/web/my-db"
    assert env["MY_DB_ENV_DB_PASSWORD"] == "s3cret"
    assert env["MY_DB_ENV_EMPTY"] == ""
    assert env["MY_DB_ENV_FROM_IMAGE"] == "yes"
    assert "MY_DB_ENV_PATH" not in env and "MY_DB_ENV_HOME" not in env
    # The hosts entry links made before still comes with them.
    hosts = daemon.ok("run", "--rm", "--link", "db", image, "cat", "/etc/hosts").stdout
    assert any(line.split()[:2] == [ip, "db"] for line in hosts.splitlines()), hosts
    # Without an alias the name is the prefix; the container's own -e wins over a link's.
    out = daemon.ok(
        "run", "--name", "web2", "--link", "db", "-e", "DB_NAME=mine", image, "env"
    ).stdout  # fmt: skip
    env = env_of(out)
    assert env["DB_PORT_80_TCP_ADDR"] == ip
    assert env["DB_NAME"] == "mine"
    # Exec'd processes see them too, as in docker.
    names.append("web3")
    daemon.ok("run", "-d", "--name", "web3", "--link", "db:d", image, "sleep", "300")
    assert env_of(daemon.ok("exec", "web3", "env").stdout)["D_NAME"] == "/web3/d"


def test_linking_to_a_container_that_is_not_running_is_refused_at_start(
    daemon: Daemon, image: str, names: list[str]
) -> None:
    names += ["idle", "linker"]
    daemon.ok("create", "--name", "idle", image, "sleep", "300")
    refused = daemon.ctl("run", "--name", "linker", "--link", "idle:peer", image, "true")
    assert refused.returncode == 125, refused
    assert "Cannot link to a non running container: /idle AS /linker/peer" in refused.stderr
    assert "Traceback" not in refused.stderr
    doc = json.loads(daemon.ok("inspect", "linker").stdout)[0]
    assert doc["State"]["Running"] is False
    # Once the target runs, the same container starts; once it stops, it is refused again.
    daemon.ok("start", "idle")
    daemon.ok("start", "-a", "linker")
    daemon.ok("stop", "-t", "0", "idle")
    again = daemon.ctl("start", "linker")
    assert again.returncode != 0
    assert "Cannot link to a non running container: /idle AS /linker/peer" in again.stderr

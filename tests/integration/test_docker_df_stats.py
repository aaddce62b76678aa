"""`docker system df` and `docker stats` (and docker-py's container.stats) against
runtimed's Docker API: /system/df and /containers/{id}/stats."""

from __future__ import annotations

import re
from collections.abc import Iterator

import docker
import pytest

from tests.support.daemon import Daemon
from tests.support.dockercli import DockerCli, docker_socket
from tests.support.images import ImageScenario, push_busybox
from tests.support.registry import Registry

pytestmark = pytest.mark.integration

BUSY = ["sh", "-c", "while :; do :; done"]


@pytest.fixture(scope="module")
def busybox(registry: Registry) -> ImageScenario:
    return push_busybox(registry)


@pytest.fixture(scope="module")
def docker_cli(daemon: Daemon, busybox: ImageScenario) -> DockerCli:
    cli = DockerCli(daemon)
    cli.ok("pull", busybox.ref)
    return cli


@pytest.fixture
def clean(docker_cli: DockerCli) -> Iterator[None]:
    yield
    ids = docker_cli("ps", "-aq").stdout.split()
    if ids:
        docker_cli("rm", "-f", *ids)
    for name in docker_cli("volume", "ls", "-q").stdout.split():
        docker_cli("volume", "rm", name)


def test_system_df_counts(docker_cli: DockerCli, busybox: ImageScenario, clean: None) -> None:
    empty = docker_cli.ok("system", "df", "--format", "{{.Type}}={{.TotalCount}}/{{.Active}}")
    assert empty.stdout.splitlines() == [
        "Images=1/0",
        "Containers=0/0",
        "Local Volumes=0/0",
        "Build Cache=0/0",
    ]
    docker_cli.ok("volume", "create", "dfvol")
    docker_cli.ok("run", "-d", "--name", "dfbox", "-v", "dfvol:/d", busybox.ref, "sleep", "300")
    docker_cli.ok("create", "--name", "idle", busybox.ref, "true")
    docker_cli.ok("volume", "create", "spare")
    table = docker_cli.ok("system", "df").stdout.splitlines()
    assert table[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line) for line in table[1:])}
    assert rows["Images"][:2] == ["1", "1"]
    assert rows["Containers"][:2] == ["2", "1"]
    assert rows["Local Volumes"][:2] == ["2", "1"]
    assert rows["Build Cache"][:2] == ["0", "0"]
    # The image's size is its unpacked layers: busybox is some hundreds of kB at least.
    assert re.fullmatch(r"[\d.]+(kB|MB)", rows["Images"][2])
    verbose = docker_cli.ok("system", "df", "-v").stdout
    assert "dfbox" in verbose and "idle" in verbose and "dfvol" in verbose


def test_stats_no_stream_of_a_busy_container(
    docker_cli: DockerCli, busybox: ImageScenario, clean: None
) -> None:
    docker_cli.ok("run", "-d", "--name", "spin", busybox.ref, *BUSY)
    out = docker_cli.ok(
        "stats", "--no-stream", "--format", "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}", "spin"
    )
    name, cpu, mem = out.stdout.strip().split("|")
    assert name == "spin"
    assert float(cpu.rstrip("%")) > 0
    used, limit = (part.strip() for part in mem.split("/"))
    assert re.fullmatch(r"[\d.]+[KMG]iB", used) and not used.startswith("0B")
    assert re.fullmatch(r"[\d.]+[KMG]iB", limit)
    io = docker_cli.ok("stats", "--no-stream", "--format", "{{.NetIO}}|{{.PIDs}}", "spin")
    net, pids = io.stdout.strip().split("|")
    assert re.fullmatch(r"[\d.]+k?B / [\d.]+k?B", net)
    assert int(pids) >= 1
    table = docker_cli.ok("stats", "--no-stream", "spin").stdout.splitlines()
    assert table[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert table[1].split()[1] == "spin"


def test_stats_unknown_container(docker_cli: DockerCli) -> None:
    missing = docker_cli("stats", "--no-stream", "nosuch")
    assert missing.returncode == 1 and "nosuch" in missing.stderr


def test_docker_py_stats(daemon: Daemon, busybox: ImageScenario, clean: None) -> None:
    client = docker.DockerClient(base_url=f"unix://{docker_socket(daemon)}", timeout=120)
    try:
        client.images.pull(busybox.ref)
        box = client.containers.run(busybox.ref, BUSY, detach=True, name="pyspin")
        doc = box.stats(stream=False)
        for key in (
            "read",
            "preread",
            "pids_stats",
            "blkio_stats",
            "num_procs",
            "storage_stats",
            "cpu_stats",
            "precpu_stats",
            "memory_stats",
            "name",
            "id",
            "networks",
        ):
            assert key in doc, key
        assert doc["name"] == "/pyspin" and doc["id"] == box.id
        cpu, pre = doc["cpu_stats"], doc["precpu_stats"]
        assert cpu["cpu_usage"]["total_usage"] > pre["cpu_usage"]["total_usage"] > 0
        assert cpu["system_cpu_usage"] > pre["system_cpu_usage"] > 0
        assert cpu["online_cpus"] >= 1
        assert 0 < doc["memory_stats"]["usage"] < doc["memory_stats"]["limit"]
        assert doc["pids_stats"]["current"] >= 1
        assert set(doc["networks"]["eth0"]) >= {"rx_bytes", "tx_bytes"}
        once = box.stats(stream=False, one_shot=True)
        assert once["preread"] == "0001-01-01T00:00:00Z"
        assert once["cpu_stats"]["cpu_usage"]["total_usage"] > 0
        streamed = box.stats(stream=True, decode=True)
        first, second = next(streamed), next(streamed)
        assert second["precpu_stats"]["cpu_usage"] == first["cpu_stats"]["cpu_usage"]
        streamed.close()
    finally:
        for c in client.containers.list(all=True):
            c.remove(force=True)
        client.close()

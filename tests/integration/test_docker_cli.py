"""The docker CLI against runtimed's Docker API (DOCKER_HOST=unix://.../docker.sock).

Every command's output is asserted, as a user would read it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.daemon import Daemon
from tests.support.dockercli import DockerCli, PtyClient, docker_socket, free_port
from tests.support.images import ImageScenario, push_busybox
from tests.support.oci import File, Layer, build_image
from tests.support.registry import Registry, push
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def busybox(registry: Registry) -> ImageScenario:
    return push_busybox(registry)


@pytest.fixture(scope="module")
def docker(daemon: Daemon, busybox: ImageScenario) -> DockerCli:
    cli = DockerCli(daemon)
    cli.ok("pull", busybox.ref)
    return cli


@pytest.fixture
def clean(docker: DockerCli) -> Iterator[None]:
    yield
    ids = docker("ps", "-aq").stdout.split()
    if ids:
        docker("rm", "-f", *ids)


def _raw(daemon: Daemon, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """One request on the Docker API socket, read to the end (Connection: close)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(docker_socket(daemon)))
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def test_socket_is_private(daemon: Daemon) -> None:
    assert docker_socket(daemon).stat().st_mode & 0o777 == 0o600


def test_version_and_info(docker: DockerCli, daemon: Daemon) -> None:
    out = docker.ok("version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}").stdout
    assert out == "1.50 linux\n"
    info = docker.ok("info", "--format", "{{.Driver}}|{{.OSType}}|{{.DockerRootDir}}").stdout
    assert info == f"overlay|linux|{daemon.data_dir}\n"


def test_errors_are_docker_json(daemon: Daemon) -> None:
    status, headers, body = _raw(daemon, "GET", "/v1.50/no/such/endpoint")
    assert status == 404 and json.loads(body) == {"message": "page not found"}
    status, _, body = _raw(daemon, "GET", "/v1.99/_ping")
    assert status == 400
    assert json.loads(body)["message"].startswith("client version 1.99 is too new")
    status, _, body = _raw(daemon, "GET", "/v1.41/containers/nosuch/json")
    assert (status, json.loads(body)) == (404, {"message": "No such container: nosuch"})
    status, _, body = _raw(daemon, "GET", "/system/df?type=nosuch")
    assert (status, json.loads(body)) == (400, {"message": "unknown object type: nosuch"})
    status, headers, body = _raw(daemon, "HEAD", "/_ping")
    assert (status, body) == (200, b"")
    assert headers["api-version"] == "1.50" and headers["ostype"] == "linux"


def test_pull_prints_docker_progress(docker: DockerCli, registry: Registry) -> None:
    layers = [Layer([File("etc/first", b"1\n")]), Layer([File("etc/second", b"2\n")])]
    image = push(registry, "test/fresh", "1", build_image(layers))
    out = docker.ok("pull", image.ref).stdout
    assert "1: Pulling from test/fresh" in out
    for layer in layers:
        assert f"{layer.digest.removeprefix('sha256:')[:12]}: Pull complete" in out
    assert "Digest: sha256:" in out
    assert f"Status: Downloaded newer image for {image.ref}" in out
    assert out.rstrip().endswith(image.ref)
    again = docker.ok("pull", image.ref).stdout
    assert f"Status: Image is up to date for {image.ref}" in again
    images = docker.ok("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert image.ref in images
    missing = docker("pull", f"{registry.host}/library/nosuch:1")
    assert missing.returncode == 1
    assert "Error response from daemon" in missing.stderr and "nosuch" in missing.stderr
    docker.ok("rmi", image.ref)
    assert image.ref not in docker.ok("images", "--format", "{{.Repository}}:{{.Tag}}").stdout


def test_run_exit_codes(docker: DockerCli, busybox: ImageScenario, clean: None) -> None:
    ok = docker("run", "--rm", busybox.ref, "echo", "hi")
    assert (ok.returncode, ok.stdout) == (0, "hi\n")
    assert docker("run", "--rm", busybox.ref, "sh", "-c", "exit 3").returncode == 3
    missing = docker("run", "--rm", busybox.ref, "nosuchcmd")
    assert missing.returncode == 127
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in missing.stderr
    directory = docker("run", "--rm", busybox.ref, "/etc")
    assert directory.returncode == 126 and "permission denied" in directory.stderr
    refused = docker("run", "--rm", "--device", "/dev/null", busybox.ref, "true")
    assert refused.returncode == 125
    assert "HostConfig.Devices is not supported by runtimed" in refused.stderr
    assert docker.ok("ps", "-aq").stdout == ""  # --rm left nothing behind
    piped = docker("run", "--rm", "-i", busybox.ref, "tr", "a-z", "A-Z", input="shout\n")
    assert (piped.returncode, piped.stdout) == (0, "SHOUT\n")


def test_run_detached_with_published_port(
    docker: DockerCli, busybox: ImageScenario, clean: None
) -> None:
    port = free_port()
    cid = docker.ok(
        "run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", busybox.ref,
        "busybox", "httpd", "-f", "-p", "80", "-h", "/etc",
    ).stdout.strip()  # fmt: skip
    assert len(cid) == 64

    def fetch() -> bytes:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=2) as r:
                return r.read()
        except OSError:
            return b""

    wait_for(fetch, what="httpd on the published port")
    assert fetch() == (cid[:12] + "\n").encode()
    ps = docker.ok("ps", "--format", "{{.Names}}|{{.Ports}}|{{.Status}}").stdout
    name, ports, status = ps.strip().split("|")
    assert name == "web" and f"127.0.0.1:{port}->80/tcp" in ports and status.startswith("Up")
    assert docker.ok("port", "web").stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"
    fmt = "{{.State.Status}} {{.Name}} {{index .Config.Cmd 1}}"
    assert docker.ok("inspect", "-f", fmt, "web").stdout == "running /web httpd\n"
    stop = docker.ok("stop", "web")
    assert stop.stdout == "web\n"
    assert docker.ok("inspect", "-f", "{{.State.Status}}", "web").stdout == "exited\n"
    assert docker.ok("rm", "web").stdout == "web\n"
    gone = docker("inspect", "web")
    assert gone.returncode == 1 and "No such object: web" in gone.stderr


def test_ps_logs_follow_and_tail(docker: DockerCli, busybox: ImageScenario, clean: None) -> None:
    docker.ok(
        "run", "-d", "--name", "talker", busybox.ref,
        "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; sleep 4; echo last",
    )  # fmt: skip
    docker.ok("run", "-d", "--name", "quiet", busybox.ref, "sh", "-c", "echo to-err >&2")
    wait_for(
        lambda: docker("inspect", "-f", "{{.State.Status}}", "quiet").stdout == "exited\n",
        what="quiet to exit",
    )
    assert docker.ok("ps", "--format", "{{.Names}}").stdout == "talker\n"
    names = docker.ok("ps", "-a", "--format", "{{.Names}} {{.Image}}").stdout.splitlines()
    assert sorted(names) == [f"quiet {busybox_ref(docker)}", f"talker {busybox_ref(docker)}"]
    exited = docker.ok("ps", "-a", "--filter", "status=exited", "--format", "{{.Status}}")
    assert exited.stdout.startswith("Exited (0)")
    wait_for(lambda: "line5" in docker("logs", "talker").stdout, what="the first lines")
    tail = docker.ok("logs", "--tail", "2", "talker")
    assert (tail.stdout, tail.stderr) == ("line4\nline5\n", "")
    separate = docker.ok("logs", "quiet")
    assert (separate.stdout, separate.stderr) == ("", "to-err\n")
    follow = docker.ok("logs", "-f", "--tail", "1", "talker", timeout=30)
    assert follow.stdout == "line5\nlast\n"
    stamped = docker.ok("logs", "-t", "--tail", "1", "talker").stdout
    assert stamped.endswith(" last\n") and stamped[:4].isdigit() and "T" in stamped[:20]


def busybox_ref(docker: DockerCli) -> str:
    return docker.ok("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()[0]


def test_run_it_detach_and_attach_again(
    docker: DockerCli, busybox: ImageScenario, clean: None
) -> None:
    term = PtyClient(
        [docker.binary, "run", "-it", "--name", "shell", busybox.ref, "sh"], docker.env
    )
    term.expect("# ")
    term.type("echo $((6 * 7))\r")
    term.expect("42")
    term.type(b"\x10\x11")  # ctrl-p ctrl-q
    assert term.close() == 0
    assert docker.ok("inspect", "-f", "{{.State.Running}}", "shell").stdout == "true\n"
    again = PtyClient([docker.binary, "attach", "shell"], docker.env)
    again.type("echo back-$((1 + 1))\r")
    again.expect("back-2")
    again.type("exit 4\r")
    assert again.close() == 4
    assert docker.ok("inspect", "-f", "{{.State.ExitCode}}", "shell").stdout == "4\n"


def test_exec(docker: DockerCli, busybox: ImageScenario, clean: None) -> None:
    docker.ok("run", "-d", "--name", "box", busybox.ref, "sleep", "300")
    out = docker.ok("exec", "box", "sh", "-c", "echo out; echo err >&2")
    assert (out.stdout, out.stderr) == ("out\n", "err\n")
    assert docker("exec", "box", "sh", "-c", "exit 7").returncode == 7
    assert docker("exec", "box", "nosuch").returncode == 127
    piped = docker("exec", "-i", "box", "wc", "-c", input="12345")
    assert piped.stdout.strip() == "5"
    term = PtyClient([docker.binary, "exec", "-it", "box", "sh"], docker.env, rows=33, cols=101)
    term.expect("# ")
    term.type("busybox stty size; echo in-$((2 + 3))\r")
    term.expect("33 101")
    term.expect("in-5")
    term.type("exit 5\r")
    assert term.close() == 5
    detached = docker("exec", "-d", "box", "sh", "-c", "echo made > /tmp/detached")
    assert detached.returncode == 0
    wait_for(lambda: docker("exec", "box", "cat", "/tmp/detached").stdout == "made\n")
    stopped = docker("exec", "quiet-nonexistent", "true")
    assert stopped.returncode == 1 and "No such container: quiet-nonexistent" in stopped.stderr


def test_cp_both_ways(
    docker: DockerCli, busybox: ImageScenario, daemon: Daemon, clean: None
) -> None:
    docker.ok("run", "-d", "--name", "files", busybox.ref, "sleep", "300")
    local = daemon.root / "cp-in"
    local.mkdir()
    (local / "a.txt").write_text("alpha\n")
    (local / "sub").mkdir()
    (local / "sub" / "b.txt").write_text("beta\n")
    docker.ok("cp", str(local / "a.txt"), "files:/tmp/")
    docker.ok("cp", str(local), "files:/srv")
    assert (
        docker.ok("exec", "files", "cat", "/tmp/a.txt", "/srv/sub/b.txt").stdout == "alpha\nbeta\n"
    )
    out = daemon.root / "cp-out"
    docker.ok("cp", "files:/srv", str(out))
    assert (out / "sub" / "b.txt").read_text() == "beta\n"
    docker.ok("cp", "files:/etc/motd", str(daemon.root / "motd"))
    assert (daemon.root / "motd").read_bytes() == b"welcome to the runtimed test image\n"
    missing = docker("cp", "files:/nope", str(daemon.root / "x"))
    assert missing.returncode == 1 and "Could not find the file /nope" in missing.stderr


def test_stop_and_rm_f(docker: DockerCli, busybox: ImageScenario, clean: None) -> None:
    docker.ok("run", "-d", "--name", "stubborn", busybox.ref, "sh", "-c", "trap '' TERM; sleep 300")
    running = docker("rm", "stubborn")
    assert running.returncode == 1 and "container is running" in running.stderr
    assert docker.ok("stop", "-t", "1", "stubborn").stdout == "stubborn\n"
    assert docker.ok("inspect", "-f", "{{.State.ExitCode}}", "stubborn").stdout == "137\n"
    assert docker.ok("start", "stubborn").stdout == "stubborn\n"
    assert docker.ok("rm", "-f", "stubborn").stdout == "stubborn\n"
    assert docker.ok("ps", "-aq").stdout == ""


def test_networks(docker: DockerCli, busybox: ImageScenario, clean: None) -> None:
    net_id = docker.ok("network", "create", "--label", "team=a", "appnet").stdout.strip()
    assert len(net_id) == 64
    try:
        fmt = "{{.Name}} {{.Driver}} {{.Labels.team}}"
        assert docker.ok("network", "inspect", "-f", fmt, "appnet").stdout == "appnet bridge a\n"
        listed = docker.ok("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert {"appnet", "bridge", "host", "none"} <= set(listed)
        docker.ok(
            "run", "-d", "--name", "srv", "--network", "appnet", busybox.ref,
            "sh", "-c", "echo from-srv > /tmp/index.html; httpd -f -p 80 -h /tmp",
        )  # fmt: skip
        docker.ok("run", "-d", "--name", "cli", "--network", "appnet", busybox.ref, "sleep", "300")
        fetch = "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://srv/ && exit; sleep 1; done"
        assert docker.ok("exec", "cli", "sh", "-c", fetch).stdout == "from-srv\n"
        docker.ok("run", "-d", "--name", "joiner", busybox.ref, "sleep", "300")
        docker.ok("network", "connect", "--alias", "friend", "appnet", "joiner")
        members = docker.ok(
            "network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", "appnet"
        ).stdout.split()
        assert sorted(members) == ["cli", "joiner", "srv"]
        fmt = "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}"
        assert docker.ok("inspect", "-f", fmt, "joiner").stdout.split() == ["appnet", "bridge"]
        busy = docker("network", "rm", "appnet")
        assert busy.returncode == 1
        docker.ok("network", "disconnect", "appnet", "joiner")
        assert docker.ok("inspect", "-f", fmt, "joiner").stdout.split() == ["bridge"]
    finally:
        docker("rm", "-f", "srv", "cli", "joiner")
        removed = docker("network", "rm", "appnet")
    assert removed.stdout == "appnet\n"
    gone = docker("network", "inspect", "appnet")
    assert gone.returncode == 1 and "network appnet not found" in gone.stderr


def test_volumes(docker: DockerCli, busybox: ImageScenario, clean: None) -> None:
    assert docker.ok("volume", "create", "--label", "k=v", "data").stdout == "data\n"
    listed = docker.ok("volume", "ls", "--format", "{{.Name}} {{.Driver}}").stdout
    assert "data local\n" in listed
    docker.ok("run", "--rm", "-v", "data:/d", busybox.ref, "sh", "-c", "echo kept > /d/f")
    assert (
        docker.ok("run", "--rm", "-v", "data:/d:ro", busybox.ref, "cat", "/d/f").stdout == "kept\n"
    )
    fmt = "{{.Name}} {{.Labels.k}} {{.Scope}}"
    assert docker.ok("volume", "inspect", "-f", fmt, "data").stdout == "data v local\n"
    assert docker.ok("volume", "rm", "data").stdout == "data\n"
    assert "data" not in docker.ok("volume", "ls", "-q").stdout.split()


def test_container_lifecycle_verbs(docker: DockerCli, busybox: ImageScenario, clean: None) -> None:
    cid = docker.ok("create", "--name", "life", busybox.ref, "sleep", "300").stdout.strip()
    assert docker.ok("ps", "-a", "--filter", "status=created", "-q").stdout.strip() == cid[:12]
    assert docker.ok("start", "life").stdout == "life\n"
    top = docker.ok("top", "life").stdout
    assert "sleep 300" in top
    assert docker.ok("rename", "life", "life2").stdout == ""
    assert docker.ok("restart", "-t", "1", "life2").stdout == "life2\n"
    assert docker.ok("kill", "life2").stdout == "life2\n"
    wait = docker.ok("wait", "life2", timeout=30).stdout
    assert wait == "137\n"
    not_running = docker("kill", "life2")
    assert not_running.returncode == 1 and "is not running" in not_running.stderr
    pruned = docker.ok("container", "prune", "-f").stdout
    assert cid in pruned
    assert docker.ok("ps", "-aq").stdout == ""


def test_events_filtered(docker: DockerCli, busybox: ImageScenario, clean: None) -> None:
    fmt = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"
    watcher = subprocess.Popen(
        [docker.binary, "events", "--filter", "type=container", "--filter", "event=start",
         "--filter", "event=die", "--format", fmt],
        stdout=subprocess.PIPE,
        env=docker.env,
    )  # fmt: skip
    try:
        # The subscription is live once `docker events` got its answer's head: a first run
        # may come before; the second one, after it was seen to start, is heard whole.
        docker.ok("run", "--rm", "--name", "evt-early", busybox.ref, "true")
        docker.ok("run", "--rm", "--name", "evt", busybox.ref, "true")
        assert watcher.stdout is not None
        lines = []
        while "container die evt" not in lines:
            line = watcher.stdout.readline().decode().strip()
            assert line, f"docker events ended early; saw {lines}"
            lines.append(line)
        assert lines[-2:] == ["container start evt", "container die evt"]
        assert all(line.split()[1] in ("start", "die") for line in lines)
    finally:
        watcher.terminate()
        watcher.wait(10)
    # --until 0s is "now" in whole seconds (the CLI's rounding): the next second holds them.
    last = time.time()
    wait_for(lambda: int(time.time()) > int(last), what="the next second")
    since = docker.ok(
        "events", "--since", "1m", "--until", "0s", "--filter", "container=evt",
        "--format", "{{.Action}}",
    ).stdout.split()  # fmt: skip
    assert since[:3] == ["create", "attach", "start"] and "destroy" in since

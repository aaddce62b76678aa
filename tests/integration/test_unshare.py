"""`runtimectl unshare [--rootless-netns]` and the kubelet's view from inside runtimed's
namespaces: pods driven by the real crictl from there, hostPorts on both loopbacks,
host-network pods sharing the namespace, and deploy/kubelet.sh.

Container and pod addresses are dialled only from inside the rootless network
namespace; the host side is reached through 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from runtimed.gen.runtime.v1 import api_pb2 as cri
from runtimed.rootless.userns import read_subid_range
from tests.support.crictl import crictl_argv, write_config
from tests.support.daemon import BIN, Daemon
from tests.support.images import PushedImages
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Fetches URL from wherever it runs, retrying while the server starts; prints the body.
FETCH = """
import sys, time, urllib.request
deadline = time.monotonic() + 20
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=5) as reply:
            sys.stdout.write(reply.read().decode())
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
"""

# Listens on 127.0.0.1:PORT where it runs, greets the first client, prints what it sent.
LISTEN_ONCE = """
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("listening", flush=True)
server.settimeout(60)
conn, _ = server.accept()
conn.settimeout(30)
conn.sendall(b"hello from the namespace\\n")
got = b""
while data := conn.recv(100):
    got += data
print("received:", got.decode().strip(), flush=True)
"""


@pytest.fixture(scope="module")
def image(daemon: Daemon, pushed_images: PushedImages) -> str:
    daemon.cri_images().PullImage(
        cri.PullImageRequest(image=cri.ImageSpec(image=pushed_images.busybox.ref))
    )
    return pushed_images.busybox.ref


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inside(daemon: Daemon, *argv: str) -> str:
    """Run argv in the rootless network namespace; its stdout (it must succeed)."""
    return daemon.ok("unshare", "--rootless-netns", *argv).stdout


def fetch_inside(daemon: Daemon, url: str) -> str:
    return inside(daemon, "python3", "-c", FETCH, url)


def fetch_on_host(url: str, timeout: float = 20) -> str:
    """Only ever 127.0.0.1: the host's own loopback."""
    assert url.startswith("http://127.0.0.1:")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return reply.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def crictl(daemon: Daemon, *args: str) -> str:
    """crictl run where kubelet would run: inside runtimed's namespaces."""
    return inside(daemon, *crictl_argv(daemon.socket), *args).strip()


@pytest.fixture
def pods(daemon: Daemon) -> Iterator[list[str]]:
    """Pods the test made; stopped and removed whatever happens."""
    made: list[str] = []
    yield made
    rt = daemon.cri_runtime()
    for pod_id in made:
        rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def cri_log(path: Path) -> str:
    """The text of a CRI-format container log (TIMESTAMP STREAM TAG TEXT per line)."""
    if not path.exists():
        return ""
    return "".join(line.split(" ", 3)[3] + "\n" for line in path.read_text().splitlines())


# -- the namespaces -----------------------------------------------------------------------


def test_unshare_is_root_of_the_daemons_user_and_mount_namespaces(daemon: Daemon) -> None:
    assert daemon.ok("unshare", "id", "-u").stdout == "0\n"
    rows = [line.split() for line in daemon.ok("unshare", "cat", "/proc/self/uid_map").out_lines]
    user = pwd.getpwuid(os.getuid()).pw_name
    sub = read_subid_range(Path("/etc/subuid"), user, os.getuid())
    assert sub is not None
    assert rows == [["0", str(os.getuid()), "1"], ["1", str(sub.start), str(sub.count)]]

    holder = daemon.holder_pid()
    assert holder is not None
    seen = daemon.ok(
        "unshare", "readlink", "/proc/self/ns/user", "/proc/self/ns/mnt", "/proc/self/ns/net"
    ).out_lines
    # The daemon's user and mount namespaces; without --rootless-netns, the host's network.
    assert seen == [
        os.readlink(f"/proc/{holder}/ns/user"),
        os.readlink(f"/proc/{holder}/ns/mnt"),
        os.readlink("/proc/self/ns/net"),
    ]
    # Environment and working directory are the caller's.
    env = daemon.ok("unshare", "sh", "-c", 'echo "$HOME"; echo "$PATH"; pwd').out_lines
    assert env == [os.environ["HOME"], os.environ["PATH"], os.getcwd()]


def test_rootless_netns_holds_the_bridges_and_reaches_a_container(
    daemon: Daemon, image: str
) -> None:
    devices = inside(daemon, "cat", "/proc/net/dev")
    assert "runtimed0:" in devices and "runtimed-cri:" in devices
    assert "runtimed0:" not in daemon.ok("unshare", "cat", "/proc/net/dev").stdout
    netns = inside(daemon, "readlink", "/proc/self/ns/net").strip()
    assert netns != os.readlink("/proc/self/ns/net")

    daemon.ok("run", "-d", "--name", "web", image, "sh", "-c",
              "hostname > /tmp/name; exec httpd -f -p 8080 -h /tmp")  # fmt: skip
    try:
        doc = json.loads(daemon.ok("inspect", "web").stdout)[0]
        ip = doc["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        assert ip
        assert fetch_inside(daemon, f"http://{ip}:8080/name") == doc["Id"][:12] + "\n"
    finally:
        daemon.ok("rm", "-f", "web")


def test_exit_codes_are_the_commands(daemon: Daemon) -> None:
    assert daemon.ctl("unshare", "sh", "-c", "exit 7").returncode == 7
    assert daemon.ctl("unshare", "--rootless-netns", "false").returncode == 1
    assert daemon.ctl("unshare", "--", "sh", "-c", "exit 3").returncode == 3
    # runtimectl became the command: a signal that ends it ends "runtimectl".
    killed = daemon.ctl("unshare", "sh", "-c", "kill -TERM $$")
    assert killed.returncode == -signal.SIGTERM
    missing = daemon.ctl("unshare", "no-such-command-here")
    assert missing.returncode == 127
    assert missing.stderr == "runtimectl unshare: no-such-command-here: command not found\n"
    not_executable = daemon.ctl("unshare", "/etc/passwd")
    assert not_executable.returncode == 126
    assert not_executable.stderr.startswith("runtimectl unshare: /etc/passwd: ")
    # No command: the user's shell, here fed from stdin.
    shell = daemon.ctl("unshare", input="id -u; exit 4\n")
    assert (shell.returncode, shell.stdout) == (4, "0\n")


def test_without_a_daemon_one_line_and_125(tmp_path: Path) -> None:
    absent = Daemon(tmp_path / "absent")  # never started: no socket
    for args in (("unshare", "true"), ("unshare", "--rootless-netns", "id")):
        result = absent.ctl(*args)
        assert result.returncode == 125
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1
        assert "is runtimed running?" in result.stderr


# -- kubelet's scenarios, with crictl from inside the namespace ----------------------------


def test_hostport_answers_on_both_loopbacks(
    daemon: Daemon, image: str, tmp_path: Path, pods: list[str]
) -> None:
    port = free_port()
    pod_doc = {
        "metadata": {"name": "hp", "namespace": "default", "uid": "hp-uid", "attempt": 0},
        "hostname": "hp",
        "log_directory": str(tmp_path),
        "port_mappings": [{"protocol": 0, "container_port": 8080, "host_port": port}],
    }
    pod_json = write_config(tmp_path / "pod.json", pod_doc)
    ctr_json = write_config(
        tmp_path / "ctr.json",
        {
            "metadata": {"name": "httpd"},
            "image": {"image": image},
            "command": ["/bin/sh", "-c", "hostname > /tmp/name; exec httpd -f -p 8080 -h /tmp"],
            "log_path": "httpd.log",
        },
    )
    pod_id = crictl(daemon, "runp", pod_json)
    pods.append(pod_id)
    ctr_id = crictl(daemon, "create", pod_id, ctr_json, pod_json)
    crictl(daemon, "start", ctr_id)

    assert fetch_inside(daemon, f"http://127.0.0.1:{port}/name") == "hp\n"
    assert fetch_on_host(f"http://127.0.0.1:{port}/name") == "hp\n"
    ps = crictl(daemon, "ps", "--pod", pod_id, "-q")
    assert ps == ctr_id

    crictl(daemon, "stopp", pod_id)
    # Both ends are released with the pod: the port can be bound there and here again.
    inside(daemon, "python3", "-c",
           f"import socket; socket.create_server(('127.0.0.1', {port}))")  # fmt: skip
    with socket.create_server(("127.0.0.1", port)):
        pass


def test_host_network_pod_shares_the_rootless_namespace(
    daemon: Daemon, image: str, tmp_path: Path, pods: list[str]
) -> None:
    listen_port, serve_port = free_port(), free_port()
    listener = subprocess.Popen(
        [str(BIN / "runtimectl"), "-H", f"unix://{daemon.socket}", "unshare", "--rootless-netns",
         "python3", "-c", LISTEN_ONCE, str(listen_port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=daemon.env,
    )  # fmt: skip
    try:
        assert listener.stdout is not None
        assert listener.stdout.readline() == "listening\n", listener.stderr.read()  # type: ignore[union-attr]
        pod_doc = {
            "metadata": {"name": "hostnet", "namespace": "default", "uid": "hn-uid"},
            "hostname": "hostnet",
            "log_directory": str(tmp_path),
            "port_mappings": [{"container_port": serve_port, "host_port": serve_port}],
            "linux": {"security_context": {"namespace_options": {"network": 2}}},
        }
        pod_json = write_config(tmp_path / "pod.json", pod_doc)
        pod_id = crictl(daemon, "runp", pod_json)
        pods.append(pod_id)
        status = json.loads(crictl(daemon, "inspectp", pod_id))["status"]
        assert status["linux"]["namespaces"]["options"]["network"] == "NODE"

        # Dials the test's listener at 127.0.0.1 of the namespace.
        client_json = write_config(
            tmp_path / "client.json",
            {
                "metadata": {"name": "client"},
                "image": {"image": image},
                "command": ["/bin/sh", "-c", f"echo from-pod | nc 127.0.0.1 {listen_port}"],
                "log_path": "client.log",
            },
        )
        client = crictl(daemon, "create", pod_id, client_json, pod_json)
        crictl(daemon, "start", client)
        out, err = listener.communicate(timeout=60)
        assert listener.returncode == 0, err
        assert out == "received: from-pod\n"
        wait_for(
            lambda: "hello from the namespace" in cri_log(tmp_path / "client.log"),
            what="the client's log",
        )

        # Serves on the namespace's own ports: there at 127.0.0.1, and published on the host.
        server_json = write_config(
            tmp_path / "server.json",
            {
                "metadata": {"name": "server"},
                "image": {"image": image},
                "command": ["/bin/sh", "-c",
                            f"echo shared > /tmp/what; exec httpd -f -p {serve_port} -h /tmp"],
                "log_path": "server.log",
            },
        )  # fmt: skip
        server = crictl(daemon, "create", pod_id, server_json, pod_json)
        crictl(daemon, "start", server)
        assert fetch_inside(daemon, f"http://127.0.0.1:{serve_port}/what") == "shared\n"
        assert fetch_on_host(f"http://127.0.0.1:{serve_port}/what") == "shared\n"
    finally:
        if listener.poll() is None:
            listener.kill()
        listener.wait()


def test_kubelet_script_starts_kubelet_inside_with_its_config(
    daemon: Daemon, tmp_path: Path
) -> None:
    """deploy/kubelet.sh with a stand-in kubelet that reports where it runs (no kubelet
    binary is installable here; see the README)."""
    report = tmp_path / "report"
    fake = tmp_path / "kubelet"
    fake.write_text(
        "#!/bin/sh\n"
        f"exec > {report}\n"
        "id -u; readlink /proc/self/ns/net\n"
        'for arg in "$@"; do echo "arg $arg"; done\n'
        'for arg in "$@"; do case "$arg" in --root-dir=*) stat -c %u "${arg#*=}";; esac; done\n'
        "exit 5\n"
    )
    fake.chmod(0o755)
    kdir, manifests = tmp_path / "kubelet-state", tmp_path / "manifests"
    env = dict(
        daemon.env,
        KUBELET=str(fake),
        KUBELET_DIR=str(kdir),
        RUNTIMED_HOST=f"unix://{daemon.socket}",
        PATH=f"{BIN}:{os.environ['PATH']}",
    )
    result = subprocess.run(
        [str(ROOT / "deploy" / "kubelet.sh"), str(manifests), "--", "--v=2"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 5, result.stderr  # kubelet's own exit code
    lines = report.read_text().splitlines()
    assert lines[0] == "0"
    assert lines[1] == inside(daemon, "readlink", "/proc/self/ns/net").strip()
    args = [line[4:] for line in lines if line.startswith("arg ")]
    config_path = kdir / "kubelet-config.yaml"
    assert args == [
        f"--config={config_path}",
        f"--root-dir={kdir / 'root'}",
        f"--cert-dir={kdir / 'pki'}",
        f"--hostname-override={socket.gethostname()}",
        "--v=2",
    ]
    assert lines[-1] == "0"  # kubelet's directories are its root's there

    text = config_path.read_text()
    assert not re.search(r"@[A-Z_]+@", text)  # every placeholder filled in
    config = yaml.safe_load(text)
    assert config["kind"] == "KubeletConfiguration"
    assert config["containerRuntimeEndpoint"] == f"unix://{daemon.socket}"
    assert config["imageServiceEndpoint"] == f"unix://{daemon.socket}"
    assert config["staticPodPath"] == str(manifests) and manifests.is_dir()
    assert config["podLogsDir"] == str(kdir / "pod-logs")
    expected = {
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "makeIPTablesUtilChains": False,
    }
    assert {key: config[key] for key in expected} == expected
    assert config["authentication"]["webhook"]["enabled"] is False
    assert config["authorization"]["mode"] == "AlwaysAllow"

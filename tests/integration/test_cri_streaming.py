"""Exec, Attach and PortForward: the URLs the CRI hands out and the streaming server
behind them, driven by crictl (client-go's SPDY and WebSocket executors) and by a
Python WebSocket client."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from runtimed.gen.runtime.v1 import api_pb2 as cri
from tests.support.crictl import crictl, crictl_argv
from tests.support.daemon import BIN, Daemon
from tests.support.images import PushedImages

pytestmark = pytest.mark.integration

TRANSPORTS = ("spdy", "websocket")

# Listens on 127.0.0.1:PORT where it runs and greets the first client.
GREET_ONCE = """
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("listening", flush=True)
server.settimeout(60)
conn, _ = server.accept()
conn.sendall(b"from the rootless namespace\\n")
conn.close()
"""


def pod_config(name: str, log_dir: Path) -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="default"),
        hostname=name,
        log_directory=str(log_dir),
    )


@pytest.fixture(scope="module")
def pod(daemon: Daemon, pushed_images: PushedImages, tmp_path_factory) -> Iterator[dict]:
    """One pod with a shell that sleeps and an echo server on 8080, for the whole module."""
    rt = daemon.cri_runtime()
    image = pushed_images.busybox.ref
    daemon.cri_images().PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=image)))
    log_dir = tmp_path_factory.mktemp("stream-logs")
    config = pod_config("streams", log_dir)
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    ids = {}
    for name, script in (
        ("shell", "sleep 3600"),
        ("echo", "nc -ll -p 8080 -e cat"),
    ):
        cfg = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name=name),
            image=cri.ImageSpec(image=image),
            command=["/bin/sh", "-c", script],
            log_path=f"{name}.log",
        )
        cid = rt.CreateContainer(
            cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg, sandbox_config=config)
        ).container_id
        rt.StartContainer(cri.StartContainerRequest(container_id=cid))
        ids[name] = cid
    yield {"id": pod_id, "config": config, "image": image, "log_dir": log_dir, **ids}
    rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_output_and_exit_codes(daemon: Daemon, pod: dict, transport: str) -> None:
    out = crictl(
        daemon, "exec", "--transport", transport, pod["shell"], "sh", "-c", "echo out; echo err >&2"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "out\n"
    assert "err\n" in out.stderr

    # client-go turns our Status into the exit code; crictl itself then exits 1 saying so.
    failed = crictl(daemon, "exec", "--transport", transport, pod["shell"], "sh", "-c", "exit 3")
    assert failed.returncode != 0
    assert "command terminated with exit code 3" in failed.stderr, failed.stderr


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_stdin(daemon: Daemon, pod: dict, transport: str) -> None:
    data = "".join(f"line {i}\n" for i in range(2000))
    out = crictl(daemon, "exec", "-i", "--transport", transport, pod["shell"], "cat", input=data)
    assert out.returncode == 0, out.stderr
    assert out.stdout == data


def run_in_pty(
    argv: list[str], rows: int = 30, cols: int = 100, timeout: float = 60
) -> tuple[int, bytes]:
    """Run a command on a new terminal of the given size; its exit code and all it printed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal closed it
                break
            if not chunk:
                break
            output += chunk
        return proc.wait(timeout=10), bytes(output)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_tty(daemon: Daemon, pod: dict, transport: str) -> None:
    # The size comes from crictl's terminal through the resize stream, which races with
    # the start of the command: wait for it rather than for a moment.
    script = (
        "test -t 0 && test -t 1 && echo is-a-tty; "
        "for i in $(seq 200); do s=$(stty size 2>/dev/null) && break; sleep 0.05; done; "
        "echo size=$s"
    )
    code, output = run_in_pty(
        [*crictl_argv(daemon.socket), "exec", "-it", "--transport", transport, pod["shell"],
         "sh", "-c", script]
    )  # fmt: skip
    assert code == 0, output
    assert b"is-a-tty\r\n" in output  # a terminal's line endings: the output went through a pty
    assert b"size=30 100" in output


def attachable(daemon: Daemon, pod: dict, name: str) -> str:
    """A container that echoes its input and ends with it (stdin_once, as kubectl run -i)."""
    rt = daemon.cri_runtime()
    cfg = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=name),
        image=cri.ImageSpec(image=pod["image"]),
        command=["/bin/sh", "-c", "while read l; do echo got:$l; echo err:$l >&2; done; echo bye"],
        stdin=True,
        stdin_once=True,
        log_path=f"{name}.log",
    )
    cid = rt.CreateContainer(
        cri.CreateContainerRequest(
            pod_sandbox_id=pod["id"], config=cfg, sandbox_config=pod["config"]
        )
    ).container_id
    rt.StartContainer(cri.StartContainerRequest(container_id=cid))
    return cid


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_attach(daemon: Daemon, pod: dict, transport: str) -> None:
    cid = attachable(daemon, pod, f"attached-{transport}")
    out = crictl(daemon, "attach", "-i", "--transport", transport, cid, input="a\nb\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "got:a\ngot:b\nbye\n"
    assert "err:a\nerr:b\n" in out.stderr
    rt = daemon.cri_runtime()
    status = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid)).status
    assert status.state == cri.CONTAINER_EXITED and status.exit_code == 0
    # An exited container has no stdio to attach to, and nothing to exec in.
    for call, request in (
        (rt.Attach, cri.AttachRequest(container_id=cid, stdout=True)),
        (rt.Exec, cri.ExecRequest(container_id=cid, cmd=["true"], stdout=True)),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(request)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


class Forward:
    """`crictl port-forward POD 0:PORT` in the background; `local` is the port it listens on."""

    def __init__(self, daemon: Daemon, pod_id: str, port: int, transport: str) -> None:
        argv = [
            *crictl_argv(daemon.socket), "port-forward", "--transport", transport, pod_id,
            f"0:{port}",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        match = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
        assert match, (line, self.proc.stderr.read() if self.proc.poll() is not None else b"")
        self.local = int(match.group(1))

    def stop(self) -> bytes:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


def echo_through(port: int, payload: bytes) -> bytes:
    """Send payload to 127.0.0.1:port (in a thread) while reading what comes back until EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:

        def send() -> None:
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = bytearray()
        while chunk := conn.recv(1 << 16):
            received += chunk
        sender.join()
    return bytes(received)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_port_forward(daemon: Daemon, pod: dict, transport: str) -> None:
    forward = Forward(daemon, pod["id"], 8080, transport)
    try:
        small = echo_through(forward.local, b"ping\n")
        big = os.urandom(3 << 20)
        echoed = echo_through(forward.local, big)
    finally:
        forward.stop()
    assert small == b"ping\n"
    assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(big).hexdigest()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_port_forward_to_a_closed_port(daemon: Daemon, pod: dict, transport: str) -> None:
    forward = Forward(daemon, pod["id"], 9, transport)
    try:
        with socket.create_connection(("127.0.0.1", forward.local), timeout=30) as conn:
            assert conn.recv(100) == b""  # nothing listens on 9 in the pod: closed at once
    finally:
        stderr = forward.stop()
    assert b"error forwarding port 9 to pod" in stderr, stderr


def test_port_forward_host_network_pod(daemon: Daemon, tmp_path: Path) -> None:
    """A host-network pod shares runtimed's rootless network namespace (where kubelet runs):
    a server started there answers through the pod's port-forward."""
    rt = daemon.cri_runtime()
    config = pod_config("hostnet", tmp_path)
    config.linux.security_context.namespace_options.network = cri.NODE
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(BIN / "runtimectl"), "-H", f"unix://{daemon.socket}", "unshare", "--rootless-netns",
         "python3", "-c", GREET_ONCE, str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline() == b"listening\n"
        forward = Forward(daemon, pod_id, port, "spdy")
        try:
            with socket.create_connection(("127.0.0.1", forward.local), timeout=30) as conn:
                received = b""
                while chunk := conn.recv(100):
                    received += chunk
        finally:
            forward.stop()
        assert received == b"from the rootless namespace\n"
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
        rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_from_the_rootless_namespace(daemon: Daemon, pod: dict, transport: str) -> None:
    """Where a kubelet beside rootless runtimed runs, the streaming URLs work too."""
    out = daemon.ok(
        "unshare", "--rootless-netns", *crictl_argv(daemon.socket),
        "exec", "--transport", transport, pod["shell"], "echo", "inside",
    )  # fmt: skip
    assert out.stdout == "inside\n"


def ws_exec(url: str) -> tuple[bytes, dict]:
    """A v5 WebSocket client: stdout and the decoded Status of one exec."""
    stdout, status = b"", {}
    with connect(url.replace("http://", "ws://"), subprotocols=["v5.channel.k8s.io"]) as ws:
        for message in ws:
            assert isinstance(message, bytes)
            if message[:1] == b"\x01":
                stdout += message[1:]
            elif message[:1] == b"\x03":
                status = json.loads(message[1:])
    return stdout, status


def test_urls_are_single_use_and_statuses_exact(daemon: Daemon, pod: dict) -> None:
    rt = daemon.cri_runtime()
    url = rt.Exec(cri.ExecRequest(container_id=pod["shell"], cmd=["echo", "hi"], stdout=True)).url
    assert url.startswith("http://127.0.0.1:")
    assert ws_exec(url) == (b"hi\n", {"metadata": {}, "status": "Success"})
    with pytest.raises(InvalidStatus) as used:
        ws_exec(url)
    assert used.value.response.status_code == 404

    failing = rt.Exec(
        cri.ExecRequest(container_id=pod["shell"], cmd=["sh", "-c", "exit 7"], stdout=True)
    ).url
    _, status = ws_exec(failing)
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]

    # The same answers as ExecSync, the other path to the shim's exec.
    sync = rt.ExecSync(cri.ExecSyncRequest(container_id=pod["shell"], cmd=["sh", "-c", "exit 7"]))
    assert sync.exit_code == 7


def test_bad_requests(daemon: Daemon, pod: dict) -> None:
    rt = daemon.cri_runtime()
    for call, request in (
        (rt.Exec, cri.ExecRequest(container_id="nonexistent", cmd=["true"], stdout=True)),
        (rt.Attach, cri.AttachRequest(container_id="nonexistent", stdout=True)),
        (rt.PortForward, cri.PortForwardRequest(pod_sandbox_id="nonexistent", port=[80])),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(request)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()
    for request in (
        cri.ExecRequest(container_id=pod["shell"], cmd=[], stdout=True),
        cri.ExecRequest(container_id=pod["shell"], cmd=["true"], tty=True, stderr=True),
        cri.ExecRequest(container_id=pod["shell"], cmd=["true"]),
    ):
        with pytest.raises(grpc.RpcError) as err:
            rt.Exec(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()

    missing = crictl(daemon, "exec", "nonexistent", "true")
    assert missing.returncode != 0
    assert "No such container: nonexistent" in missing.stderr, missing.stderr

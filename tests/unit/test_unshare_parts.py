"""Parts of `runtimectl unshare` and of host-network pods in the rootless namespace
that need no daemon: parsing, joining namespaces, in-namespace hostPort listeners, specs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runtimed.cli.main import build_parser
from runtimed.errors import FailedPrecondition, InvalidArgument
from runtimed.network.ports import PortSpec, bind_loopback
from runtimed.oci.spec import NamespacePaths, SpecRequest, build_spec


def test_unshare_takes_the_rest_of_the_line_as_the_command() -> None:
    args = build_parser().parse_args(["unshare", "--rootless-netns", "sh", "-c", "ls --all"])
    assert args.rootless_netns is True
    assert args.cmd == ["sh", "-c", "ls --all"]
    args = build_parser().parse_args(["unshare"])
    assert (args.rootless_netns, args.cmd, args.daemon_error_code) == (False, [], 125)


def _enter(pid: int, user_ns: int, mount_ns: int) -> subprocess.CompletedProcess[str]:
    # In a process of its own: setns(2) into a user namespace wants a single thread.
    code = (
        "import sys\n"
        "from runtimed.errors import RuntimedError\n"
        "from runtimed.rootless import nsenter\n"
        "try:\n"
        f"    print(nsenter.enter_daemon({pid}, {user_ns}, {mount_ns}))\n"
        "except RuntimedError as exc:\n"
        "    sys.exit(exc.message)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_namespaces_we_are_in_already_are_left_alone() -> None:
    user = os.stat("/proc/self/ns/user").st_ino
    mnt = os.stat("/proc/self/ns/mnt").st_ino
    result = _enter(os.getpid(), user, mnt)
    assert (result.returncode, result.stdout) == (0, "False\n"), result.stderr


def test_a_pid_in_other_namespaces_than_the_daemon_named_is_refused() -> None:
    result = _enter(os.getpid(), 1, 1)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"pid {os.getpid()} is no longer in runtimed's namespaces: is runtimed still running?"
    )


def test_a_holder_that_is_gone_is_reported() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    result = _enter(gone.pid, 1, 1)
    assert result.returncode == 1
    assert "is gone: is runtimed still running?" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_loopback_listeners_once_per_port_and_protocol() -> None:
    port = _free_port()
    specs = [
        PortSpec(container_port=80, host_port=port),
        PortSpec(container_port=80, host_ip="192.0.2.1", host_port=port),  # same port: once
        PortSpec(container_port=53, protocol="udp", host_port=port),
    ]
    bound = bind_loopback(specs)
    try:
        assert [(r.protocol, r.host_ip, r.host_port, r.container_port) for _, r in bound] == [
            ("tcp", "127.0.0.1", port, 80),
            ("udp", "127.0.0.1", port, 53),
        ]
        assert [s.getsockname() for s, _ in bound] == [("127.0.0.1", port)] * 2
    finally:
        for sock, _ in bound:
            sock.close()


def test_a_loopback_port_in_use_is_a_clear_error_and_binds_nothing() -> None:
    first, taken = _free_port(), socket.create_server(("127.0.0.1", 0))
    with taken:
        busy = taken.getsockname()[1]
        with pytest.raises(FailedPrecondition) as err:
            bind_loopback([PortSpec(80, host_port=first), PortSpec(81, host_port=busy)])
        assert err.value.message.startswith(
            f"cannot publish 127.0.0.1:{busy}/tcp in runtimed's network namespace: "
        )
        assert "runtimectl unshare --rootless-netns" in err.value.message
        with socket.create_server(("127.0.0.1", first)):  # the first one was let go
            pass


def test_the_shared_rootless_namespace_takes_no_net_sysctls(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    ns = NamespacePaths(network="/run/x/network/netns", shared_network=True)
    req = SpecRequest(image_config={"Cmd": ["sh"]}, namespaces=ns)
    spec = build_spec(req, rootfs)
    assert {"type": "network", "path": "/run/x/network/netns"} in spec["linux"]["namespaces"]
    assert next(m for m in spec["mounts"] if m["destination"] == "/sys")["type"] == "sysfs"
    req.sysctls = {"net.ipv4.tcp_syncookies": "1"}
    with pytest.raises(InvalidArgument, match="net.ipv4.tcp_syncookies"):
        build_spec(req, rootfs)

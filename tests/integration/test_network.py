"""Rootless networking with real namespaces and packets, as the unprivileged test user.

Servers and clients are busybox applets, or the host's python3 run inside a
container through read-only binds of /usr (for UDP and a DNS upstream).
Every host-side peer listens on loopback, or on the host's own address (where
host.containers.internal leads by default).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from runtimed.gen.runtime.v1 import api_pb2 as cri
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.network.hostaddr import primary_address
from runtimed.network.networks import host_routes
from tests.support.daemon import Daemon
from tests.support.hostserver import LoopbackServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

# The host's python3 inside a busybox container (Debian: /lib and /lib64 are in /usr).
PY = ["-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro"]

UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9999))
while True:
    data, addr = s.recvfrom(2048)
    s.sendto(b"echo:" + data, addr)
"""

# Answers every A query with 10.9.8.7: an upstream the resolver must forward to.
DNS_UPSTREAM = """
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53))
while True:
    q, addr = s.recvfrom(512)
    end = 12
    while q[end]:
        end += q[end] + 1
    end += 5
    head = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
    rr = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([10, 9, 8, 7])
    s.sendto(head + q[12:end] + rr, addr)
"""


# In a container: send SIZE patterned bytes to the host's loopback through
# host.containers.internal, half-close first, then print the sink's answer, which
# ends only with the host's FIN.
BULK_TO_HOST = """
import socket, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
host = next(w[0] for w in map(str.split, open("/etc/hosts"))
            if "host.containers.internal" in w[1:])
c = socket.create_connection((host, port), timeout=30)
chunk = bytes(range(256)) * 4096
left = size
while left > 0:
    c.sendall(chunk[: min(left, len(chunk))])
    left -= len(chunk)
c.shutdown(socket.SHUT_WR)
reply = b""
while data := c.recv(100):
    reply += data
print("sink:", reply.decode())
"""


@pytest.fixture(scope="module")
def image(daemon: Daemon) -> str:
    return daemon.import_busybox("netbox:1")


@pytest.fixture
def names(daemon: Daemon) -> Iterator[list[str]]:
    """Containers and networks to remove after the test, whatever happens."""
    made: list[str] = []
    yield made
    for name in reversed(made):
        if name.startswith("net:"):
            daemon.ctl("network", "rm", name[4:])
        else:
            daemon.ctl("rm", "-f", name)


def ip_of(daemon: Daemon, name: str, network: str = "bridge") -> str:
    doc = json.loads(daemon.ok("inspect", name).stdout)[0]
    return doc["NetworkSettings"]["Networks"][network]["IPAddress"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return reply.read().decode()


def retry_http(url: str, timeout: float = 15) -> str:
    """The server in a container may take a moment to listen after `run -d` returns."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return http_get(url, timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def host_ip() -> str:
    """The host's own address, where host.containers.internal leads by default."""
    address = primary_address()
    assert address, "these tests need a host with an address besides loopback"
    return address


def host_server(received: list[bytes], host: str = "") -> LoopbackServer:
    """Records what each client sends first and answers "from-host"; on the host's own
    address unless `host` says otherwise."""

    def greet(conn: socket.socket) -> None:
        received.append(conn.recv(1024))
        conn.sendall(b"from-host\n")

    return LoopbackServer(greet, host=host or host_ip())


def host_sink() -> LoopbackServer:
    """On the host's own address: answers each connection with its byte count and sha256
    once the client half-closed."""

    def digest(conn: socket.socket) -> None:
        sha, count = hashlib.sha256(), 0
        while data := conn.recv(1 << 20):
            sha.update(data)
            count += len(data)
        conn.sendall(f"{count} {sha.hexdigest()}".encode())

    return LoopbackServer(digest, host=host_ip())


def bulk_to_host(daemon: Daemon, image: str, size: int) -> None:
    """Bytes, order and both half-closes survive container -> host.containers.internal."""
    with host_sink() as sink:
        out = daemon.ok(
            "run", "--rm", *PY, image, "/usr/bin/python3", "-c", BULK_TO_HOST,
            str(sink.port), str(size),
        ).stdout  # fmt: skip
    chunk = bytes(range(256)) * 4096
    expected = (chunk * (size // len(chunk) + 1))[:size]
    assert f"sink: {size} {hashlib.sha256(expected).hexdigest()}" in out, out


def test_default_bridge_address_files_and_egress_to_the_host(daemon: Daemon, image: str) -> None:
    received: list[bytes] = []
    server = host_server(received)
    try:
        script = (
            "ip -o -4 addr show eth0; ip route; cat /etc/hosts /etc/resolv.conf; "
            "host=$(awk '/host.containers.internal/ {print $1; exit}' /etc/hosts); "
            # stdin stays open until the server answered: the 2023 pasta drops the host's FIN
            # on a connection the container half-closed first.
            f"(echo hello-host; sleep 3) | nc -w 5 $host {server.port}"
        )
        out = daemon.ok(
            "run", "--rm", "--hostname", "box.example", "--add-host", "db.test:10.1.2.3",
            "--add-host", "gw.test:host-gateway", "--dns-search", "example.test",
            "--dns-option", "ndots:2", "--mac-address", "02:aa:bb:cc:dd:ee",
            image, "sh", "-c", script,
        ).stdout  # fmt: skip
    finally:
        server.close()
    assert re.search(r"inet 10\.88\.\d+\.\d+/16", out), out
    assert "default via 10.88.0.1" in out
    assert "10.1.2.3\tdb.test" in out
    gateway = re.search(r"(\S+)\thost.containers.internal host.docker.internal", out)
    assert gateway, out
    assert f"{gateway.group(1)}\tgw.test" in out
    assert re.search(r"10\.88\.\d+\.\d+\tbox.example box", out)
    assert "search example.test" in out and "options ndots:2" in out
    assert received == [b"hello-host\n"], out
    assert "from-host" in out
    bulk_to_host(daemon, image, 64 << 20)


def test_none_host_and_container_modes(daemon: Daemon, image: str, names: list[str]) -> None:
    out = daemon.ok("run", "--rm", "--network", "none", image, "ip", "-o", "link").stdout
    assert [line.split()[1] for line in out.splitlines()] == ["lo:"]
    out = daemon.ok("run", "--rm", "--network", "host", image, "ip", "-o", "link").stdout
    host_links = {
        name.split("@")[0].rstrip(":") for name in (ln.split()[1] for ln in out.splitlines())
    }
    assert host_links == set(os.listdir("/sys/class/net"))
    names.append("base")
    daemon.ok("run", "-d", "--name", "base", "--mac-address", "02:11:22:33:44:55", image,
              "sleep", "300")  # fmt: skip
    base_ip = ip_of(daemon, "base")
    out = daemon.ok(
        "run", "--rm", "--network", "container:base", image, "ip", "-o", "addr", "show", "eth0"
    ).stdout
    assert (
        base_ip in out
        and "02:11:22:33:44:55"
        in daemon.ok(
            "run", "--rm", "--network", "container:base", image, "ip", "link", "show", "eth0"
        ).stdout
    )
    doc = json.loads(daemon.ok("inspect", "base").stdout)[0]
    assert doc["NetworkSettings"]["MacAddress"] == "02:11:22:33:44:55"
    assert doc["HostConfig"]["NetworkMode"] == "bridge"
    bad = daemon.ctl("run", "--rm", "--network", "none", "-p", "8080:80", image, "true")
    assert bad.returncode == 125 and "port publishing" in bad.stderr


def test_a_joined_namespace_loses_the_peers_interface_when_the_peer_stops(
    daemon: Daemon, image: str, names: list[str]
) -> None:
    """As with docker; the peer's veth goes although the joiner keeps its namespace alive."""
    names += ["peer", "joiner"]
    daemon.ok("run", "-d", "--name", "peer", image, "sleep", "300")
    daemon.ok("run", "-d", "--name", "joiner", "--network", "container:peer", image,
              "sleep", "300")  # fmt: skip
    assert "eth0" in daemon.ok("exec", "joiner", "ip", "-o", "link").stdout
    daemon.ok("stop", "-t", "0", "peer")
    wait_for(
        lambda: "eth0" not in daemon.ok("exec", "joiner", "ip", "-o", "link").stdout,
        what="the stopped peer's interface to leave the joined namespace",
    )
    # Started again, and again at once (its old veth may not be gone yet): a new interface
    # with its address each time.
    for _ in range(2):
        daemon.ok("start", "peer")
        out = daemon.ok("exec", "peer", "ip", "-o", "-4", "addr", "show", "eth0").stdout
        assert f"inet {ip_of(daemon, 'peer')}/" in out
        daemon.ok("stop", "-t", "0", "peer")


def test_user_networks_names_aliases_links_isolation_and_connect(
    daemon: Daemon, image: str, names: list[str]
) -> None:
    names += ["net:front", "net:back"]
    daemon.ok("network", "create", "--subnet", "10.201.0.0/24", "front")
    daemon.ok("network", "create", "back")
    names.append("srv")
    daemon.ok("run", "-d", "--name", "srv", "--network", "front", "--network-alias", "svc",
              image, "httpd", "-f", "-p", "80", "-h", "/etc")  # fmt: skip
    srv_ip = ip_of(daemon, "srv", "front")
    assert srv_ip.startswith("10.201.0.")
    out = daemon.ok(
        "run", "--rm", "--network", "front", "--link", "srv:backend", image, "sh", "-c",
        f"for h in srv svc backend {srv_ip}; do wget -qO- http://$h/hostname || echo FAIL $h; "
        "done; cat /etc/resolv.conf",
    ).stdout  # fmt: skip
    srv_id = json.loads(daemon.ok("inspect", "srv").stdout)[0]["Id"]
    assert out.count(srv_id[:12]) == 4 and "FAIL" not in out, out
    assert "nameserver 10.201.0.1" in out
    names.append("other")
    daemon.ok("run", "-d", "--name", "other", "--network", "back", image, "sleep", "300")
    blocked = daemon.ctl("exec", "other", "wget", "-T", "2", "-qO-", f"http://{srv_ip}/hostname")
    assert blocked.returncode != 0
    unknown = daemon.ctl("exec", "other", "nslookup", "srv")
    assert srv_ip not in unknown.stdout
    daemon.ok("network", "connect", "--alias", "second", "front", "other")
    out = daemon.ok("exec", "other", "sh", "-c", "ip -o -4 addr; wget -qO- http://srv/hostname")
    assert "eth1" in out.stdout and srv_id[:12] in out.stdout
    doc = json.loads(daemon.ok("network", "inspect", "front").stdout)[0]
    assert {c["Name"] for c in doc["Containers"].values()} == {"srv", "other"}
    assert json.loads(daemon.ok("inspect", "--type", "network", "front").stdout) == [doc]
    refused = daemon.ctl("network", "rm", "front")
    assert refused.returncode != 0 and "active endpoints" in refused.stderr
    daemon.ok("network", "disconnect", "front", "other")
    assert "eth1" not in daemon.ok("exec", "other", "ip", "-o", "link").stdout


def test_round_robin_for_a_shared_alias(daemon: Daemon, image: str, names: list[str]) -> None:
    names.append("net:rr")
    daemon.ok("network", "create", "rr")
    ips = set()
    for i in range(3):
        names.append(f"rr{i}")
        daemon.ok("run", "-d", "--name", f"rr{i}", "--network", "rr", "--net-alias", "pool",
                  image, "sleep", "300")  # fmt: skip
        ips.add(ip_of(daemon, f"rr{i}", "rr"))
    out = daemon.ok(
        "run", "--rm", "--network", "rr", image, "sh", "-c",
        "for i in 1 2 3 4 5 6; do nslookup pool; echo ===; done",
    ).stdout  # fmt: skip
    answers = []
    for block in out.split("===")[:-1]:
        # After the "Name:" line come the answers, in the order the server gave them.
        tail = block.split("Name:", 1)[1]
        answers.append(re.findall(r"Address: (\d+\.\d+\.\d+\.\d+)", tail))
    assert len(answers) == 6
    assert all(set(a) == ips for a in answers), answers
    assert {a[0] for a in answers} == ips, answers


def test_resolver_forwards_other_names_upstream(
    daemon: Daemon, image: str, names: list[str]
) -> None:
    names += ["net:fwd", "upstream"]
    daemon.ok("network", "create", "fwd")
    daemon.ok("run", "-d", "--name", "upstream", "--network", "fwd", *PY, image,
              "/usr/bin/python3", "-c", DNS_UPSTREAM)  # fmt: skip
    upstream = ip_of(daemon, "upstream", "fwd")
    out = daemon.ok(
        "run", "--rm", "--network", "fwd", "--dns", upstream, image, "sh", "-c",
        "cat /etc/resolv.conf; for i in 1 2 3 4 5; do nslookup far.example.test && break; "
        "sleep 0.2; done; nslookup upstream",
    ).stdout  # fmt: skip
    assert f"nameserver {upstream}" not in out  # the container asks our resolver ...
    assert "10.9.8.7" in out  # ... which asked the --dns server for what it does not know
    assert upstream in out.split("upstream", 2)[-1]  # and answers its own names itself


def test_published_tcp_and_udp_ports(daemon: Daemon, image: str, names: list[str]) -> None:
    names.append("pub")
    tcp_port, udp_port = free_port(), free_port()
    daemon.ok(
        "run", "-d", "--name", "pub", "-p", f"{tcp_port}:80", "-p", f"{udp_port}:9999/udp",
        "-p", "127.0.0.1::80", *PY, image, "sh", "-c",
        f"httpd -p 80 -h /etc && exec /usr/bin/python3 -c '{UDP_ECHO}'",
    )  # fmt: skip
    pub_id = json.loads(daemon.ok("inspect", "pub").stdout)[0]["Id"]
    assert retry_http(f"http://127.0.0.1:{tcp_port}/hostname").strip() == pub_id[:12]
    mapping = daemon.ok("port", "pub").stdout
    assert f"80/tcp -> 0.0.0.0:{tcp_port}" in mapping
    assert f"9999/udp -> 0.0.0.0:{udp_port}" in mapping
    random_port = int(daemon.ok("port", "pub", "80").stdout.split("127.0.0.1:")[1].split()[0])
    assert http_get(f"http://127.0.0.1:{random_port}/hostname").strip() == pub_id[:12]
    ps = daemon.ok("ps", "--filter", "name=pub", "--format", "{{.Ports}}").stdout
    assert f"0.0.0.0:{tcp_port}->80/tcp" in ps and f"0.0.0.0:{udp_port}->9999/udp" in ps
    doc = json.loads(daemon.ok("inspect", "pub").stdout)[0]
    assert {"HostIp": "0.0.0.0", "HostPort": str(tcp_port)} in doc["NetworkSettings"]["Ports"][
        "80/tcp"
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(2)
        reply = b""
        for _ in range(20):  # the python server may still be starting
            client.sendto(b"ping", ("127.0.0.1", udp_port))
            try:
                reply = client.recvfrom(100)[0]
                break
            except TimeoutError:
                continue
        assert reply == b"echo:ping"
    host_ip = _non_loopback_ip()
    if host_ip:
        assert http_get(f"http://{host_ip}:{tcp_port}/hostname").strip() == pub_id[:12]
        with pytest.raises(OSError):  # bound to 127.0.0.1 only
            http_get(f"http://{host_ip}:{random_port}/hostname", timeout=3)
    daemon.ok("stop", "-t", "0", "pub")
    # Forwarding stopped and nothing keeps the ports.
    with pytest.raises(OSError):
        http_get(f"http://127.0.0.1:{tcp_port}/hostname", timeout=3)
    assert _port_free(tcp_port) and _port_free(udp_port, socket.SOCK_DGRAM)
    assert daemon.ok("port", "pub").stdout == ""


def test_publish_host_port_range_takes_the_first_free_port(
    daemon: Daemon, image: str, names: list[str]
) -> None:
    """docker's -p 8000-8010:80: the first free host port of the range."""
    first = free_port()
    with socket.socket() as holder:  # the range's first port is taken
        holder.bind(("0.0.0.0", first))
        holder.listen()
        names.append("ranged")
        daemon.ok(
            "run", "-d", "--name", "ranged", "-p", f"{first}-{first + 5}:80", image,
            "httpd", "-f", "-p", "80", "-h", "/etc",
        )  # fmt: skip
        port = int(daemon.ok("port", "ranged", "80").stdout.split()[0].rsplit(":", 1)[1])
        assert first < port <= first + 5
        doc = json.loads(daemon.ok("inspect", "ranged").stdout)[0]
        assert retry_http(f"http://127.0.0.1:{port}/hostname").strip() == doc["Id"][:12]
        assert doc["HostConfig"]["PortBindings"]["80/tcp"] == [
            {"HostIp": "", "HostPort": f"{first}-{first + 5}"}
        ]


def _non_loopback_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            ip = s.getsockname()[0]
        except OSError:
            return ""
    return "" if ip.startswith("127.") else ip


def test_port_in_use_and_privileged_port_errors(
    daemon: Daemon, image: str, names: list[str]
) -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        names.append("clash")
        res = daemon.ctl("run", "-d", "--name", "clash", "-p", f"{port}:80", image, "sleep", "30")
        assert res.returncode == 125 and "already in use" in res.stderr, res.stderr
        doc = json.loads(daemon.ok("inspect", "clash").stdout)[0]
        assert doc["State"]["Running"] is False
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if start <= 1:
        pytest.skip("every port is unprivileged on this host")
    res = daemon.ctl("run", "--rm", "-p", f"{start - 1}:80", image, "true")
    assert res.returncode == 125
    assert f"net.ipv4.ip_unprivileged_port_start={start - 1}" in res.stderr, res.stderr


def test_network_commands_and_static_addresses(
    daemon: Daemon, image: str, names: list[str]
) -> None:
    names.append("net:lab")
    net_id = daemon.ok(
        "network", "create", "--subnet", "10.203.0.0/24", "--gateway", "10.203.0.254",
        "--ip-range", "10.203.0.128/25", "--label", "team=net", "--internal", "lab",
    ).stdout.strip()  # fmt: skip
    doc = json.loads(daemon.ok("network", "inspect", "lab").stdout)[0]
    assert doc["Id"] == net_id and doc["Internal"] is True and doc["Labels"] == {"team": "net"}
    assert doc["IPAM"]["Config"] == [
        {"Subnet": "10.203.0.0/24", "IPRange": "10.203.0.128/25", "Gateway": "10.203.0.254"}
    ]
    listed = daemon.ok("network", "ls", "--filter", "label=team=net", "--format", "{{.Name}}")
    assert listed.stdout.split() == ["lab"]
    assert {"bridge", "cri", "lab"} <= set(daemon.ok("network", "ls").stdout.split())
    dup = daemon.ctl("network", "create", "lab")
    assert dup.returncode != 0 and "already exists" in dup.stderr
    for driver in ("macvlan", "ipvlan"):
        res = daemon.ctl("network", "create", "-d", driver, "nope")
        assert res.returncode != 0 and "cannot work rootless" in res.stderr
    res = daemon.ctl("network", "rm", "bridge")
    assert res.returncode != 0 and "pre-defined" in res.stderr
    names.append("fixed")
    daemon.ok("create", "--name", "fixed", "--network", "lab", "--ip", "10.203.0.10",
              "--mac-address", "02:00:00:00:00:0a", image, "true")  # fmt: skip
    out = daemon.ok("start", "-a", "fixed").stdout
    fixed = json.loads(daemon.ok("inspect", "fixed").stdout)[0]["NetworkSettings"]
    assert fixed["Networks"]["lab"]["IPAddress"] == "10.203.0.10"
    assert fixed["Networks"]["lab"]["MacAddress"] == "02:00:00:00:00:0a"
    assert out == ""
    taken = daemon.ctl("run", "--rm", "--network", "lab", "--ip", "10.203.0.10", image, "true")
    assert taken.returncode == 125 and "already in use" in taken.stderr
    outside = daemon.ctl("run", "--rm", "--network", "lab", "--ip", "10.9.9.9", image, "true")
    assert outside.returncode == 125 and "not a host address" in outside.stderr
    # Internal: no default route, so no way out.
    routes = daemon.ok("run", "--rm", "--network", "lab", image, "ip", "route").stdout
    assert "default" not in routes and "10.203.0.0/24" in routes
    daemon.ok("rm", "fixed")
    names.remove("fixed")
    names.append("net:spare")
    daemon.ok("network", "create", "spare")
    pruned = daemon.ok("network", "prune", "-f").stdout
    assert "spare" in pruned and "lab" in pruned and "bridge" not in pruned
    left = _networks(daemon)
    assert {"bridge", "cri"} <= left and not {"spare", "lab"} & left


def test_subnets_overlapping_the_uplink_the_host_or_a_network_are_refused(
    daemon: Daemon, names: list[str]
) -> None:
    """Docker's "Pool overlaps with other one on this address space": the uplink's own
    network (slirp4netns's 10.0.2.0/24; pasta copies the host's), a route of the host and
    another network would become unreachable from containers."""
    uplink = json.loads((daemon.socket.parent / "network" / "uplink.json").read_text())
    routes = host_routes()
    assert routes, "this test needs a host with a route besides the default one"
    uplink_net = "10.0.2.0/24" if uplink["backend"] == "slirp4netns" else routes[0]
    names.append("net:first")
    daemon.ok("network", "create", "--subnet", "10.204.0.0/24", "first")
    for subnet in (uplink_net, routes[0], "10.204.0.128/25", "10.0.0.0/8"):
        res = daemon.ctl("network", "create", "--subnet", subnet, "overlap")
        assert res.returncode == 1, (subnet, res)
        assert "Pool overlaps with other one on this address space" in res.stderr, res.stderr
    assert "overlap" not in _networks(daemon)
    assert (
        "the network of the uplink"
        in daemon.ctl("network", "create", "--subnet", uplink_net, "overlap").stderr
    )


def test_host_and_none_rows_and_only_live_endpoints(
    daemon: Daemon, image: str, names: list[str]
) -> None:
    rows = [line.split() for line in daemon.ok("network", "ls").out_lines[1:]]
    drivers = {row[1]: row[2] for row in rows}
    assert (drivers["bridge"], drivers["host"], drivers["none"]) == ("bridge", "host", "null")
    doc = json.loads(daemon.ok("network", "inspect", "host").stdout)[0]
    assert (doc["Name"], doc["Driver"], doc["IPAM"]["Config"]) == ("host", "host", [])
    for name in ("host", "none"):
        res = daemon.ctl("network", "rm", name)
        assert res.returncode == 1 and f"{name} is a pre-defined network" in res.stderr
    assert "host" in _networks(daemon)  # still there
    names += ["net:live", "up", "idle"]
    daemon.ok("network", "create", "live")
    daemon.ok("run", "-d", "--name", "up", "--network", "live", image, "sleep", "300")
    daemon.ok("create", "--name", "idle", "--network", "live", image, "true")
    res = daemon.ctl("network", "connect", "host", "idle")
    assert res.returncode == 1 and "connected to host network" in res.stderr
    doc = json.loads(daemon.ok("network", "inspect", "live").stdout)[0]
    assert [c["Name"] for c in doc["Containers"].values()] == ["up"]  # not the created one
    # As docker: --network host also gives the container the host's name.
    shown = daemon.ok("run", "--rm", "--network", "host", image, "hostname").stdout
    assert shown.strip() == socket.gethostname()


def _networks(daemon: Daemon) -> set[str]:
    return set(daemon.ok("network", "ls", "--format", "{{.Name}}").stdout.split())


def test_addresses_are_released_on_removal(daemon: Daemon, image: str, names: list[str]) -> None:
    """300 containers come and go on a /24 (253 addresses): none is leaked."""
    names.append("net:churn")
    daemon.ok("network", "create", "--subnet", "10.204.0.0/24", "churn")
    engine = daemon.engine()
    seen: set[str] = set()
    keep = engine.CreateContainer(pb.CreateContainerRequest(image=image, network="churn")).id
    try:
        for _ in range(300):
            ident = engine.CreateContainer(
                pb.CreateContainerRequest(image=image, network="churn", cmd=["true"], has_cmd=True)
            ).id
            doc = json.loads(engine.InspectContainer(pb.ContainerRef(id=ident)).json)
            seen.add(doc["NetworkSettings"]["Networks"]["churn"]["IPAddress"])
            engine.RemoveContainer(pb.RemoveContainerRequest(id=ident, force=True))
        kept = json.loads(engine.InspectContainer(pb.ContainerRef(id=keep)).json)
        assert kept["NetworkSettings"]["Networks"]["churn"]["IPAddress"] not in seen
        assert len(seen) == 252  # every other address of the /24, each handed out in turn
    finally:
        engine.RemoveContainer(pb.RemoveContainerRequest(id=keep, force=True))
    doc = json.loads(daemon.ok("network", "inspect", "churn").stdout)[0]
    assert doc["Containers"] == {}


def test_cri_pod_gets_an_address_dns_config_and_host_port(
    daemon: Daemon, image: str, tmp_path: Path
) -> None:
    rt = daemon.cri_runtime()
    conditions = {c.type: c.status for c in rt.Status(cri.StatusRequest()).status.conditions}
    assert conditions["NetworkReady"] is True
    port = free_port()
    config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="web", uid="net-uid", namespace="default"),
        hostname="web",
        log_directory=str(tmp_path),
        dns_config=cri.DNSConfig(
            servers=["192.0.2.53"], searches=["svc.test"], options=["ndots:5"]
        ),
        port_mappings=[cri.PortMapping(protocol=cri.TCP, container_port=8080, host_port=port)],
    )
    pod = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    try:
        status = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod)).status
        assert status.network.ip.startswith("10.85.")
        ctr_config = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name="httpd"),
            image=cri.ImageSpec(image=image),
            command=["/bin/sh", "-c"],
            args=["cat /etc/resolv.conf > /tmp/resolv; ip -o -4 addr show eth0 > /tmp/addr; "
                  "exec httpd -f -p 8080 -h /tmp"],
        )  # fmt: skip
        ctr = rt.CreateContainer(
            cri.CreateContainerRequest(pod_sandbox_id=pod, config=ctr_config, sandbox_config=config)
        ).container_id
        rt.StartContainer(cri.StartContainerRequest(container_id=ctr))
        addr = retry_http(f"http://127.0.0.1:{port}/addr")
        assert status.network.ip in addr
        resolv = http_get(f"http://127.0.0.1:{port}/resolv")
        assert "nameserver 192.0.2.53" in resolv and "search svc.test" in resolv
        rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod))
        assert _port_free(port)  # the hostPort is free again
    finally:
        rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))
    with pytest.raises(grpc.RpcError):
        rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod))


def test_daemon_restart_keeps_addresses_names_and_ports(tmp_path: Path) -> None:
    with Daemon() as d:
        img = d.import_busybox("netbox:1")
        d.ok("network", "create", "keep")
        port = free_port()
        d.ok("run", "-d", "--name", "srv", "--network", "keep", "--network-alias", "api",
             "-p", f"{port}:80", img, "httpd", "-f", "-p", "80", "-h", "/etc")  # fmt: skip
        srv_ip = ip_of(d, "srv", "keep")
        srv_id = json.loads(d.ok("inspect", "srv").stdout)[0]["Id"]
        assert retry_http(f"http://127.0.0.1:{port}/hostname").strip() == srv_id[:12]
        d.stop()
        # While the daemon is away the forward keeps working ...
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == srv_id[:12]
        d.start()
        # ... and after it is back: the port, the names, and no address handed out twice.
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == srv_id[:12]
        out = d.ok(
            "run", "--rm", "--network", "keep", img, "sh", "-c",
            "ip -o -4 addr show eth0; wget -qO- http://api/hostname",
        ).stdout  # fmt: skip
        assert srv_id[:12] in out and srv_ip not in out.split("\n", 1)[0]
        d.ok("rm", "-f", "srv")
        wait_for(lambda: _port_free(port), what="the published port to be released")


def _port_free(port: int, kind: int = socket.SOCK_STREAM) -> bool:
    """A new server could take the port (as servers do: SO_REUSEADDR, past TIME_WAIT)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def test_pasta_uplink_when_asked_for(tmp_path: Path) -> None:
    """`auto` may pick slirp4netns (see rootlessns._check_pasta_build); pasta still works."""
    d = Daemon()
    d.env["RUNTIMED_NETWORK_BACKEND"] = "pasta"
    with d:
        uplink = json.loads((d.socket.parent / "network" / "uplink.json").read_text())
        assert uplink["backend"] == "pasta"
        img = d.import_busybox("netbox:1")
        received: list[bytes] = []
        server = host_server(received)
        try:
            out = d.ok(
                "run", "--rm", img, "sh", "-c",
                "host=$(awk '/host.containers.internal/ {print $1; exit}' /etc/hosts); "
                f"(echo via-pasta; sleep 3) | nc -w 5 $host {server.port}",
            ).stdout  # fmt: skip
        finally:
            server.close()
        assert received == [b"via-pasta\n"] and "from-host" in out
        # TCP to the host's address does not cross pasta (see portproxy), so its 2023
        # build's lost FINs and mixed-up data on half-closed connections do not show.
        for _ in range(3):
            bulk_to_host(d, img, 8 << 20)
        port = free_port()
        d.ok("run", "-d", "--name", "web", "-p", f"{port}:80", img, "httpd", "-f", "-p", "80",
             "-h", "/etc")  # fmt: skip
        web_id = json.loads(d.ok("inspect", "web").stdout)[0]["Id"]
        assert retry_http(f"http://127.0.0.1:{port}/hostname").strip() == web_id[:12]


# UDP to host.containers.internal:ARGV1, then TCP to host.containers.internal:ARGV2 and
# to gw.test:ARGV3 (--add-host gw.test:host-gateway); prints what each TCP server said.
TRY_THE_HOST = """
import socket, sys
host = next(l.split()[0] for l in open("/etc/hosts") if "host.containers.internal" in l)
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"udp", (host, int(sys.argv[1])))
for name, port in (("host.containers.internal", sys.argv[2]), ("gw.test", sys.argv[3])):
    try:
        with socket.create_connection((name, int(port)), timeout=3) as conn:
            conn.settimeout(3)
            conn.sendall(b"tcp\\n")
            print(f"{name}:", conn.recv(100))
    except OSError as exc:
        print(f"{name}: failed:", exc)
print("attempted")
"""


def test_host_loopback_is_closed_by_default_and_host_gateway_reaches_the_host(
    daemon: Daemon, image: str
) -> None:
    """By default (as in rootless Docker and Podman) a service on the host's 127.0.0.1 is
    out of the containers' reach, TCP and UDP, through host.containers.internal; one bound
    to the host's own address answers, also through `--add-host NAME:host-gateway`."""
    private: list[bytes] = []
    public: list[bytes] = []
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.5)
    with host_server(private, "127.0.0.1") as loopback, host_server(public) as own:
        out = daemon.ok(
            "run", "--rm", "--add-host", "gw.test:host-gateway", *PY, image,
            "/usr/bin/python3", "-c", TRY_THE_HOST, str(udp.getsockname()[1]),
            str(loopback.port), str(own.port),
        ).stdout  # fmt: skip
    try:
        # The egress forwarder accepts first and then finds the host refusing, so the
        # connection may open and close at once: what counts is that nothing arrived.
        assert "attempted" in out and out.count("from-host") == 1, out
        assert "gw.test: b'from-host\\n'" in out, out
        assert private == [] and public == [b"tcp\n"]
        with pytest.raises(TimeoutError):
            udp.recvfrom(100)
    finally:
        udp.close()


def test_host_loopback_true_opens_the_hosts_loopback(tmp_path: Path) -> None:
    """runtimed.toml `host_loopback = true` (slirp4netns's allow_host_loopback): the host's
    127.0.0.1 is open to containers; a published port answers as always."""
    config = tmp_path / "runtimed.toml"
    config.write_text("host_loopback = true\n")
    received: list[bytes] = []
    with (
        host_server(received, "127.0.0.1") as server,
        Daemon(extra_args=("--config", str(config))) as d,
    ):
        uplink = json.loads((d.socket.parent / "network" / "uplink.json").read_text())
        assert uplink["host_loopback"] is True
        img = d.import_busybox("netbox:1")
        out = d.ok(
            "run", "--rm", "--add-host", "gw.test:host-gateway", *PY, img,
            "/usr/bin/python3", "-c", TRY_THE_HOST, "9", str(server.port), str(server.port),
        ).stdout  # fmt: skip
        assert out.count("from-host") == 2 and received == [b"tcp\n", b"tcp\n"], out
        port = free_port()
        d.ok("run", "-d", "--name", "web", "-p", f"{port}:80", img, "httpd", "-f",
             "-p", "80", "-h", "/etc")  # fmt: skip
        assert retry_http(f"http://127.0.0.1:{port}/hostname").strip()
        d.ok("rm", "-f", "web")

"""Network parts that need no namespace: IPAM, DNS wire and table, -p parsing, network plans,
the nftables text, port binding errors and the forwarder's relay loop on loopback."""

from __future__ import annotations

import errno
import socket
import threading
from pathlib import Path

import pytest

from runtimed.cli.client import CliError
from runtimed.cli.netflags import parse_publish
from runtimed.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from runtimed.network import dnswire, firewall, portproxy, ports
from runtimed.network.dnsd import Table
from runtimed.network.networks import (
    CreateNetwork,
    builtin_networks,
    check_driver,
    host_routes,
    plan,
)
from runtimed.network.portproxy import Proxy
from runtimed.network.request import NetRequest, parse_extra_host
from runtimed.network.store import Endpoint, NetworkStore


@pytest.fixture
def store(tmp_path: Path) -> NetworkStore:
    s = NetworkStore(tmp_path / "network.db")
    yield s
    s.close()


def small_network(store: NetworkStore, subnet: str = "10.30.0.0/29") -> object:
    net = plan(CreateNetwork(name="small", subnet=subnet), [], [])
    store.add_network(net)
    return net


# -- IPAM ---------------------------------------------------------------------------------


def test_ipam_never_hands_out_an_address_twice_and_rotates(store: NetworkStore) -> None:
    net = small_network(store)  # hosts .1-.6, .1 is the gateway: five addresses
    got = [store.allocate(Endpoint(net.id, f"c{i}", ""), net).ip for i in range(5)]
    assert got == [f"10.30.0.{i}" for i in range(2, 7)]
    with pytest.raises(FailedPrecondition, match="no free address"):
        store.allocate(Endpoint(net.id, "c5", ""), net)
    store.release("c1")
    # The freed .3 is the only one left: it comes back, and only once.
    assert store.allocate(Endpoint(net.id, "c6", ""), net).ip == "10.30.0.3"
    with pytest.raises(FailedPrecondition):
        store.allocate(Endpoint(net.id, "c7", ""), net)


def test_ipam_survives_reopening_and_refuses_a_taken_static_address(tmp_path: Path) -> None:
    first = NetworkStore(tmp_path / "n.db")
    net = small_network(first, "10.31.0.0/24")
    a = first.allocate(Endpoint(net.id, "a", ""), net).ip
    first.close()
    second = NetworkStore(tmp_path / "n.db")
    b = second.allocate(Endpoint(net.id, "b", ""), net).ip
    assert a != b
    with pytest.raises(AlreadyExists, match="already in use"):
        second.allocate(Endpoint(net.id, "c", ""), net, requested=a)
    with pytest.raises(AlreadyExists):
        second.allocate(Endpoint(net.id, "a", ""), net)  # one endpoint per network
    second.close()


def test_ipam_ip_range_limits_the_pool(store: NetworkStore) -> None:
    net = plan(CreateNetwork(name="r", subnet="10.32.0.0/24", ip_range="10.32.0.128/30"), [], [])
    store.add_network(net)
    got = {store.allocate(Endpoint(net.id, f"c{i}", ""), net).ip for i in range(2)}
    assert got == {"10.32.0.129", "10.32.0.130"}


# -- network plans ------------------------------------------------------------------------


def test_plan_picks_free_subnets_and_refuses_overlaps() -> None:
    existing = builtin_networks()
    first = plan(CreateNetwork(name="a"), existing, ["10.89.0.0/24"])
    assert first.subnet == "10.89.1.0/24" and first.gateway == "10.89.1.1"
    assert first.dns_enabled and first.bridge.startswith("rd-") and len(first.bridge) <= 15
    with pytest.raises(FailedPrecondition, match="overlaps"):
        plan(CreateNetwork(name="b", subnet="10.88.5.0/24"), existing, [])
    with pytest.raises(InvalidArgument, match="not a host address"):
        plan(CreateNetwork(name="c", subnet="10.40.0.0/24", gateway="10.41.0.1"), [], [])
    with pytest.raises(InvalidArgument, match="not inside"):
        plan(CreateNetwork(name="d", subnet="10.40.0.0/24", ip_range="10.40.1.0/28"), [], [])
    with pytest.raises(InvalidArgument, match="invalid network name"):
        plan(CreateNetwork(name="-bad"), [], [])
    with pytest.raises(InvalidArgument, match="IPv6"):
        plan(CreateNetwork(name="v6", ipv6=True), [], [])


def test_plan_refuses_the_uplinks_network_and_the_hosts_routes(tmp_path: Path) -> None:
    """As Docker refuses a pool that overlaps another: slirp4netns's 10.0.2.0/24 (or the
    host's network that pasta copies) and the host's own routes would become unreachable."""
    pool = "invalid pool request: Pool overlaps with other one on this address space"
    uplink = ["10.0.2.0/24"]
    with pytest.raises(FailedPrecondition, match=f"{pool}: 10.0.2.0/24 overlaps the network of"):
        plan(CreateNetwork(name="u", subnet="10.0.2.0/24"), [], [], uplink)
    with pytest.raises(FailedPrecondition, match=pool):
        plan(CreateNetwork(name="wide", subnet="10.0.0.0/8"), [], [], uplink)
    with pytest.raises(FailedPrecondition, match="a route of the host .192.0.2.0/24."):
        plan(CreateNetwork(name="h", subnet="192.0.2.128/25"), [], ["192.0.2.0/24"], uplink)
    with pytest.raises(FailedPrecondition, match=f"{pool}: 10.88.5.0/24 overlaps network bridge"):
        plan(CreateNetwork(name="b", subnet="10.88.5.0/24"), builtin_networks(), [])
    ok = plan(CreateNetwork(name="ok", subnet="10.0.3.0/24"), [], ["192.0.2.0/24"], uplink)
    assert ok.subnet == "10.0.3.0/24"
    # The routes of one interface only (the uplink's, read inside its namespace).
    routes = tmp_path / "route"
    routes.write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
        "tap0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "tap0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "rd-x\t0000590A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    )
    assert host_routes(str(routes), "tap0") == ["10.0.2.0/24"]
    assert host_routes(str(routes)) == ["10.0.2.0/24", "10.89.0.0/24"]


def test_macvlan_and_ipvlan_are_refused_with_the_reason() -> None:
    for driver in ("macvlan", "ipvlan"):
        with pytest.raises(FailedPrecondition, match="cannot work rootless"):
            check_driver(driver)
    with pytest.raises(InvalidArgument, match="not supported"):
        check_driver("overlay")


# -- requests -----------------------------------------------------------------------------


def test_network_request_modes_and_checks() -> None:
    assert NetRequest().mode == "bridge"
    assert NetRequest(network="host").mode == "host"
    req = NetRequest(network="container:web")
    assert (req.mode, req.peer) == ("container", "web")
    assert NetRequest(network="mynet").network_name == "mynet"
    assert parse_extra_host("db:10.0.0.5") == ("db", "10.0.0.5")
    assert parse_extra_host("v6:[::1]") == ("v6", "::1")
    assert parse_extra_host("gw:host-gateway") == ("gw", "host-gateway")
    for bad in (
        NetRequest(ip="10.0.0.300"),
        NetRequest(dns=["nope"]),
        NetRequest(mac_address="01:00:00:00:00:01"),
        NetRequest(extra_hosts=["nohost"]),
        NetRequest(network="container:"),
    ):
        with pytest.raises(InvalidArgument):
            bad.check()


def test_publish_flag_forms() -> None:
    def simple(spec: str) -> list[tuple[str, int, int, str]]:
        return [(b.host_ip, b.host_port, b.container_port, b.protocol) for b in parse_publish(spec)]

    assert simple("80") == [("", 0, 80, "tcp")]
    assert simple("8080:80") == [("", 8080, 80, "tcp")]
    assert simple("127.0.0.1:8080:80/udp") == [("127.0.0.1", 8080, 80, "udp")]
    assert simple("127.0.0.1::80") == [("127.0.0.1", 0, 80, "tcp")]
    assert simple("[::1]:8080:80") == [("::1", 8080, 80, "tcp")]
    assert simple("8000-8001:80-81") == [("", 8000, 80, "tcp"), ("", 8001, 81, "tcp")]
    assert simple("90-91") == [("", 0, 90, "tcp"), ("", 0, 91, "tcp")]
    (ranged,) = parse_publish("127.0.0.1:8000-8010:80")  # one container port, a host range
    assert (ranged.host_port, ranged.host_port_end, ranged.container_port) == (8000, 8010, 80)
    assert parse_publish("8000:80")[0].host_port_end == 0
    for bad in ("8000-8002:80-81", "80/sctp", "a:b", "0", "1:2:3:4"):
        with pytest.raises(CliError):
            parse_publish(bad)


def test_exposed_ports_for_publish_all() -> None:
    config = {"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "9000": {}}}
    got = [(p.container_port, p.protocol, p.host_port) for p in ports.exposed_ports(config)]
    assert got == [(53, "udp", 0), (80, "tcp", 0), (9000, "tcp", 0)]


# -- DNS ----------------------------------------------------------------------------------


def test_dns_wire_round_trip() -> None:
    query = dnswire.encode_query("Web.Example.")
    q = dnswire.parse_query(query)
    assert (q.name, q.qtype) == ("web.example", dnswire.TYPE_A)
    reply = dnswire.answer(query, q, ["10.0.0.2", "10.0.0.3"])
    assert dnswire.decode_answers(reply) == (0, ["10.0.0.2", "10.0.0.3"])
    nx = dnswire.answer(query, q, [], rcode=dnswire.RCODE_NXDOMAIN)
    assert dnswire.decode_answers(nx) == (dnswire.RCODE_NXDOMAIN, [])
    with pytest.raises(dnswire.WireError):
        dnswire.parse_query(b"\x00\x01")


def test_dns_table_scopes_links_and_round_robin() -> None:
    table = Table(
        {
            "scopes": {
                "10.1.0.1": {"web": ["10.1.0.2"], "pool": ["10.1.0.5", "10.1.0.6", "10.1.0.7"]},
                "10.2.0.1": {"db": ["10.2.0.2"]},
            },
            "clients": {
                "10.1.0.9": {"networks": ["10.1.0.1"], "links": {"backend": ["10.1.0.2"]}},
                "10.2.0.9": {"networks": ["10.2.0.1", "10.1.0.1"], "upstream": ["9.9.9.9"]},
            },
            "upstream": ["169.254.1.1"],
        }
    )
    assert table.lookup("web", "10.1.0.1", "10.1.0.9") == ["10.1.0.2"]
    assert table.lookup("backend", "10.1.0.1", "10.1.0.9") == ["10.1.0.2"]
    assert table.lookup("db", "10.1.0.1", "10.1.0.9") is None  # not on that network
    assert table.lookup("web", "10.2.0.1", "10.2.0.9") == ["10.1.0.2"]  # on both networks
    firsts = [table.lookup("pool", "10.1.0.1", "10.1.0.9")[0] for _ in range(3)]
    assert sorted(firsts) == ["10.1.0.5", "10.1.0.6", "10.1.0.7"]
    assert table.upstream_for("10.2.0.9") == ["9.9.9.9"]
    assert table.upstream_for("10.1.0.9") == ["169.254.1.1"]


# -- firewall -----------------------------------------------------------------------------


def test_ruleset_masquerades_egress_and_isolates_networks() -> None:
    text = firewall.ruleset(
        "tap0",
        [
            firewall.BridgeRule("br-a", "10.1.0.0/24", False),
            firewall.BridgeRule("br-i", "10.2.0.0/24", True),
        ],
    )
    assert 'oifname "tap0" ip saddr 10.1.0.0/24 masquerade' in text
    assert "10.2.0.0/24 masquerade" not in text  # internal: no way out
    assert "policy drop" in text and "delete table ip runtimed" in text
    assert 'iifname "br-a" oifname "tap0" accept' in text
    assert 'iifname "br-i" oifname "tap0"' not in text
    assert 'iifname "br-a" oifname "br-i"' not in text
    assert "redirect" not in text
    redirected = firewall.ruleset(
        "tap0", [firewall.BridgeRule("br-a", "10.1.0.0/24", False)], egress_port=15001
    )
    assert 'iifname "br-a" ip daddr != { 10.1.0.0/24 } meta l4proto tcp redirect to :15001' in (
        redirected
    )


# -- host ports ---------------------------------------------------------------------------


def test_bind_reports_port_in_use_and_privileged_ports(tmp_path: Path, monkeypatch) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(FailedPrecondition, match="already in use"):
            ports.bind([ports.PortSpec(80, host_ip="127.0.0.1", host_port=port)])
    start = tmp_path / "start"
    start.write_text("1024\n")
    monkeypatch.setattr(ports, "unprivileged_port_start", lambda: int(start.read_text()))
    with pytest.raises(FailedPrecondition, match="ip_unprivileged_port_start=80"):
        ports.bind([ports.PortSpec(80, host_port=80)])
    err = ports._explain(OSError(errno.EACCES, "denied"), "0.0.0.0", 81, "tcp")
    assert "sysctl" in str(err)


def _free_run(length: int) -> int:
    """The first of `length` consecutive loopback TCP ports that are free right now."""
    for first in range(41000, 60000, length):
        try:
            for port in range(first, first + length):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise AssertionError("no run of free ports")


def test_bind_first_free_port_of_a_range() -> None:
    first = _free_run(3)
    spec = ports.PortSpec(80, host_ip="127.0.0.1", host_port=first, host_port_end=first + 2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", first))
        holder.listen()
        bound = ports.bind([spec])
        try:
            assert [rec.host_port for _, rec in bound] == [first + 1]
            second = ports.bind([spec])
            try:
                assert [rec.host_port for _, rec in second] == [first + 2]
                with pytest.raises(FailedPrecondition, match=f"{first}-{first + 2}"):
                    ports.bind([spec])  # all three taken
            finally:
                for sock, _ in second:
                    sock.close()
        finally:
            for sock, _ in bound:
                sock.close()
    with pytest.raises(InvalidArgument):
        ports.validate([ports.PortSpec(80, host_port=9000, host_port_end=8000)])


def test_bind_all_or_nothing_and_random_ports() -> None:
    bound = ports.bind([ports.PortSpec(80, host_ip="127.0.0.1"), ports.PortSpec(53, "udp")])
    try:
        records = [rec for _, rec in bound]
        assert records[0].host_ip == "127.0.0.1" and records[0].host_port > 0
        assert {r.protocol for r in records} == {"tcp", "udp"}
        with pytest.raises(FailedPrecondition):
            ports.bind(
                [
                    ports.PortSpec(81, host_ip="127.0.0.1"),
                    ports.PortSpec(82, host_ip="127.0.0.1", host_port=records[0].host_port),
                ]
            )
    finally:
        for sock, _ in bound:
            sock.close()
    assert ports.format_ports(records[:1]) == f"127.0.0.1:{records[0].host_port}->80/tcp"


def test_forwarder_relays_tcp_with_half_close_and_udp(tmp_path: Path) -> None:
    """The relay loop against servers on loopback (no namespace needed for this part)."""
    tcp_server = socket.create_server(("127.0.0.1", 0))
    udp_server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_server.bind(("127.0.0.1", tcp_server.getsockname()[1]))
    port = tcp_server.getsockname()[1]

    def tcp_upper() -> None:
        conn, _ = tcp_server.accept()
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        conn.sendall(data.upper())
        conn.close()

    def udp_echo() -> None:
        data, addr = udp_server.recvfrom(100)
        udp_server.sendto(b"echo:" + data, addr)

    threading.Thread(target=tcp_upper, daemon=True).start()
    threading.Thread(target=udp_echo, daemon=True).start()
    bound = ports.bind(
        [ports.PortSpec(port, "tcp", "127.0.0.1"), ports.PortSpec(port, "udp", "127.0.0.1")]
    )
    lifeline = tmp_path / "lifeline"
    lifeline.touch()
    proxy = Proxy("127.0.0.1", [(s, r.protocol, r.container_port) for s, r in bound])
    runner = threading.Thread(target=proxy.run, args=(str(lifeline),), daemon=True)
    runner.start()
    tcp_port = bound[0][1].host_port
    udp_port = bound[1][1].host_port
    payload = b"abc" * 400_000
    with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := client.recv(1 << 20):
            got += chunk
    assert got == payload.upper()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        client.sendto(b"hi", ("127.0.0.1", udp_port))
        assert client.recvfrom(100)[0] == b"echo:hi"
    lifeline.unlink()
    runner.join(timeout=5)
    assert not runner.is_alive()
    for sock, _ in bound:
        sock.close()
    tcp_server.close()
    udp_server.close()


def test_egress_sends_the_hosts_address_to_the_host_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection the firewall redirected towards the uplink's host address goes to the
    host's loopback, on a socket the host-side maker made; others go where they went."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    destinations = {}  # client port -> where the firewall would say it was going
    monkeypatch.setattr(
        portproxy, "_original_destination", lambda c: destinations[c.getpeername()[1]]
    )
    made = []

    def host_socket() -> socket.socket:
        made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        return made[-1]

    egress = socket.create_server(("127.0.0.1", 0))
    lifeline = tmp_path / "lifeline"
    lifeline.touch()
    proxy = Proxy(
        None, [(egress, "tcp", egress.getsockname()[1])], host_address="10.0.2.2",
        host_target="127.0.0.1", host_socket=host_socket,
    )  # fmt: skip
    runner = threading.Thread(target=proxy.run, args=(str(lifeline),), daemon=True)
    runner.start()

    def echo_once() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(conn.recv(100).upper())

    try:
        for target in (("10.0.2.2", port), ("127.0.0.1", port)):
            threading.Thread(target=echo_once, daemon=True).start()
            with socket.socket() as client:
                client.bind(("127.0.0.1", 0))
                destinations[client.getsockname()[1]] = target
                client.settimeout(10)
                client.connect(egress.getsockname())
                client.sendall(b"hello")
                assert client.recv(100) == b"HELLO"
        assert len(made) == 1  # only the first went through the host-side maker
    finally:
        lifeline.unlink()
        runner.join(timeout=5)
        egress.close()
        server.close()

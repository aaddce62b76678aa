"""Rootless networking: networks, container and pod attachment, DNS and published ports.

Model (RootlessKit's detached namespace and Podman's rootless netns): one
network namespace per daemon with pasta (or slirp4netns) as its uplink; in
it a bridge per network; per running container (or pod) a pinned namespace
with one veth pair per network it is attached to. Addresses come from the
persistent IPAM in network.db, assigned at create (or connect) and released
at remove (or disconnect). Everything a running container needs survives a
daemon restart: the namespaces are pinned in the mount namespace the shim
launcher keeps, and the uplink, the resolver and the port forwarders are
processes of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from runtimed.core.events import NETWORK, EventBus
from runtimed.core.model import Container, Sandbox
from runtimed.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from runtimed.network import (
    etcfiles,
    firewall,
    helperproc,
    hostaddr,
    links,
    networks,
    portproxy,
    ports,
)
from runtimed.network.dnsctl import DnsControl
from runtimed.network.legacylinks import add_to_spec, link_targets
from runtimed.network.netns import NetnsWorker, is_pinned, unpin
from runtimed.network.networks import DEFAULT_NETWORK, POD_NETWORK, CreateNetwork
from runtimed.network.request import NetRequest, parse_extra_host
from runtimed.network.rootlessns import UPLINK_IF, RootlessNetns, Uplink
from runtimed.network.store import Endpoint, NetworkRecord, NetworkStore, PortRecord

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService, CreateRequest
    from runtimed.oci.spec import SpecRequest

log = structlog.get_logger(__name__)

MODES_WITH_OWN_NETNS = ("bridge", "user")
BACKEND_ENV = "RUNTIMED_NETWORK_BACKEND"
# Where the rootless namespace's firewall sends containers' outbound TCP (see firewall.py).
EGRESS_PORT = 15001
# How long a stopped container's veths may outlive it when something other than the
# container still holds its namespace (see _release_runtime).
REAP_DELAY = 2.0
# What a host-network pod's published ports lead to: its own ports, in the rootless namespace.
NODE_TARGET = "127.0.0.1"


def configured_backend(config: object) -> str:
    """runtimed.toml `network_backend` when set, else $RUNTIMED_NETWORK_BACKEND, else auto."""
    chosen = str(getattr(config, "network_backend", "auto") or "auto")
    return chosen if chosen != "auto" else os.environ.get(BACKEND_ENV) or "auto"


@dataclass
class Attachment:
    """How one container is attached right now (for inspect and ps)."""

    network: NetworkRecord
    endpoint: Endpoint


class NetworkService:
    def __init__(
        self,
        *,
        data_dir: Path,
        run_dir: Path,
        containers: ContainerService,
        backend: str = "auto",
        host_loopback: bool = False,
    ) -> None:
        self.store = NetworkStore(data_dir / "network.db")
        self.containers = containers
        self.worker = NetnsWorker()
        self.rootless = RootlessNetns(run_dir, self.worker, backend, host_loopback)
        self.netns_dir = run_dir / "netns"
        self.ports_dir = run_dir / "network" / "ports"
        self.dns = DnsControl(run_dir / "network", self.rootless.pin)
        self.error = "rootless networking has not started"
        self._lock = asyncio.Lock()
        self._active: set[str] = set()  # owners whose namespace is attached right now
        # Veths being made in the background since before_start, awaited by before_run.
        self._wiring: dict[str, asyncio.Future[None]] = {}
        # Stopped owners whose veths a reaper checks a little later, and their names.
        self._reaping: dict[str, tuple[asyncio.Task[None], list[str]]] = {}
        self.events = EventBus()  # the daemon's shared bus replaces this one

    def _announce(self, action: str, net: NetworkRecord, container_id: str = "") -> None:
        attributes = {"name": net.name, "type": net.driver}
        if container_id:
            attributes["container"] = container_id
        self.events.publish(NETWORK, action, net.id, attributes)

    def _announce_endpoints(self, action: str, owner_id: str) -> None:
        """connect/disconnect for each network a container is on (pods have no events)."""
        nets = {n.id: n for n in self.store.networks()}
        for endpoint in self.store.endpoints(owner_id=owner_id):
            if endpoint.kind == "container" and endpoint.network_id in nets:
                self._announce(action, nets[endpoint.network_id], owner_id)

    @property
    def ready(self) -> bool:
        return self.rootless.uplink is not None

    @property
    def uplink(self) -> Uplink | None:
        return self.rootless.uplink

    # -- daemon lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Bring up (or find again) the rootless namespace, bridges, rules and resolver.

        A host without a working uplink still runs the daemon: containers with
        --network none or host work, bridge networking reports why it cannot.
        """
        have = {n.name for n in self.store.networks()}
        for net in networks.builtin_networks():
            if net.name not in have:
                self.store.add_network(net)
        try:
            await self.rootless.ensure()
            for net in self.store.networks():
                await self.worker.run(
                    links.ensure_bridge, net.bridge, net.gateway, net.prefixlen, net.mtu
                )
            await self._ensure_egress()
            await self._apply_firewall()
        except FailedPrecondition as exc:
            self.error = exc.message
            log.warning("network_unavailable", error=exc.message)
            return
        except OSError as exc:
            self.error = f"rootless networking failed: {exc}"
            log.warning("network_unavailable", error=self.error)
            return
        self.error = ""

    async def reconcile(self) -> None:
        """After the containers were restored: running ones keep everything, others lose
        what only a running container holds (an exit may have happened while we were away)."""
        running = {c.id for c in self.containers.list() if c.running}
        pods = {s.id for s in self.containers.records.sandboxes() if s.config.kind == "pod"}
        for owner in set(self.store.port_owners()) | self._pinned_owners():
            if owner not in running and owner not in pods:
                await self._release_runtime(owner)
        for owner in running:
            if is_pinned(self._pin(owner)):
                self._active.add(owner)
        for pod in pods:
            if self.store.endpoints(owner_id=pod):
                self._active.add(pod)
        if self.ready:
            await self._update_dns()

    async def aclose(self, *, idle: bool) -> None:
        """At shutdown; `idle` (nothing runs) also stops the resolver and the uplink."""
        for owner_id, (task, names) in list(self._reaping.items()):
            task.cancel()
            if self.ready:
                with contextlib.suppress(Exception):
                    await self.worker.run(self._reap, owner_id, names)
        self.dns.close()  # the resolver outlives us unless idle: a next daemon watches it
        if idle and self.ready:
            with contextlib.suppress(Exception):
                await self.dns.stop()
            with contextlib.suppress(Exception):
                await self._stop_egress()
            with contextlib.suppress(Exception):
                await self.rootless.teardown()
        self.worker.shutdown()
        self.store.close()

    def namespace_path(self) -> Path:
        """Where the rootless network namespace is pinned (in our mount namespace)."""
        self._require_ready()
        return self.rootless.pin

    def _require_ready(self) -> None:
        if not self.ready:
            raise FailedPrecondition(f"bridge networking is unavailable: {self.error}")

    def _pinned_owners(self) -> set[str]:
        try:
            return {p.name for p in self.netns_dir.iterdir()}
        except OSError:
            return set()

    # -- networks ------------------------------------------------------------------------

    def list(self) -> list[NetworkRecord]:
        return self.store.networks()

    def listed(self) -> list[NetworkRecord]:
        """What `network ls` shows: our networks and docker's host and none rows."""
        return [*self.store.networks(), *map(networks.mode_network, networks.MODE_NETWORKS)]

    def get(self, ref: str) -> NetworkRecord:
        if not ref:
            raise InvalidArgument("network name or id is required")
        found = self.store.network(ref)
        if found is not None:
            return found
        matches = [n for n in self.listed() if n.id.startswith(ref) or n.name == ref]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"network id prefix {ref!r} is ambiguous")
        raise NotFound(f"network {ref} not found")

    def endpoints(self, network: NetworkRecord) -> list[Endpoint]:
        return self.store.endpoints(network_id=network.id)

    def live_endpoints(self, network: NetworkRecord) -> list[Endpoint]:
        """The endpoints of running containers and ready pods (what `network inspect` lists)."""
        return [e for e in self.endpoints(network) if self._owner_live(e.owner_id)]

    def _owner_live(self, owner_id: str) -> bool:
        try:
            return self.containers.get(owner_id).running
        except (NotFound, InvalidArgument):
            sandbox = self.containers.records.get_sandbox(owner_id)
            return bool(sandbox and sandbox.state.ready)

    async def create(self, req: CreateNetwork) -> NetworkRecord:
        async with self._lock:
            existing = self.store.networks()
            if any(n.name == req.name for n in existing):
                raise AlreadyExists(f"network with name {req.name} already exists")
            uplink = await self.rootless.uplink_routes()
            net = networks.plan(req, existing, networks.host_routes(), uplink)
            self.store.add_network(net)
            if not self.ready:
                return net
            try:
                await self.worker.run(
                    links.ensure_bridge, net.bridge, net.gateway, net.prefixlen, net.mtu
                )
                await self._apply_firewall()
                await self._update_dns()
            except BaseException:
                with contextlib.suppress(Exception):
                    self.store.remove_network(net.id)
                    await self.worker.run(links.delete_link, net.bridge)
                raise
        self._announce("create", net)
        log.info("network_created", network_id=net.id, name=net.name, subnet=net.subnet)
        return net

    async def remove(self, ref: str) -> NetworkRecord:
        async with self._lock:
            net = self.get(ref)
            if net.builtin:
                raise FailedPrecondition(
                    f"{net.name} is a pre-defined network and cannot be removed"
                )
            users = self.store.endpoints(network_id=net.id)
            if users:
                names = ", ".join(sorted(self.owner_name(e.owner_id) for e in users))
                raise FailedPrecondition(
                    f"error while removing network: network {net.name} id {net.id} has active "
                    f"endpoints ({names}): disconnect or remove them first"
                )
            self.store.remove_network(net.id)
            if self.ready:
                await self.worker.run(links.delete_link, net.bridge)
                await self._apply_firewall()
                await self._update_dns()
        self._announce("destroy", net)
        log.info("network_removed", network_id=net.id, name=net.name)
        return net

    async def prune(self, keep: Any = None) -> list[NetworkRecord]:
        removed = []
        for net in self.store.networks():
            if net.builtin or self.store.endpoints(network_id=net.id):
                continue
            if keep is not None and keep(net):
                continue
            with contextlib.suppress(FailedPrecondition, NotFound):
                removed.append(await self.remove(net.id))
        return removed

    def owner_name(self, owner_id: str) -> str:
        try:
            return self.containers.get(owner_id).name
        except (NotFound, InvalidArgument):
            sandbox = self.containers.records.get_sandbox(owner_id)
            return sandbox.name if sandbox else owner_id[:12]

    # -- container hooks -----------------------------------------------------------------

    async def validate(self, request: CreateRequest) -> None:
        if request.sandbox_id:
            return  # a pod's container uses the pod's network
        net = NetRequest.from_extras(request.extras)
        net.check()
        mode = net.mode
        specs = [ports.PortSpec.from_dict(p) for p in net.ports]
        ports.validate(specs)
        if mode in ("none", "container") and (specs or net.publish_all):
            raise InvalidArgument(
                "conflicting options: port publishing and the container type network mode"
            )
        if mode in ("none", "host", "container"):
            if net.ip or net.aliases or net.mac_address:
                raise InvalidArgument(
                    f"conflicting options: --ip, --network-alias and --mac-address need a "
                    f"bridge network, not --network {net.network}"
                )
            if mode == "container":
                peer = self.containers.get(net.peer)
                if request.name and peer.name == request.name:
                    raise InvalidArgument("a container cannot join its own network namespace")
            return
        target = self.get(net.network_name)
        if mode == "bridge" and net.aliases:
            raise InvalidArgument(
                "network-scoped aliases are supported only for containers on user-defined networks"
            )
        if net.ip:
            if target.builtin:
                raise InvalidArgument(
                    "user specified IP address is supported only on user-defined networks"
                )
            _check_in_subnet(net.ip, target)
            if any(e.ip == net.ip for e in self.store.endpoints(network_id=target.id)):
                raise AlreadyExists(f"Address already in use: {net.ip} on network {target.name}")
        for link in net.links:
            self.containers.get(link.partition(":")[0])

    async def created(self, container: Container, request: CreateRequest) -> None:
        if container.sandbox_id != container.id:
            await self._pod_container_files(container)
            return
        net = NetRequest.from_extras(request.extras)
        specs = [ports.PortSpec.from_dict(p) for p in net.ports]
        if net.publish_all and net.mode != "host":
            specs += ports.exposed_ports(self._image_config(container))
        if net.mode == "host":
            specs = []
        links_resolved = []
        for link in net.links:
            name, _, alias = link.partition(":")
            target = self.containers.get(name)
            links_resolved.append({"id": target.id, "name": target.name, "alias": alias or name})
        doc = {
            "mode": net.mode,
            "peer": self.containers.get(net.peer).id if net.mode == "container" else "",
            "ports": [s.to_dict() for s in specs],
            "links": links_resolved,
        }
        self.store.set_owner(container.id, doc)
        if net.mode in MODES_WITH_OWN_NETNS:
            target = self.get(net.network_name)
            endpoint = Endpoint(
                network_id=target.id,
                owner_id=container.id,
                ip="",
                aliases=list(net.aliases),
                static_ip=bool(net.ip),
                mac=net.mac_address.lower(),
            )
            self.store.allocate(endpoint, target, net.ip)
        self._write_etc(container)

    async def before_start(self, container: Container, spec: SpecRequest) -> None:
        doc = self.store.owner(container.id)
        if doc is None:
            return  # a pod's container, or one made before networking existed: as it was
        mode = doc["mode"]
        if mode == "host":
            spec.namespaces.network = None
            spec.namespaces.host_network = True
            self._write_etc(container)
            return
        if mode == "none":
            return
        if mode == "container":
            spec.namespaces.network, host = self._peer_netns(doc["peer"])
            spec.namespaces.host_network = host
            if host:
                spec.namespaces.network = None
            await asyncio.to_thread(self._copy_peer_files, container, doc["peer"])
            return
        if mode == "bridge" and doc.get("links"):
            self._add_link_env(container, doc["links"], spec)
        self._require_ready()
        await self._release_runtime(container.id)
        try:
            pin = self._pin(container.id)
            plans = self._plans(container.id)
            # Active before its veths exist: a reaper of an earlier run must leave them be.
            self._active.add(container.id)
            await self._make_netns(container.id, pin, plans)
            self._announce_endpoints("connect", container.id)
            spec.namespaces.network = str(pin)
            spec.namespaces.host_network = False
            if self._in_dns(container.id):
                await self._update_dns()
            self._write_etc(container)
            specs = [ports.PortSpec.from_dict(p) for p in doc.get("ports") or []]
            if specs and plans:
                await self._publish(container.id, plans[0].ip, specs)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._release_runtime(container.id)
            raise

    def _add_link_env(self, container: Container, links: list[Any], spec: SpecRequest) -> None:
        """docker's legacy link variables: on the default bridge only, as in docker."""
        targets = link_targets(
            container,
            links,
            self.containers,
            ip_of=self._bridge_ip,
            image_config=self._image_config,
            published=lambda owner_id: [
                ports.PortSpec.from_dict(p)
                for p in (self.store.owner(owner_id) or {}).get("ports") or []
            ],
        )
        add_to_spec(spec, container.name, targets)

    def _bridge_ip(self, owner_id: str) -> str:
        """`owner_id`'s address on the default bridge, else on its first network."""
        endpoints = self.store.endpoints(owner_id=owner_id)
        bridge = self.store.network(DEFAULT_NETWORK)
        on_bridge = [e for e in endpoints if bridge is not None and e.network_id == bridge.id]
        return (on_bridge or endpoints)[0].ip if endpoints else ""

    async def before_run(self, container: Container) -> None:
        wiring = self._wiring.pop(container.id, None)
        if wiring is not None:
            await wiring

    async def after_stop(self, container: Container) -> None:
        await self._release_runtime(container.id)

    async def before_remove(self, container: Container) -> None:
        await self._release_runtime(container.id)
        self.store.forget_owner(container.id)

    async def restored(self, container: Container) -> None:
        """Running at daemon start: its namespace and forwarder should be there still."""
        if is_pinned(self._pin(container.id)):
            self._active.add(container.id)
        doc = self.store.owner(container.id) or {}
        if doc.get("ports") and not self._forwarder_alive(container.id):
            eps = self.store.endpoints(owner_id=container.id)
            if eps:
                specs = [ports.PortSpec.from_dict(p) for p in doc["ports"]]
                with contextlib.suppress(Exception):
                    await self._publish(container.id, eps[0].ip, specs)

    # -- connect / disconnect ------------------------------------------------------------

    async def connect(
        self, network_ref: str, container_ref: str, *, aliases: list[str], ip: str = ""
    ) -> None:
        async with self._lock:
            net = self.get(network_ref)
            if net.name in networks.MODE_NETWORKS:
                raise FailedPrecondition(
                    f"container cannot be disconnected from {net.name} network or connected "
                    f"to {net.name} network"
                )
            container = self.containers.get(container_ref)
            doc = self.store.owner(container.id)
            if doc is None or doc["mode"] not in MODES_WITH_OWN_NETNS:
                mode = (doc or {}).get("mode", "none")
                raise FailedPrecondition(
                    f"container {container.name} uses --network {mode} and cannot be "
                    "connected to other networks"
                )
            if self.store.endpoints(owner_id=container.id, network_id=net.id):
                raise AlreadyExists(
                    f"endpoint with name {container.name} already exists in network {net.name}"
                )
            if ip:
                if net.builtin:
                    raise InvalidArgument(
                        "user specified IP address is supported only on user-defined networks"
                    )
                _check_in_subnet(ip, net)
            if aliases and net.name == DEFAULT_NETWORK:
                raise InvalidArgument(
                    "network-scoped aliases are supported only on user-defined networks"
                )
            used = {e.ifname for e in self.store.endpoints(owner_id=container.id)}
            ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
            endpoint = Endpoint(
                network_id=net.id,
                owner_id=container.id,
                ip="",
                aliases=list(aliases),
                ifname=ifname,
                static_ip=bool(ip),
            )
            self.store.allocate(endpoint, net, ip)
            if container.id in self._active:
                try:
                    plan = self._plan(container.id, net, endpoint, default_route=False)
                    await self.worker.run(self._attach_live, container.id, plan)
                except BaseException:
                    self.store.release(container.id, net.id)
                    raise
                await self._update_dns()
                self._announce("connect", net, container.id)
        log.info("network_connected", network=net.name, container_id=container.id)

    async def disconnect(self, network_ref: str, container_ref: str, *, force: bool) -> None:
        async with self._lock:
            net = self.get(network_ref)
            container = self.containers.get(container_ref)
            found = self.store.endpoints(owner_id=container.id, network_id=net.id)
            if not found:
                raise FailedPrecondition(
                    f"container {container.name} is not connected to network {net.name}"
                )
            if container.id in self._active:
                await self.worker.run(links.delete_link, links.veth_name(container.id, net.id))
            self.store.release(container.id, net.id)
            if container.id in self._active:
                await self._update_dns()
        self._announce("disconnect", net, container.id)
        log.info("network_disconnected", network=net.name, container_id=container.id)

    # -- pods (CRI) ----------------------------------------------------------------------

    async def attach_pod(self, sandbox: Sandbox, port_mappings: list[ports.PortSpec]) -> str:
        """Give a pod (its pinned namespace) an address on the pod network; returns it."""
        self._require_ready()
        net = self.get(POD_NETWORK)
        pin = Path(sandbox.config.ns_dir) / "net"
        ports.validate(port_mappings)
        self.store.set_owner(
            sandbox.id, {"mode": "pod", "ports": [p.to_dict() for p in port_mappings]}
        )
        try:
            endpoint = Endpoint(network_id=net.id, owner_id=sandbox.id, ip="", kind="pod")
            self.store.allocate(endpoint, net)
            plan = self._plan(sandbox.id, net, endpoint, default_route=True)
            await self.worker.run(links.attach, self.worker, pin, [plan])
            self._active.add(sandbox.id)
            if port_mappings:
                await self._publish(sandbox.id, endpoint.ip, port_mappings, in_netns=True)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.detach_pod(sandbox.id)
            raise
        log.info("pod_attached", sandbox_id=sandbox.id, ip=endpoint.ip)
        return endpoint.ip

    async def attach_node_pod(self, sandbox: Sandbox, port_mappings: list[ports.PortSpec]) -> None:
        """A host-network pod: its containers join the rootless namespace itself (see
        SandboxService.namespaces), where its ports are open already; they are published
        on the host too, to 127.0.0.1 in that namespace."""
        self._require_ready()
        ports.validate(port_mappings)
        self.store.set_owner(
            sandbox.id, {"mode": "node", "ports": [p.to_dict() for p in port_mappings]}
        )
        try:
            if port_mappings:
                await self._publish(sandbox.id, NODE_TARGET, port_mappings)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.detach_pod(sandbox.id)
            raise
        log.info("node_pod_attached", sandbox_id=sandbox.id)

    async def detach_pod(self, sandbox_id: str) -> None:
        """Stop the pod's forwards and take its address back; idempotent."""
        self._stop_forwarder(sandbox_id)
        net = self.store.network(POD_NETWORK)
        if net is not None and self.ready:
            await self.worker.run(links.delete_link, links.veth_name(sandbox_id, net.id))
        self._active.discard(sandbox_id)
        self.store.forget_owner(sandbox_id)

    def pod_ip(self, sandbox_id: str) -> str:
        found = self.store.endpoints(owner_id=sandbox_id)
        return found[0].ip if found else ""

    def pod_dns_fallback(self) -> str:
        return self.uplink.dns if self.uplink else ""

    # -- what inspect and ps show --------------------------------------------------------

    def settings(self, container_id: str) -> dict[str, Any]:
        return self.store.owner(container_id) or {}

    def attachments(self, container_id: str) -> list[Attachment]:
        nets = {n.id: n for n in self.store.networks()}
        return [
            Attachment(nets[e.network_id], e)
            for e in self.store.endpoints(owner_id=container_id)
            if e.network_id in nets
        ]

    def published(self, owner_id: str) -> list[PortRecord]:
        return self.store.ports(owner_id)

    # -- internals -----------------------------------------------------------------------

    def _pin(self, owner_id: str) -> Path:
        return self.netns_dir / owner_id

    def _in_dns(self, owner_id: str) -> bool:
        """Whether the resolver's table mentions this owner (user-defined networks only)."""
        dns_nets = {n.id for n in self.store.networks() if n.dns_enabled}
        return any(e.network_id in dns_nets for e in self.store.endpoints(owner_id=owner_id))

    def _plan(
        self, owner_id: str, net: NetworkRecord, endpoint: Endpoint, *, default_route: bool
    ) -> links.VethPlan:
        return links.VethPlan(
            host_name=links.veth_name(owner_id, net.id),
            bridge=net.bridge,
            ifname=endpoint.ifname,
            ip=endpoint.ip,
            prefixlen=net.prefixlen,
            mac=endpoint.mac_address,
            gateway="" if net.internal else net.gateway,
            mtu=net.mtu,
            default_route=default_route,
        )

    def _plans(self, owner_id: str) -> list[links.VethPlan]:
        nets = {n.id: n for n in self.store.networks()}
        plans, routed = [], False
        for endpoint in self.store.endpoints(owner_id=owner_id):
            net = nets.get(endpoint.network_id)
            if net is None:
                continue
            route = not routed and not net.internal
            routed = routed or route
            plans.append(self._plan(owner_id, net, endpoint, default_route=route))
        return plans

    async def _make_netns(self, owner_id: str, pin: Path, plans: list[links.VethPlan]) -> None:
        """Pin a new namespace for `owner_id`; its veths are made in the background.

        crun needs only the namespace to create the container, so the veths (a few
        milliseconds of netlink) are made meanwhile; before_run awaits them.
        """
        await self.worker.run(self._pin_fresh, pin)
        # The worker runs one job at a time, in order: the veths follow the pin.
        attach = functools.partial(links.attach, self.worker, pin, plans, loopback=True)
        self._wiring[owner_id] = asyncio.ensure_future(self.worker.run(attach))

    def _pin_fresh(self, pin: Path) -> None:  # on the worker thread
        try:
            self.worker.pin_new(pin)
        finally:
            self.worker.go_home()

    def _attach_live(self, owner_id: str, plan: links.VethPlan) -> None:
        pin = self._pin(owner_id)
        plan_route = plan
        if not links.has_default_route(self.worker, pin) and plan.gateway:
            plan_route = links.VethPlan(**{**plan.__dict__, "default_route": True})
        links.attach(self.worker, pin, [plan_route])

    async def _release_runtime(self, owner_id: str) -> None:
        """What only a running container holds: forwarder, veths, pinned namespace.

        The veths go with the namespace: unpinned, it is torn down by the kernel in the
        background, veths included, within milliseconds. Deleting a veth ourselves
        waits for an RCU grace period (about 20 ms here) on the path of every `run
        --rm`. Should something else still hold the namespace (a container that
        joined it with --network container:), a reaper deletes the veths a little later.
        """
        wiring = self._wiring.pop(owner_id, None)
        if wiring is not None:
            with contextlib.suppress(Exception):  # failed: the start that made it says so
                await wiring
        self._stop_forwarder(owner_id)
        pin = self._pin(owner_id)
        was_active = owner_id in self._active and self._in_dns(owner_id)
        active = owner_id in self._active
        pinned = active or is_pinned(pin) or pin.exists()
        if active:
            self._announce_endpoints("disconnect", owner_id)
        self._active.discard(owner_id)
        if not pinned:
            return
        with contextlib.suppress(OSError):
            unpin(pin)  # two syscalls: not worth a hop to the worker
        if self.ready:
            self._reap_later(owner_id)
            if was_active:
                await self._update_dns()

    def _veth_names(self, owner_id: str) -> list[str]:
        return [
            links.veth_name(owner_id, e.network_id) for e in self.store.endpoints(owner_id=owner_id)
        ]

    def _reap_later(self, owner_id: str) -> None:
        names = self._veth_names(owner_id)  # now: a removal forgets the endpoints
        pending = self._reaping.pop(owner_id, None)
        if pending is not None:
            pending[0].cancel()
        if not names:
            return

        async def later() -> None:
            try:
                await asyncio.sleep(REAP_DELAY)
                await self.worker.run(self._reap, owner_id, names)
            except Exception:  # noqa: BLE001 - a failed reap leaves a veth, nothing worse
                log.warning("veth_reap_failed", owner_id=owner_id, exc_info=True)
            finally:
                if self._reaping.get(owner_id, (None,))[0] is asyncio.current_task():
                    del self._reaping[owner_id]

        task = asyncio.create_task(later(), name=f"reap-{owner_id[:12]}")
        self._reaping[owner_id] = (task, names)

    def _reap(self, owner_id: str, names: list[str]) -> None:
        """Worker thread: delete the veths of a stopped owner that are still there."""
        if owner_id in self._active:  # running again: these names are its new veths
            return
        links.delete_links(names)

    def _peer_netns(self, peer_id: str) -> tuple[str | None, bool]:
        peer = self.containers.get(peer_id)
        if not peer.running:
            raise FailedPrecondition(
                f"cannot join the network of container {peer.name}: it is not running"
            )
        doc = self.store.owner(peer.id) or {}
        if doc.get("mode") == "host":
            return None, True
        if doc.get("mode") == "container":
            return self._peer_netns(doc["peer"])
        pin = self._pin(peer.id)
        if is_pinned(pin):
            return str(pin), False
        return f"/proc/{peer.state.pid}/ns/net", False

    def _copy_peer_files(self, container: Container, peer_id: str) -> None:
        mine = self.containers.files_dir(container.id)
        theirs = self.containers.files_dir(peer_id)
        for name in ("hosts", "resolv.conf"):
            with contextlib.suppress(OSError):
                etcfiles.write(mine / name, (theirs / name).read_text())

    def _forwarder_pid_file(self, owner_id: str) -> Path:
        return self.ports_dir / f"{owner_id}.pid"

    def _forwarder_alive(self, owner_id: str) -> bool:
        pid = helperproc.read_pid(self._forwarder_pid_file(owner_id))
        return helperproc.alive(pid, portproxy.MARKER)

    async def _publish(
        self, owner_id: str, target_ip: str, specs: list[ports.PortSpec], *, in_netns: bool = False
    ) -> None:
        """Bind the host ports (and with `in_netns` the same ports on 127.0.0.1 in the rootless
        namespace, for a pod's hostPorts) and hand them all to one forwarder."""
        bound = await asyncio.to_thread(ports.bind, specs)
        inner: list[tuple[socket.socket, PortRecord]] = []
        try:
            if in_netns:
                inner = await self.worker.run(ports.bind_loopback, specs)
            lifeline = self.ports_dir / f"{owner_id}.lifeline"
            pid = await asyncio.to_thread(
                ports.start_forwarder, self.rootless.pin, target_ip, bound + inner, lifeline
            )
            self._forwarder_pid_file(owner_id).write_text(str(pid))
            self.store.set_ports(owner_id, [rec for _, rec in bound])
        finally:
            for sock, _ in bound + inner:
                sock.close()
        log.info("ports_published", owner_id=owner_id, ports=[r.__dict__ for _, r in bound])

    def _stop_forwarder(self, owner_id: str) -> None:
        pid_file = self._forwarder_pid_file(owner_id)
        pid = helperproc.read_pid(pid_file)
        with contextlib.suppress(FileNotFoundError):
            (self.ports_dir / f"{owner_id}.lifeline").unlink()
        if pid:
            helperproc.stop(pid, portproxy.MARKER)
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
        self.store.set_ports(owner_id, [])

    async def _ensure_egress(self) -> None:
        """The forwarder that terminates containers' outbound TCP in the rootless namespace."""
        assert self.uplink is not None
        pid_file = self.rootless.dir / "egress.pid"
        # TCP to the uplink's address for the host is opened from the host's namespace:
        # to its loopback when runtimed.toml allows that, else to the host's own address
        # (services bound only to 127.0.0.1 stay out of reach, as in rootless Docker).
        # (primary_address: a few syscalls, no packet sent.)
        loopback = self.uplink.host_loopback
        host_target = "127.0.0.1" if loopback else hostaddr.primary_address()
        lifeline = self.rootless.dir / "egress.lifeline"
        spec = {
            "netns": str(self.rootless.pin),
            "lifeline": str(lifeline),
            "sockets": [],
            "egress_port": EGRESS_PORT,
            "host_address": self.uplink.host_address,
            "host_target": host_target,
        }
        # The spec is its command line's last word: one made for another uplink is replaced.
        pid = helperproc.read_pid(pid_file)
        if helperproc.alive(pid, json.dumps(spec)):
            return
        await asyncio.to_thread(helperproc.stop, pid, portproxy.MARKER)
        lifeline.touch()
        argv = helperproc.python_module(portproxy.MARKER) + [json.dumps(spec)]
        try:
            pid = await asyncio.to_thread(helperproc.spawn, argv)
        except helperproc.HelperError as exc:
            raise FailedPrecondition(f"the egress forwarder did not start: {exc}") from exc
        pid_file.write_text(str(pid))

    async def _stop_egress(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.rootless.dir / "egress.lifeline").unlink()
        pid_file = self.rootless.dir / "egress.pid"
        pid = helperproc.read_pid(pid_file)
        await asyncio.to_thread(helperproc.stop, pid, portproxy.MARKER)
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()

    async def _apply_firewall(self) -> None:
        rules = [firewall.BridgeRule(n.bridge, n.subnet, n.internal) for n in self.store.networks()]
        text = firewall.ruleset(UPLINK_IF, rules, EGRESS_PORT)
        await asyncio.to_thread(firewall.apply, self.rootless.pin, text)

    def _image_config(self, container: Container) -> dict[str, Any]:
        images = self.containers.images
        record = images.metadata.get_image(container.config.image_id)
        return (images.config(record).get("config") or {}) if record else {}

    # -- DNS -----------------------------------------------------------------------------

    async def _update_dns(self) -> None:
        if not self.ready:
            return
        await self.dns.update(self._dns_table())

    def _dns_table(self) -> dict[str, Any]:
        nets = {n.id: n for n in self.store.networks() if n.dns_enabled}
        uplink = self.uplink
        host_names = {name: [uplink.host_address] for name in etcfiles.HOST_NAMES} if uplink else {}
        scopes: dict[str, dict[str, list[str]]] = {
            n.gateway: dict(host_names) for n in nets.values()
        }
        clients: dict[str, dict[str, Any]] = {}
        ip_of: dict[str, dict[str, str]] = {}  # owner -> network id -> ip
        for owner in sorted(self._active):
            try:
                container = self.containers.get(owner)
            except (NotFound, InvalidArgument):
                continue
            endpoints = self.store.endpoints(owner_id=owner)
            ip_of[owner] = {e.network_id: e.ip for e in endpoints}
            for e in endpoints:
                net = nets.get(e.network_id)
                if net is None:
                    continue
                scope = scopes[net.gateway]
                for name in {container.name, container.id[:12], *e.aliases}:
                    scope.setdefault(name.lower(), []).append(e.ip)
        for owner, by_net in ip_of.items():
            container = self.containers.get(owner)
            net_request = NetRequest.from_extras(container.config.extras)
            doc = self.store.owner(owner) or {}
            link_names: dict[str, list[str]] = {}
            for link in doc.get("links") or []:
                target = ip_of.get(link["id"]) or {}
                ip = next((target[n] for n in by_net if n in target), None)
                ip = ip or next(iter(target.values()), None)
                if ip:
                    for name in {link["alias"], link["name"]}:
                        link_names[name.lower()] = [ip]
            gateways = [nets[n].gateway for n in by_net if n in nets]
            for net_id, ip in by_net.items():
                if net_id in nets:
                    clients[ip] = {
                        "networks": gateways,
                        "links": link_names,
                        "upstream": list(net_request.dns),
                    }
        upstream = [uplink.dns] if uplink else []
        return {
            "listen": sorted(scopes),
            "upstream": upstream,
            "scopes": scopes,
            "clients": clients,
        }

    # -- /etc/hosts and /etc/resolv.conf -------------------------------------------------

    def _write_etc(self, container: Container) -> None:
        # On the loop: a few queries and two small files, usually unchanged (then only
        # read); a thread hop would cost more than that.
        files = self.containers.files_dir(container.id)
        net = NetRequest.from_extras(container.config.extras)
        doc = self.store.owner(container.id) or {}
        mode = doc.get("mode", "none")
        hostname = container.config.spec.get("hostname") or container.id[:12]
        uplink = self.uplink
        host_addr = uplink.host_address if uplink and mode != "host" else ""
        extra = []
        for entry in net.extra_hosts:
            name, ip = parse_extra_host(entry)
            if ip == "host-gateway":
                ip = uplink.host_address if uplink and mode != "host" else "127.0.0.1"
            extra.append((name, ip))
        attachments = self.attachments(container.id)
        own = [a.endpoint.ip for a in attachments]
        link_lines = []
        for link in doc.get("links") or []:
            target = self.store.endpoints(owner_id=link["id"])
            if target:
                link_lines.append((target[0].ip, [link["alias"], link["id"][:12], link["name"]]))
        etcfiles.write(
            files / "hosts",
            etcfiles.hosts(
                hostname,
                own,
                links=link_lines,
                extra=extra,
                host_address=host_addr if mode in MODES_WITH_OWN_NETNS else "",
            ),
        )
        if mode == "host" and not (net.dns or net.dns_search or net.dns_options):
            etcfiles.write(files / "resolv.conf", etcfiles.host_resolv())
            return
        dns_gateways = [a.network.gateway for a in attachments if a.network.dns_enabled]
        # Our resolver answers names and forwards the rest to the --dns servers.
        servers = dns_gateways[:1] if dns_gateways else list(net.dns)
        fallback = uplink.dns if uplink else ""
        etcfiles.write(
            files / "resolv.conf",
            etcfiles.resolv(servers, net.dns_search, net.dns_options, fallback=fallback),
        )

    async def _pod_container_files(self, container: Container) -> None:
        """A pod's container: the pod's DNS, with the uplink's forwarder when there is none."""
        path = self.containers.files_dir(container.id) / "resolv.conf"
        fallback = self.pod_dns_fallback()

        def fix() -> None:
            with contextlib.suppress(OSError):
                text = path.read_text()
                if "nameserver" not in text and fallback:
                    etcfiles.write(path, f"nameserver {fallback}\n" + text)

        await asyncio.to_thread(fix)


def _check_in_subnet(ip: str, net: NetworkRecord) -> None:
    addr = ipaddress.IPv4Address(ip)
    subnet = ipaddress.ip_network(net.subnet)
    if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(
            f"address {ip} is not a host address of network {net.name} ({subnet})"
        )
    if ip == net.gateway:
        raise InvalidArgument(f"address {ip} is the gateway of network {net.name}")

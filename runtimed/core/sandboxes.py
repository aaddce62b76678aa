"""Pod sandboxes: namespaces pinned for a pod's containers to join, and their lifecycle.

No pause image: the network, IPC and UTS namespaces of a pod are pinned by
bind mounts (as CRI-O's pinns does) in the daemon's mount namespace, so they
outlive any container and survive daemon restarts. A pid namespace cannot be
pinned that way, so a pod whose pid mode is POD (the CRI default; kubelet's
shareProcessNamespace) gets a small infra process as its init, forked by the
shim launcher (runtimed_shim.podinfra) and recorded in ns_dir/infra.json. A pod
whose infra process is gone is not ready any more, as a pod whose pause
container exited is not in containerd.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from runtimed_shim import podinfra

from runtimed.core.containers import ContainerService
from runtimed.core.hostfiles import write_host_files
from runtimed.core.model import Sandbox, SandboxConfig, SandboxState, now_ns
from runtimed.errors import FailedPrecondition, NotFound
from runtimed.oci.sandbox_ns import pin_namespaces, unpin_namespaces
from runtimed.oci.spec import NamespacePaths
from runtimed.store.containers import ContainerRecords

log = structlog.get_logger(__name__)

# CRI NamespaceMode values.
POD, CONTAINER, NODE, TARGET = 0, 1, 2, 3
INFRA_FILE = "infra.json"  # the pod's infra process: {"pid", "pid_ns"}


@dataclass
class PodRequest:
    name: str
    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    cri: dict[str, Any] = field(default_factory=dict)  # name, uid, namespace, attempt
    log_directory: str = ""
    dns: dict[str, list[str]] = field(default_factory=dict)
    namespace_options: dict[str, Any] = field(default_factory=dict)  # network, pid, ipc modes
    runtime_handler: str = ""
    sysctls: dict[str, str] = field(default_factory=dict)  # set in the pod's namespaces
    resources: dict[str, Any] = field(default_factory=dict)  # see SandboxConfig.resources


class SandboxService:
    def __init__(
        self,
        *,
        records: ContainerRecords,
        containers: ContainerService,
        run_dir: Path,
        data_dir: Path,
    ) -> None:
        self.records = records
        self.containers = containers
        self.run_dir = run_dir
        self.data_dir = data_dir
        # Where host-network pods live: the rootless network namespace (set by the daemon).
        self.node_network: Path | None = None
        # Our user namespace does not change while we run: an infra process must share it.
        self._userns = os.stat("/proc/self/ns/user").st_ino
        containers.sandbox_namespaces = self.namespaces

    def ns_dir(self, sandbox_id: str) -> Path:
        return self.run_dir / "sandboxes" / sandbox_id

    def files_dir(self, sandbox_id: str) -> Path:
        return self.data_dir / "sandboxes" / sandbox_id

    def get(self, ref: str) -> Sandbox:
        sandbox = self.records.get_sandbox(ref)
        if sandbox is None or sandbox.config.kind != "pod":
            matches = [s for s in self.pods() if s.id.startswith(ref)] if ref else []
            if len(matches) != 1:
                raise NotFound(f"pod sandbox {ref!r} not found")
            return matches[0]
        return self._check_infra(sandbox)

    def pods(self) -> list[Sandbox]:
        return [self._check_infra(s) for s in self.records.sandboxes() if s.config.kind == "pod"]

    def any_pods(self) -> bool:
        """Whether any pod exists, without checking their infra processes (as pods() does)."""
        return any(s.config.kind == "pod" for s in self.records.sandboxes())

    # -- the infra process (shared pid namespace) ---------------------------------------

    @staticmethod
    def infra_file(sandbox: Sandbox) -> Path:
        return Path(sandbox.config.ns_dir) / INFRA_FILE

    def infra_pid(self, sandbox: Sandbox) -> int | None:
        """The pid of the pod's live infra process, if it has one our containers can join."""
        pid = podinfra.find(str(self.infra_file(sandbox)))
        if pid is None:
            return None
        try:
            # One from a user namespace of an earlier daemon cannot be joined from ours.
            same_userns = os.stat(f"/proc/{pid}/ns/user").st_ino == self._userns
        except OSError:
            return None
        return pid if same_userns else None

    def _check_infra(self, sandbox: Sandbox) -> Sandbox:
        """A ready pod whose infra process is gone becomes not ready (and stays so)."""
        if (
            sandbox.state.ready
            and self.infra_file(sandbox).exists()
            and self.infra_pid(sandbox) is None
        ):
            sandbox.state.ready = False
            sandbox.state.stopped_at = now_ns()
            self.records.save_sandbox_state(sandbox)
            log.warning("sandbox_infra_gone", sandbox_id=sandbox.id)
        return sandbox

    def pid_namespace(self, sandbox: Sandbox) -> str | None:
        """The pod's shared pid namespace, or None for a pod without one (pid mode not POD)."""
        if not self.infra_file(sandbox).exists():
            return None
        pid = self.infra_pid(sandbox)
        if pid is None:
            raise FailedPrecondition(
                f"pod sandbox {sandbox.id} is not ready: its infra process, which holds the "
                "pod's pid namespace, is gone; remove the pod and run it again"
            )
        return f"/proc/{pid}/ns/pid"

    def containers_of(self, sandbox_id: str) -> list:
        return [c for c in self.containers.list() if c.sandbox_id == sandbox_id]

    def namespaces(self, sandbox: Sandbox) -> NamespacePaths:
        """What a container of this pod joins.

        A host-network pod (network mode NODE) joins runtimed's rootless network
        namespace, `node_network`: a kubelet beside a rootless runtime runs there
        (`runtimectl unshare --rootless-netns`), and a rootless runtime could not give
        pods the host's own network anyway (no bridge, no configuring it).
        """
        ns_dir = Path(sandbox.config.ns_dir)
        opts = sandbox.config.namespace_options
        node_network = opts.get("network") == NODE
        if node_network and self.node_network is None:
            raise FailedPrecondition("host-network pods need runtimed's rootless network")
        return NamespacePaths(
            network=str(self.node_network) if node_network else str(ns_dir / "net"),
            ipc=None if opts.get("ipc") in (CONTAINER, NODE) else str(ns_dir / "ipc"),
            uts=str(ns_dir / "uts"),
            pid=self.pid_namespace(sandbox),  # for the containers whose pid mode is POD
            shared_network=node_network,
            host_ipc=opts.get("ipc") == NODE,
        )

    async def run(self, req: PodRequest) -> Sandbox:
        sandbox_id = secrets.token_hex(32)
        ns_dir = self.ns_dir(sandbox_id)
        # As containerd: no hostname in the config means the node's (pod names run long).
        hostname = req.hostname or socket.gethostname()
        config = SandboxConfig(
            kind="pod",
            hostname=hostname,
            labels=dict(req.labels),
            annotations=dict(req.annotations),
            cri=dict(req.cri),
            log_directory=req.log_directory,
            dns={k: list(v) for k, v in req.dns.items()},
            namespace_options=dict(req.namespace_options),
            ns_dir=str(ns_dir),
            runtime_handler=req.runtime_handler,
            resources=dict(req.resources),
        )
        sandbox = Sandbox(sandbox_id, req.name, config, SandboxState(), now_ns())
        host_network = req.namespace_options.get("network") == NODE
        host_ipc = req.namespace_options.get("ipc") == NODE
        try:
            await asyncio.to_thread(
                pin_namespaces,
                ns_dir,
                hostname,
                network=not host_network,
                ipc=not host_ipc,
                sysctls=req.sysctls,
            )
            if req.namespace_options.get("pid", POD) == POD:
                await self.containers.launcher.start_pod_infra(ns_dir / INFRA_FILE)
            await asyncio.to_thread(
                write_host_files,
                self.files_dir(sandbox_id),
                hostname,
                dns_servers=req.dns.get("servers"),
                dns_searches=req.dns.get("searches"),
                dns_options=req.dns.get("options"),
            )
            self.records.add_sandbox(sandbox)
        except BaseException:
            await asyncio.to_thread(self._release, sandbox_id)
            raise
        log.info("sandbox_started", sandbox_id=sandbox_id, name=req.name)
        return sandbox

    def _release(self, sandbox_id: str) -> None:
        with contextlib.suppress(Exception):
            podinfra.stop(str(self.ns_dir(sandbox_id) / INFRA_FILE))
        with contextlib.suppress(Exception):
            unpin_namespaces(self.ns_dir(sandbox_id))
        shutil.rmtree(self.ns_dir(sandbox_id), ignore_errors=True)
        shutil.rmtree(self.files_dir(sandbox_id), ignore_errors=True)

    async def stop(self, ref: str) -> None:
        """Stop every container of the pod; idempotent, absent pods are fine (kubelet)."""
        try:
            sandbox = self.get(ref)
        except NotFound:
            return
        await asyncio.gather(
            *(
                self.containers.stop(c.id, timeout=0)
                for c in self.containers_of(sandbox.id)
                if c.running
            )
        )
        # Its end takes down whatever is left in the pod's pid namespace (exec'd orphans).
        await asyncio.to_thread(podinfra.stop, str(self.infra_file(sandbox)))
        if sandbox.state.ready:
            sandbox.state.ready = False
            sandbox.state.stopped_at = now_ns()
            self.records.save_sandbox_state(sandbox)
        log.info("sandbox_stopped", sandbox_id=sandbox.id)

    async def remove(self, ref: str) -> None:
        try:
            sandbox = self.get(ref)
        except NotFound:
            return
        for container in self.containers_of(sandbox.id):
            await self.containers.remove(container.id, force=True)
        await asyncio.to_thread(self._release, sandbox.id)
        self.records.delete_sandbox(sandbox.id)
        log.info("sandbox_removed", sandbox_id=sandbox.id)

    def restore(self) -> None:
        """At daemon start: release what a crash left of pods never recorded, and mark
        pods whose infra process died while we were away as not ready."""
        known = {s.id for s in self.records.sandboxes()}
        try:
            leftovers = [p.name for p in (self.run_dir / "sandboxes").iterdir()]
        except OSError:
            leftovers = []
        for sandbox_id in leftovers:
            if sandbox_id not in known:
                self._release(sandbox_id)
                log.info("sandbox_leftover_released", sandbox_id=sandbox_id)
        pods = self.pods()  # checks every infra process
        log.info("sandboxes_restored", count=len(pods), ready=sum(p.state.ready for p in pods))

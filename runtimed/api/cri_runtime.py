"""runtime.v1.RuntimeService: pods and containers as kubelet drives them.

Translation only: requests become core calls (SandboxService, ContainerService),
core records become CRI messages. Idempotence follows what kubelet relies on:
stopping or removing what is already stopped or gone returns OK.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from runtimed import __version__
from runtimed.api import cri_events, cri_metrics, cri_stats
from runtimed.api.cri_attrs import container_metadata, cri_containers, labels_match, pod_metadata
from runtimed.api.cri_logpath import confined_log_path
from runtimed.api.cri_mounts import cri_mounts, runtime_handlers
from runtimed.api.cri_network import (
    attach_pod,
    detach_pod,
    network_condition,
    pod_network_status,
)
from runtimed.api.cri_resources import (
    CriResourceRpcs,
    cgroup_driver,
    container_extras,
    pod_extras,
    to_cri,
)
from runtimed.api.cri_security import container_security
from runtimed.api.unimplemented import fill_unimplemented
from runtimed.core.containers import PID_CONTAINER, PID_HOST, PID_OWN, PID_POD, CreateRequest
from runtimed.core.execsync import run_to_exit
from runtimed.core.model import Container, RestartPolicy, Sandbox, Status
from runtimed.core.sandboxes import PodRequest
from runtimed.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from runtimed.gen.runtime.v1 import api_pb2 as cri
from runtimed.gen.runtime.v1 import api_pb2_grpc
from runtimed.streaming import requests as streams

if TYPE_CHECKING:
    from runtimed.services import Runtime
    from runtimed.streaming.server import StreamServer

# kubelet refuses a runtime whose VersionResponse.version is not this.
KUBELET_API_VERSION = "0.1.0"
RUNTIME_NAME = "runtimed"

_STATE = {
    Status.CREATED: cri.CONTAINER_CREATED,
    Status.RUNNING: cri.CONTAINER_RUNNING,
    Status.EXITED: cri.CONTAINER_EXITED,
    Status.UNKNOWN: cri.CONTAINER_UNKNOWN,
}
_PROPAGATION = {
    cri.PROPAGATION_PRIVATE: "rprivate",
    cri.PROPAGATION_HOST_TO_CONTAINER: "rslave",
    cri.PROPAGATION_BIDIRECTIONAL: "rshared",
}
_PROPAGATION_BACK = {v: k for k, v in _PROPAGATION.items()}


def pid_mode(options: cri.NamespaceOption) -> str:
    """A container's CRI pid NamespaceMode as a core pid mode.

    POD (also an empty NamespaceOption) joins the pod's shared namespace, in a
    pod that has one (pod pid mode POD); TARGET joins container target_id's.
    NODE (hostPID) shares the host's pid namespace, with the host's /proc
    bind-mounted: a new procfs cannot be mounted there by a rootless runtime.
    """
    if options.pid == cri.POD:
        return PID_POD
    if options.pid == cri.TARGET:
        if not options.target_id:
            raise InvalidArgument("pid namespace mode TARGET needs namespace_options.target_id")
        return PID_CONTAINER + options.target_id
    if options.pid == cri.NODE:
        return PID_HOST
    if options.pid != cri.CONTAINER:
        raise InvalidArgument(f"unknown pid namespace mode {options.pid}")
    return PID_OWN


class CriRuntimeServicer(CriResourceRpcs, api_pb2_grpc.RuntimeServiceServicer):
    def __init__(self, runtime: Runtime, streaming: StreamServer) -> None:
        self.rt = runtime
        self.streaming = streaming

    @property
    def containers(self):  # noqa: ANN201 - ContainerService
        return self.rt.containers

    @property
    def sandboxes(self):  # noqa: ANN201 - SandboxService
        return self.rt.sandboxes

    # -- runtime ---------------------------------------------------------------

    async def Version(self, request: cri.VersionRequest, context: Any) -> cri.VersionResponse:
        return cri.VersionResponse(
            version=KUBELET_API_VERSION,
            runtime_name=RUNTIME_NAME,
            runtime_version=__version__,
            runtime_api_version="v1",
        )

    async def Status(self, request: cri.StatusRequest, context: Any) -> cri.StatusResponse:
        conditions = [
            cri.RuntimeCondition(type="RuntimeReady", status=True),
            network_condition(self.rt),
        ]
        info = {}
        if request.verbose:
            info["config"] = json.dumps(
                {
                    "runtime": self.rt.oci_runtime.path,
                    "storage_driver": self.rt.snapshotter.name,
                    "rootless": self.rt.rootless,
                }
            )
        return cri.StatusResponse(
            status=cri.RuntimeStatus(conditions=conditions),
            info=info,
            runtime_handlers=runtime_handlers(),
        )

    async def UpdateRuntimeConfig(
        self, request: cri.UpdateRuntimeConfigRequest, context: Any
    ) -> cri.UpdateRuntimeConfigResponse:
        # The pod CIDR matters once pods get networks of their own; accept and remember it.
        self.rt.pod_cidr = request.runtime_config.network_config.pod_cidr
        return cri.UpdateRuntimeConfigResponse()

    async def RuntimeConfig(
        self, request: cri.RuntimeConfigRequest, context: Any
    ) -> cri.RuntimeConfigResponse:
        # kubelet matches its cgroupDriver to this.
        return cri.RuntimeConfigResponse(
            linux=cri.LinuxRuntimeConfiguration(cgroup_driver=cgroup_driver(self.rt))
        )

    # -- sandboxes -------------------------------------------------------------

    async def RunPodSandbox(
        self, request: cri.RunPodSandboxRequest, context: Any
    ) -> cri.RunPodSandboxResponse:
        config = request.config
        meta = config.metadata
        if not meta.name or not meta.uid or not meta.namespace:
            raise InvalidArgument("RunPodSandbox: metadata name, uid and namespace are required")
        name = f"k8s_POD_{meta.name}_{meta.namespace}_{meta.uid}_{meta.attempt}"
        ns = config.linux.security_context.namespace_options
        sandbox = await self.sandboxes.run(
            PodRequest(
                name=name,
                hostname=config.hostname,
                labels=dict(config.labels),
                annotations=dict(config.annotations),
                cri={
                    "name": meta.name,
                    "uid": meta.uid,
                    "namespace": meta.namespace,
                    "attempt": meta.attempt,
                },
                log_directory=config.log_directory,
                dns={
                    "servers": list(config.dns_config.servers),
                    "searches": list(config.dns_config.searches),
                    "options": list(config.dns_config.options),
                },
                namespace_options={"network": ns.network, "pid": ns.pid, "ipc": ns.ipc},
                runtime_handler=request.runtime_handler,
                sysctls=dict(config.linux.sysctls),
                resources=pod_extras(config.linux),
            )
        )
        await attach_pod(self.rt, sandbox, config)
        return cri.RunPodSandboxResponse(pod_sandbox_id=sandbox.id)

    async def StopPodSandbox(
        self, request: cri.StopPodSandboxRequest, context: Any
    ) -> cri.StopPodSandboxResponse:
        await self.sandboxes.stop(request.pod_sandbox_id)
        await detach_pod(self.rt, request.pod_sandbox_id)
        return cri.StopPodSandboxResponse()

    async def RemovePodSandbox(
        self, request: cri.RemovePodSandboxRequest, context: Any
    ) -> cri.RemovePodSandboxResponse:
        await detach_pod(self.rt, request.pod_sandbox_id)
        await self.sandboxes.remove(request.pod_sandbox_id)
        return cri.RemovePodSandboxResponse()

    def _pod_state(self, sandbox: Sandbox) -> int:
        return cri.SANDBOX_READY if sandbox.state.ready else cri.SANDBOX_NOTREADY

    async def PodSandboxStatus(
        self, request: cri.PodSandboxStatusRequest, context: Any
    ) -> cri.PodSandboxStatusResponse:
        sandbox = self.sandboxes.get(request.pod_sandbox_id)
        opts = sandbox.config.namespace_options
        status = cri.PodSandboxStatus(
            id=sandbox.id,
            metadata=pod_metadata(sandbox),
            state=self._pod_state(sandbox),
            created_at=sandbox.created_at,
            network=pod_network_status(self.rt, sandbox),
            linux=cri.LinuxPodSandboxStatus(
                namespaces=cri.Namespace(
                    options=cri.NamespaceOption(
                        network=opts.get("network", 0),
                        pid=opts.get("pid", 0),
                        ipc=opts.get("ipc", 0),
                    )
                )
            ),
            labels=sandbox.config.labels,
            annotations=sandbox.config.annotations,
            runtime_handler=sandbox.config.runtime_handler,
        )
        info = {}
        if request.verbose:
            info["info"] = json.dumps(
                {
                    "ns_dir": sandbox.config.ns_dir,
                    "hostname": sandbox.config.hostname,
                    # As containerd's "pid" (of the pause container): 0 without one.
                    "pid": self.sandboxes.infra_pid(sandbox) or 0,
                }
            )
        return cri.PodSandboxStatusResponse(status=status, info=info)

    async def ListPodSandbox(
        self, request: cri.ListPodSandboxRequest, context: Any
    ) -> cri.ListPodSandboxResponse:
        flt = request.filter
        items = []
        for sandbox in self.sandboxes.pods():
            if flt.id and not sandbox.id.startswith(flt.id):
                continue
            if flt.HasField("state") and self._pod_state(sandbox) != flt.state.state:
                continue
            if not labels_match(sandbox.config.labels, flt.label_selector):
                continue
            items.append(
                cri.PodSandbox(
                    id=sandbox.id,
                    metadata=pod_metadata(sandbox),
                    state=self._pod_state(sandbox),
                    created_at=sandbox.created_at,
                    labels=sandbox.config.labels,
                    annotations=sandbox.config.annotations,
                    runtime_handler=sandbox.config.runtime_handler,
                )
            )
        return cri.ListPodSandboxResponse(items=items)

    # -- stats (api/cri_stats.py) ----------------------------------------------

    async def ContainerStats(
        self, request: cri.ContainerStatsRequest, context: Any
    ) -> cri.ContainerStatsResponse:
        return await cri_stats.container_stats(self.rt, self._container(request.container_id))

    async def ListContainerStats(
        self, request: cri.ListContainerStatsRequest, context: Any
    ) -> cri.ListContainerStatsResponse:
        return await cri_stats.list_container_stats(self.rt, request.filter)

    async def PodSandboxStats(
        self, request: cri.PodSandboxStatsRequest, context: Any
    ) -> cri.PodSandboxStatsResponse:
        sandbox = self.sandboxes.get(request.pod_sandbox_id)
        return await cri_stats.pod_sandbox_stats(self.rt, sandbox)

    async def ListPodSandboxStats(
        self, request: cri.ListPodSandboxStatsRequest, context: Any
    ) -> cri.ListPodSandboxStatsResponse:
        return await cri_stats.list_pod_sandbox_stats(self.rt, request.filter)

    async def ListMetricDescriptors(
        self, request: cri.ListMetricDescriptorsRequest, context: Any
    ) -> cri.ListMetricDescriptorsResponse:
        return cri_metrics.list_metric_descriptors()

    async def ListPodSandboxMetrics(
        self, request: cri.ListPodSandboxMetricsRequest, context: Any
    ) -> cri.ListPodSandboxMetricsResponse:
        return await cri_metrics.list_pod_sandbox_metrics(self.rt)

    # -- containers ------------------------------------------------------------

    async def CreateContainer(
        self, request: cri.CreateContainerRequest, context: Any
    ) -> cri.CreateContainerResponse:
        config = request.config
        sandbox = self.sandboxes.get(request.pod_sandbox_id)
        meta = config.metadata
        if not meta.name:
            raise InvalidArgument("CreateContainer: metadata.name is required")
        pod = sandbox.config.cri or {}
        name = (
            f"k8s_{meta.name}_{pod.get('name', '')}_{pod.get('namespace', '')}_"
            f"{pod.get('uid', '')}_{meta.attempt}"
        )
        if any(c.name == name for c in self.containers.list()):
            raise AlreadyExists(f"container name {name!r} is already in use in this pod")
        sec = config.linux.security_context
        log_path = confined_log_path(sandbox.config.log_directory, config.log_path)
        binds, volume_extras = cri_mounts(config.mounts)
        security = await container_security(sec)
        container = await self.containers.create(
            CreateRequest(
                image=config.image.image,
                name=name,
                entrypoint=list(config.command) or None,
                cmd=list(config.args) or None,
                env=[f"{kv.key}={kv.value}" for kv in config.envs],
                working_dir=config.working_dir,
                labels=dict(config.labels),
                annotations=dict(config.annotations),
                tty=config.tty,
                stdin=config.stdin,
                stdin_once=config.stdin_once,
                restart_policy=RestartPolicy(),
                stop_signal=cri.Signal.Name(config.stop_signal) if config.stop_signal else "",
                binds=binds,
                log_driver="cri" if log_path else "none",
                log_path=log_path,
                sandbox_id=sandbox.id,
                cri={"name": meta.name, "attempt": meta.attempt},
                extras={"volumes": volume_extras, "resources": container_extras(config)},
                pid_mode=pid_mode(sec.namespace_options),
                **security,
            )
        )
        return cri.CreateContainerResponse(container_id=container.id)

    def _container(self, container_id: str) -> Container:
        container = self.containers.get(container_id)
        if container.config.cri is None:
            raise NotFound(f"container {container_id} is not a CRI container")
        return container

    async def StartContainer(
        self, request: cri.StartContainerRequest, context: Any
    ) -> cri.StartContainerResponse:
        container = self._container(request.container_id)
        if container.state.status != Status.CREATED:
            raise FailedPrecondition(
                f"container {container.id} is in {_STATE[container.state.status]} state, "
                "not CONTAINER_CREATED"
            )
        await self.containers.start(container.id)
        return cri.StartContainerResponse()

    async def StopContainer(
        self, request: cri.StopContainerRequest, context: Any
    ) -> cri.StopContainerResponse:
        try:
            container = self._container(request.container_id)
        except NotFound:
            return cri.StopContainerResponse()
        await self.containers.stop(container.id, timeout=int(request.timeout))
        return cri.StopContainerResponse()

    async def RemoveContainer(
        self, request: cri.RemoveContainerRequest, context: Any
    ) -> cri.RemoveContainerResponse:
        try:
            container = self._container(request.container_id)
        except NotFound:
            return cri.RemoveContainerResponse()
        await self.containers.remove(container.id, force=True)
        return cri.RemoveContainerResponse()

    def _image_fields(self, container: Container) -> dict[str, Any]:
        record = self.rt.metadata.get_image(container.config.image_id)
        image_ref = container.config.image_id
        if record is not None and record.digests:
            image_ref = record.digests[0]
        return {
            "image": cri.ImageSpec(image=container.config.image),
            "image_ref": image_ref,
        }

    async def ListContainers(
        self, request: cri.ListContainersRequest, context: Any
    ) -> cri.ListContainersResponse:
        flt = request.filter
        items = []
        picked = cri_containers(
            self.containers.list(), flt.id, flt.pod_sandbox_id, flt.label_selector
        )
        for container in picked:
            if flt.HasField("state") and _STATE[container.state.status] != flt.state.state:
                continue
            items.append(
                cri.Container(
                    id=container.id,
                    pod_sandbox_id=container.sandbox_id,
                    metadata=container_metadata(container),
                    state=_STATE[container.state.status],
                    created_at=container.created_at,
                    labels=container.config.labels,
                    annotations=container.config.annotations,
                    image_id=container.config.image_id,
                    **self._image_fields(container),
                )
            )
        return cri.ListContainersResponse(containers=items)

    async def ContainerStatus(
        self, request: cri.ContainerStatusRequest, context: Any
    ) -> cri.ContainerStatusResponse:
        container = self._container(request.container_id)
        state = container.state
        mounts = [
            cri.Mount(
                container_path=m["destination"],
                host_path=m["source"],
                readonly=m["readonly"],
                propagation=_PROPAGATION_BACK.get(m["propagation"], 0),
            )
            for m in container.config.spec.get("mounts", [])
        ]
        status = cri.ContainerStatus(
            id=container.id,
            metadata=container_metadata(container),
            state=_STATE[state.status],
            created_at=container.created_at,
            started_at=state.started_at,
            finished_at=state.finished_at,
            exit_code=state.exit_code,
            reason=state.reason if state.status == Status.EXITED else "",
            message=state.message or state.error,
            labels=container.config.labels,
            annotations=container.config.annotations,
            mounts=mounts,
            log_path=container.config.log_path if container.config.log_driver == "cri" else "",
            image_id=container.config.image_id,
            resources=to_cri(container),
            **self._image_fields(container),
        )
        info = {}
        if request.verbose:
            info["info"] = json.dumps(
                {
                    "pid": state.pid,
                    "sandboxID": container.sandbox_id,
                    "args": container.config.args,
                    "restartCount": state.restart_count,
                    "runtime": self.rt.oci_runtime.name,
                }
            )
        return cri.ContainerStatusResponse(status=status, info=info)

    async def ExecSync(self, request: cri.ExecSyncRequest, context: Any) -> cri.ExecSyncResponse:
        container = self._container(request.container_id)
        try:
            done = await run_to_exit(
                self.containers,
                container.id,
                list(request.cmd),
                timeout=request.timeout if request.timeout > 0 else None,
                exec_id=secrets.token_hex(8),
            )
        except TimeoutError:
            raise DeadlineExceeded(
                f"command {list(request.cmd)!r} timed out after {request.timeout}s"
            ) from None
        return cri.ExecSyncResponse(
            stdout=bytes(done.stdout), stderr=bytes(done.stderr), exit_code=done.exit_code
        )

    # -- streaming: URLs of our streaming server, which the client connects to -----------

    def _running(self, container_id: str) -> Container:
        container = self._container(container_id)
        if not container.running:
            state = cri.ContainerState.Name(_STATE[container.state.status])
            raise FailedPrecondition(f"container {container.id} is in {state} state, not running")
        return container

    async def Exec(self, request: cri.ExecRequest, context: Any) -> cri.ExecResponse:
        container = self._running(request.container_id)
        url = self.streaming.get_exec(
            streams.ExecRequest(
                container_id=container.id,
                cmd=list(request.cmd),
                tty=request.tty,
                stdin=request.stdin,
                stdout=request.stdout,
                stderr=request.stderr,
            )
        )
        return cri.ExecResponse(url=url)

    async def Attach(self, request: cri.AttachRequest, context: Any) -> cri.AttachResponse:
        container = self._running(request.container_id)
        url = self.streaming.get_attach(
            streams.AttachRequest(
                container_id=container.id,
                tty=request.tty,
                stdin=request.stdin,
                stdout=request.stdout,
                stderr=request.stderr,
            )
        )
        return cri.AttachResponse(url=url)

    async def PortForward(
        self, request: cri.PortForwardRequest, context: Any
    ) -> cri.PortForwardResponse:
        sandbox = self.sandboxes.get(request.pod_sandbox_id)
        if not sandbox.state.ready:
            raise FailedPrecondition(f"pod sandbox {sandbox.id} is not ready")
        url = self.streaming.get_port_forward(
            streams.PortForwardRequest(pod_sandbox_id=sandbox.id, ports=list(request.port))
        )
        return cri.PortForwardResponse(url=url)

    async def GetContainerEvents(
        self, request: cri.GetEventsRequest, context: Any
    ) -> AsyncIterator[cri.ContainerEventResponse]:
        async for response in cri_events.container_events(self):
            yield response

    async def ReopenContainerLog(
        self, request: cri.ReopenContainerLogRequest, context: Any
    ) -> cri.ReopenContainerLogResponse:
        container = self._container(request.container_id)
        if not container.running:
            raise FailedPrecondition(f"container {container.id} is not running")
        await self.containers.reopen_log(container.id)
        return cri.ReopenContainerLogResponse()


fill_unimplemented(CriRuntimeServicer, cri.DESCRIPTOR.services_by_name["RuntimeService"])

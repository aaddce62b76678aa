"""CRI GetContainerEvents: kubelet's evented PLEG, fed from the daemon's one event bus.

A CRI container's create, start, exit (die) and removal (destroy) become
CONTAINER_CREATED / STARTED / STOPPED / DELETED events. Each carries, as
containerd's do, the status of the container's pod and of every container in
it at the time the event is sent, built by the servicer's own PodSandboxStatus
and ContainerStatus, so the event says what those RPCs would. An event whose
pod is gone meanwhile is dropped: kubelet ignores one without a pod status,
and its relist notices the removal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from runtimed.core.events import CONTAINER, SANDBOX_ATTRIBUTE, Event
from runtimed.errors import NotFound
from runtimed.gen.runtime.v1 import api_pb2 as cri

if TYPE_CHECKING:
    from runtimed.api.cri_runtime import CriRuntimeServicer

_KINDS = {
    "create": cri.CONTAINER_CREATED_EVENT,
    "start": cri.CONTAINER_STARTED_EVENT,
    "die": cri.CONTAINER_STOPPED_EVENT,
    "destroy": cri.CONTAINER_DELETED_EVENT,
}


def _wanted(event: Event) -> bool:
    return (
        event.type == CONTAINER and event.action in _KINDS and SANDBOX_ATTRIBUTE in event.attributes
    )


async def container_events(
    servicer: CriRuntimeServicer,
) -> AsyncIterator[cri.ContainerEventResponse]:
    """Live events until kubelet hangs up (no history: kubelet relists when it connects)."""
    async for event in servicer.rt.events.stream(match=_wanted):
        response = await _response(servicer, event)
        if response is not None:
            yield response


async def _response(
    servicer: CriRuntimeServicer, event: Event
) -> cri.ContainerEventResponse | None:
    sandbox_id = event.attributes[SANDBOX_ATTRIBUTE]
    try:
        pod = await servicer.PodSandboxStatus(
            cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id), None
        )
    except NotFound:
        return None
    statuses = []
    for container in servicer.containers.list():
        if container.sandbox_id != sandbox_id or container.config.cri is None:
            continue
        try:
            reply = await servicer.ContainerStatus(
                cri.ContainerStatusRequest(container_id=container.id), None
            )
        except NotFound:  # removed meanwhile
            continue
        statuses.append(reply.status)
    return cri.ContainerEventResponse(
        container_id=event.actor_id,
        container_event_type=_KINDS[event.action],
        created_at=event.time_ns,
        pod_sandbox_status=pod.status,
        containers_statuses=statuses,
    )

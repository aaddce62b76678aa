"""runtime.v1.RuntimeService: the kubelet's view of pods and containers.

Version and Status answer now; the pod and container methods arrive with the
containers issue. Every other method of the service answers UNIMPLEMENTED
with a message naming it, rather than the generated stub's bare text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtimed import __version__
from runtimed.errors import Unimplemented
from runtimed.gen.runtime.v1 import api_pb2 as cri
from runtimed.gen.runtime.v1 import api_pb2_grpc

if TYPE_CHECKING:
    from runtimed.daemon.server import Runtime

# kubelet refuses a runtime whose VersionResponse.version is not this.
KUBELET_API_VERSION = "0.1.0"
RUNTIME_NAME = "runtimed"


class CriRuntimeServicer(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def Version(self, request: cri.VersionRequest, context: Any) -> cri.VersionResponse:
        return cri.VersionResponse(
            version=KUBELET_API_VERSION,
            runtime_name=RUNTIME_NAME,
            runtime_version=__version__,
            runtime_api_version="v1",
        )

    async def Status(self, request: cri.StatusRequest, context: Any) -> cri.StatusResponse:
        conditions = [
            cri.RuntimeCondition(
                type="RuntimeReady",
                status=False,
                reason="ContainersNotSupported",
                message="runtimed cannot run containers yet",
            ),
            cri.RuntimeCondition(
                type="NetworkReady",
                status=False,
                reason="NetworkNotSupported",
                message="runtimed has no pod network yet",
            ),
        ]
        return cri.StatusResponse(status=cri.RuntimeStatus(conditions=conditions))


def _unimplemented(name: str) -> Any:
    async def handler(self: CriRuntimeServicer, request: Any, context: Any) -> Any:
        raise Unimplemented(f"{name} is not implemented by runtimed {__version__} yet")

    handler.__name__ = name
    return handler


for _method in cri.DESCRIPTOR.services_by_name["RuntimeService"].methods:
    if _method.name not in CriRuntimeServicer.__dict__:
        setattr(CriRuntimeServicer, _method.name, _unimplemented(_method.name))

"""Both client flavours perform the same unary calls (runtimed.client._calls) against a fake
stub: the RPC, its request and timeout, the decoded result, and errors as ours."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from runtimed.client import AsyncClient, AsyncImage, Client, Image, ImageNotFound, NotFound
from runtimed.gen.runtimed.v1 import engine_pb2 as pb


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class FakeStub:
    """Records each call; answers from `replies` (an exception there is raised)."""

    def __init__(self, replies: dict[str, Any], aio: bool) -> None:
        self.replies, self.aio = replies, aio
        self.calls: list[tuple[str, Any, float | None]] = []

    def __getattr__(self, rpc: str) -> Any:
        def call(request: Any, timeout: float | None = None) -> Any:
            self.calls.append((rpc, request, timeout))
            reply = self.replies.get(rpc)
            if isinstance(reply, Exception):
                raise reply
            return reply

        if not self.aio:
            return call

        async def acall(request: Any, timeout: float | None = None) -> Any:
            return call(request, timeout)

        return acall


DOC = {"Id": "c1", "Name": "/web", "State": {"Status": "running"}}
REPLIES: dict[str, Any] = {
    "InspectContainer": pb.InspectContainerResponse(json=json.dumps(DOC)),
    "CreateContainer": pb.CreateContainerResponse(id="c1"),
    "ListContainers": pb.ListContainersResponse(containers=[pb.ContainerSummary(id="c1")]),
    "WaitContainer": pb.WaitContainerResponse(exit_code=3, error="oops"),
    "RemoveImage": pb.RemoveImageResponse(untagged=["a:1"], deleted=["sha256:x"]),
    "InspectImage": FakeRpcError(grpc.StatusCode.NOT_FOUND, "missing"),
    "RemoveContainer": FakeRpcError(grpc.StatusCode.NOT_FOUND, "no such container"),
}
WANT_CALLS = [
    ("CreateContainer", "image", None),
    ("InspectContainer", pb.ContainerRef(id="c1"), None),
    ("StopContainer", pb.StopContainerRequest(id="c1", timeout=-1), None),
    ("WaitContainer", pb.WaitContainerRequest(id="c1", condition="next-exit"), 5),
    ("ListContainers", pb.ListContainersRequest(all=True), None),
    ("InspectContainer", pb.ContainerRef(id="c1"), None),
    ("RemoveImage", pb.RemoveImageRequest(reference="a:1", force=True), None),
    ("TagImage", pb.TagImageRequest(source="sha256:x", target="a:2"), None),
    ("Version", pb.VersionRequest(), 30),
    ("InspectImage", pb.InspectImageRequest(reference="gone"), None),
    ("RemoveContainer", pb.RemoveContainerRequest(id="c1", volumes=True), None),
]
WANT_RESULTS = [
    "c1",
    {"StatusCode": 3, "Error": {"Message": "oops"}},
    ["c1"],
    [{"Untagged": "a:1"}, {"Deleted": "sha256:x"}],
    True,
    True,
]


def check(stub: FakeStub, results: list[Any]) -> None:
    assert [(rpc, timeout) for rpc, _, timeout in stub.calls] == [
        (rpc, timeout) for rpc, _, timeout in WANT_CALLS
    ]
    assert stub.calls[0][1].image == "busybox" and list(stub.calls[0][1].cmd) == ["true"]
    for (_, got, _), (_, want, _) in list(zip(stub.calls, WANT_CALLS, strict=True))[1:]:
        assert got == want
    assert results == WANT_RESULTS


def test_blocking_client_calls(tmp_path: Any) -> None:
    with Client(f"unix://{tmp_path}/none.sock") as client:
        stub = client.api = FakeStub(REPLIES, aio=False)
        container = client.containers.create("busybox", "true")
        container.stop()
        results = [
            container.id,
            container.wait(timeout=5, condition="next-exit"),
            [c.id for c in client.containers.list(all=True)],
            client.images.remove("a:1", force=True),
            Image({"Id": "sha256:x"}, client).tag("a", "2"),
            client.ping(),
        ]
        with pytest.raises(ImageNotFound):
            client.images.get("gone")
        with pytest.raises(NotFound) as err:
            container.remove(v=True)
        assert not isinstance(err.value, ImageNotFound)
    check(stub, results)


async def test_async_client_calls(tmp_path: Any) -> None:
    async with AsyncClient(f"unix://{tmp_path}/none.sock") as client:
        stub = client.api = FakeStub(REPLIES, aio=True)
        container = await client.containers.create("busybox", "true")
        await container.stop()
        results = [
            container.id,
            await container.wait(timeout=5, condition="next-exit"),
            [c.id for c in await client.containers.list(all=True)],
            await client.images.remove("a:1", force=True),
            await AsyncImage({"Id": "sha256:x"}, client).tag("a", "2"),
            await client.ping(),
        ]
        with pytest.raises(ImageNotFound):
            await client.images.get("gone")
        with pytest.raises(NotFound) as err:
            await container.remove(v=True)
        assert not isinstance(err.value, ImageNotFound)
    check(stub, results)

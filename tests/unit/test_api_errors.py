"""The error interceptor on a real grpc.aio server: what a client gets back for errors that
echo huge input, for crashes, and for requests that are not valid messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from runtimed.api.errors import MESSAGE_BYTES, ErrorInterceptor, readable
from runtimed.errors import NotFound
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.gen.runtimed.v1 import engine_pb2_grpc

HUGE = "a" * 120_000


class Echoing(engine_pb2_grpc.EngineServicer):
    async def InspectContainer(self, request: pb.ContainerRef, context: Any) -> Any:  # noqa: N802
        raise NotFound(f"No such container: {request.id}")

    async def CreateVolume(self, request: pb.CreateVolumeRequest, context: Any) -> Any:  # noqa: N802
        raise RuntimeError(f"crashed on {request.name}")

    async def ImportImage(self, request_iterator: AsyncIterator[Any], context: Any) -> Any:  # noqa: N802
        count = 0
        async for _chunk in request_iterator:
            count += 1
        return pb.ImportImageResponse(image_id=f"sha256:{count}")


@pytest.fixture
async def channel(tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    engine_pb2_grpc.add_EngineServicer_to_server(Echoing(), server)
    sock = tmp_path / "s.sock"
    server.add_insecure_port(f"unix:{sock}")
    await server.start()
    async with grpc.aio.insecure_channel(f"unix:{sock}") as chan:
        yield chan
    await server.stop(None)


def test_readable_cuts_long_words_and_keeps_the_rest() -> None:
    message = readable(f"Invalid container name ({HUGE}), only [a-zA-Z0-9] are allowed")
    assert message.startswith("Invalid container name (aaaa")
    assert message.endswith("... only [a-zA-Z0-9] are allowed")
    assert len(message) < 400
    many = readable(" ".join(["ünïcode" * 30] * 2000))
    assert len(many.encode()) <= MESSAGE_BYTES + 3
    assert readable("No such container: web") == "No such container: web"


async def test_an_echoed_120k_name_comes_back_short(channel: grpc.aio.Channel) -> None:
    stub = engine_pb2_grpc.EngineStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.InspectContainer(pb.ContainerRef(id=HUGE), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details().startswith("No such container: aaaa")
    assert len(err.value.details()) < 400
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateVolume(pb.CreateVolumeRequest(name=HUGE), timeout=10)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert len(err.value.details()) < 400


async def test_a_request_that_does_not_parse_is_invalid_argument(
    channel: grpc.aio.Channel,
) -> None:
    garbage = b"\xff\xff\xff\xff"  # a varint that never ends
    unary = channel.unary_unary(
        "/runtimed.v1.Engine/InspectContainer",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await unary(garbage, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("malformed request: ")
    # A stream: the good messages before the bad one are read, the bad one refused.
    stream = channel.stream_unary(
        "/runtimed.v1.Engine/ImportImage",
        request_serializer=lambda b: b,
        response_deserializer=pb.ImportImageResponse.FromString,
    )
    good = pb.ImportImageChunk(data=b"x").SerializeToString()
    assert (await stream(iter([good, good]), timeout=10)).image_id == "sha256:2"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stream(iter([good, garbage]), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed request" in err.value.details()

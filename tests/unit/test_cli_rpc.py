"""runtimectl's own gRPC client against a real grpcio server on a unix socket.

The server implements a few Engine methods in odd ways (huge streams, errors,
sleeps) so every path of the client runs: flow control both ways, statuses,
metadata, deadlines, cancellation, a daemon that disappears.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from runtimed.cli.client import describe_rpc_error
from runtimed.cli.rpc import Connection, RpcError, StatusCode, Stub
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.gen.runtimed.v1 import engine_pb2_grpc

CHUNK = 64 * 1024
MAX_MESSAGE = 16 * 1024 * 1024


def _payload(i: int) -> bytes:
    return bytes([i % 251]) * CHUNK


class Peculiar(engine_pb2_grpc.EngineServicer):
    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def Version(self, request: pb.VersionRequest, context: grpc.ServicerContext):  # noqa: N802
        meta = dict(context.invocation_metadata())
        if "fail" in meta:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such container: ünïcode 100% «x»")
        if "sleep" in meta:
            time.sleep(float(meta["sleep"]))
        return pb.VersionResponse(version=meta.get("x-echo", "plain"))

    def ContainerLogs(self, request: pb.ContainerLogsRequest, context):  # noqa: N802
        context.add_callback(self.cancelled.set)
        if request.id == "huge":
            yield pb.LogEntry(data=b"x" * (MAX_MESSAGE + 1))
            return
        if request.id == "at-limit":  # data: 1 tag byte and a 4-byte length short of it
            entry = pb.LogEntry(data=b"x" * (MAX_MESSAGE - 5))
            assert entry.ByteSize() == MAX_MESSAGE
            yield entry
            return
        for i in range(request.tail):
            yield pb.LogEntry(stream="stdout", data=_payload(i), time_nano=i)
        if request.id == "error-after":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad --since value")
        if request.id == "slow":
            while context.is_active():
                time.sleep(0.02)

    def ImportImage(self, request_iterator: Iterator[pb.ImportImageChunk], context):  # noqa: N802
        digest = hashlib.sha256()
        for chunk in request_iterator:
            digest.update(chunk.data)
        return pb.ImportImageResponse(image_id=digest.hexdigest())

    def Attach(self, request_iterator: Iterator[pb.StdioInput], context):  # noqa: N802
        for message in request_iterator:
            if message.HasField("stdin"):
                yield pb.StdioOutput(stdout=message.stdin.upper())
            elif message.close_stdin:
                yield pb.StdioOutput(exit=pb.ProcessExit(exit_code=7))
                return


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Peculiar, Stub, Connection, grpc.Server]]:
    servicer = Peculiar()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    engine_pb2_grpc.add_EngineServicer_to_server(servicer, server)
    socket = tmp_path / "engine.sock"
    server.add_insecure_port(f"unix:{socket}")
    server.start()
    conn = Connection(str(socket), max_message=MAX_MESSAGE)
    stub = Stub(conn, pb.DESCRIPTOR.services_by_name["Engine"])
    try:
        yield servicer, stub, conn, server
    finally:
        conn.close()
        server.stop(0)


def test_unary_call_carries_metadata_both_ways(served) -> None:
    _, stub, _, _ = served
    assert stub.Version(pb.VersionRequest()).version == "plain"
    reply = stub.Version(pb.VersionRequest(), metadata=[("X-Echo", "hello")])
    assert reply.version == "hello"


def test_error_status_and_unicode_details(served) -> None:
    _, stub, _, _ = served
    with pytest.raises(RpcError) as err:
        stub.Version(pb.VersionRequest(), metadata=[("fail", "1")])
    assert err.value.code() is StatusCode.NOT_FOUND
    assert err.value.details() == "no such container: ünïcode 100% «x»"
    # The connection stays usable after a failed call.
    assert stub.Version(pb.VersionRequest()).version == "plain"


def test_server_stream_larger_than_every_window(served) -> None:
    _, stub, _, _ = served
    count = 600  # 37.5 MiB: more than the 16 MiB receive window, so credit must flow back
    entries = list(stub.ContainerLogs(pb.ContainerLogsRequest(id="c", tail=count)))
    assert [e.time_nano for e in entries] == list(range(count))
    assert all(e.data == _payload(e.time_nano) for e in entries)


def test_client_stream_upload_is_flow_controlled(served) -> None:
    _, stub, _, _ = served
    blocks = [bytes([i]) * 1_000_003 for i in range(24)]  # 24 MB in odd-sized messages
    reply = stub.ImportImage(pb.ImportImageChunk(data=b) for b in blocks)
    assert reply.image_id == hashlib.sha256(b"".join(blocks)).hexdigest()


def test_messages_of_every_size_arrive_whole_and_in_order(served) -> None:
    _, stub, _, _ = served
    # Around the size where a message stops being joined with its prefix into one write,
    # and one larger than a frame, so frames split inside the prefix and the payload.
    sizes = [0, 1, 65530, 65531, 65536, 3_000_001, 2, 1_048_576 * 2 + 7]
    blocks = [bytes([i + 1]) * n for i, n in enumerate(sizes)]
    reply = stub.ImportImage(pb.ImportImageChunk(data=b) for b in blocks)
    assert reply.image_id == hashlib.sha256(b"".join(blocks)).hexdigest()


def test_bidirectional_stream(served) -> None:
    _, stub, _, _ = served
    requests = [pb.StdioInput(stdin=b"abc"), pb.StdioInput(stdin=b"def")]
    requests.append(pb.StdioInput(close_stdin=True))
    replies = list(stub.Attach(iter(requests)))
    assert [r.stdout for r in replies[:2]] == [b"ABC", b"DEF"]
    assert replies[2].exit.exit_code == 7


def test_error_after_messages_arrives_after_them(served) -> None:
    _, stub, _, _ = served
    call = stub.ContainerLogs(pb.ContainerLogsRequest(id="error-after", tail=3))
    seen = []
    with pytest.raises(RpcError) as err:
        for entry in call:
            seen.append(entry.time_nano)
    assert seen == [0, 1, 2]
    assert err.value.code() is StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "bad --since value"


def test_cancel_from_another_thread_ends_the_call_on_both_sides(served) -> None:
    servicer, stub, _, _ = served
    call = stub.ContainerLogs(pb.ContainerLogsRequest(id="slow", tail=1))
    assert next(call).time_nano == 0
    threading.Timer(0.1, call.cancel).start()
    with pytest.raises(RpcError) as err:
        next(call)
    assert err.value.code() is StatusCode.CANCELLED
    assert servicer.cancelled.wait(5), "the daemon never saw the cancellation"


def test_deadline_exceeded(served) -> None:
    _, stub, _, _ = served
    with pytest.raises(RpcError) as err:
        stub.Version(pb.VersionRequest(), timeout=0.2, metadata=[("sleep", "2")])
    assert err.value.code() is StatusCode.DEADLINE_EXCEEDED


def test_message_over_the_limit_is_refused(served) -> None:
    _, stub, _, _ = served
    with pytest.raises(RpcError) as err:
        list(stub.ContainerLogs(pb.ContainerLogsRequest(id="huge")))
    assert err.value.code() is StatusCode.RESOURCE_EXHAUSTED


def test_message_at_the_limit_arrives(served) -> None:
    """Its framing makes it 5 bytes more than the limit: the stream's window must hold it,
    or the sender waits for window forever."""
    _, stub, _, _ = served
    (entry,) = stub.ContainerLogs(pb.ContainerLogsRequest(id="at-limit"), timeout=20)
    assert len(entry.data) == MAX_MESSAGE - 5


def test_daemon_going_away_ends_a_waiting_call(served) -> None:
    _, stub, _, server = served
    call = stub.ContainerLogs(pb.ContainerLogsRequest(id="slow", tail=1))
    next(call)
    server.stop(0)
    with pytest.raises(RpcError) as err:
        next(call)
    assert err.value.code() in (StatusCode.UNAVAILABLE, StatusCode.CANCELLED)


def test_nothing_listening_reads_as_daemon_not_running(tmp_path: Path) -> None:
    socket = tmp_path / "stale.sock"
    socket.touch()
    conn = Connection(str(socket), max_message=MAX_MESSAGE)
    stub = Stub(conn, pb.DESCRIPTOR.services_by_name["Engine"])
    with pytest.raises(RpcError) as err:
        stub.Version(pb.VersionRequest())
    assert err.value.code() is StatusCode.UNAVAILABLE
    message = describe_rpc_error(err.value, socket).message
    assert message.startswith(f"Cannot connect to runtimed at unix://{socket}")


def test_unknown_method_is_an_attribute_error(served) -> None:
    _, stub, _, _ = served
    with pytest.raises(AttributeError):
        stub.NoSuchMethod  # noqa: B018


def test_closing_the_channel_ends_waiting_calls(served) -> None:
    _, stub, conn, _ = served
    call = stub.ContainerLogs(pb.ContainerLogsRequest(id="slow", tail=1))
    next(call)
    threading.Timer(0.1, conn.close).start()
    with pytest.raises(RpcError) as err:
        next(call)
    assert err.value.code() is StatusCode.CANCELLED
    with pytest.raises(RpcError):
        stub.Version(pb.VersionRequest())


def test_runtimectl_start_up_leaves_heavy_modules_unloaded() -> None:
    """What every command pays for at start-up: no grpcio, and none of protobuf's
    pure-Python message machinery (text_format and friends), while messages still
    serialize and parse; nor what only some commands need (tarfile, the Dockerfile
    code, the daemon's sqlite3)."""
    probe = """
import sys
import runtimed.cli.main, runtimed.cli.client
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
request = pb.ListImagesRequest.FromString(pb.ListImagesRequest(all=True).SerializeToString())
assert request.all
heavy = ("grpc", "google.protobuf.text_format", "tarfile", "runtimed.build", "sqlite3")
print(sorted(m for m in heavy if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"

"""runtimectl's container commands: flags, formats, detach keys, and the run/attach/exec/cp
exchanges against a fake Engine servicer on a temporary unix socket."""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import os
import shutil
import signal
import struct
import tarfile
import tempfile
import termios
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from runtimed.cli import format as fmt_module
from runtimed.cli.client import CliError
from runtimed.cli.cp import extract_archive, split_cp_arg, stat_is_dir
from runtimed.cli.gotemplate.gofmt import go_quote
from runtimed.cli.main import build_parser, main
from runtimed.cli.psformat import LogPrinter, ellipsis, format_ps, ps_row, rfc3339_nano
from runtimed.cli.runflags import (
    build_create_request,
    parse_env,
    parse_env_file,
    parse_restart_policy,
    parse_volume,
    parse_volumes,
)
from runtimed.detachkeys import DetachScanner, parse_detach_keys
from runtimed.errors import InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.gen.runtimed.v1 import engine_pb2_grpc

CID = "c0ffee" + "0" * 58


def create_request(*argv: str, environ: dict[str, str] | None = None) -> pb.CreateContainerRequest:
    args = build_parser().parse_args(list(argv))
    return build_create_request(args, environ or {})


# --- flags into CreateContainerRequest ----------------------------------------------------------


def test_run_flags_fill_the_create_request() -> None:
    req = create_request(
        "run", "-it", "--rm", "--name", "web", "-e", "A=1", "-e", "FROM_CLIENT", "-e", "UNSET",
        "-w", "/srv", "-u", "1000:1000", "-h", "box", "-l", "tier=front", "-l", "flag",
        "--read-only", "--stop-signal", "SIGINT", "--stop-timeout", "3",
        "-v", "/data:/mnt/data:ro,rshared", "--platform", "linux/amd64",
        "--log-driver", "json-file", "--log-opt", "max-size=10m",
        "busybox", "sh", "-c", "echo hi",
        environ={"FROM_CLIENT": "yes"},
    )  # fmt: skip
    assert req.image == "busybox" and req.name == "web"
    assert list(req.env) == ["A=1", "FROM_CLIENT=yes"]  # an unset bare -e is left out
    assert (req.working_dir, req.user, req.hostname) == ("/srv", "1000:1000", "box")
    assert dict(req.labels) == {"tier": "front", "flag": ""}
    assert req.tty and req.stdin_open and req.stdin_once and req.auto_remove and req.read_only
    assert (req.stop_signal, req.stop_timeout) == ("SIGINT", 3)
    assert [(b.source, b.target, b.readonly, b.propagation) for b in req.binds] == [
        ("/data", "/mnt/data", True, "rshared")
    ]
    assert req.has_cmd and list(req.cmd) == ["sh", "-c", "echo hi"]
    assert not req.has_entrypoint
    assert not req.pull_if_missing and req.platform == "linux/amd64"  # the CLI pulls
    assert req.log_driver == "json-file" and dict(req.log_opts) == {"max-size": "10m"}
    assert req.restart_policy.name == "no"


def test_arguments_after_the_image_belong_to_the_command() -> None:
    args = build_parser().parse_args(["run", "--rm", "busybox", "ls", "-l", "-d", "--rm"])
    assert args.cmd == ["ls", "-l", "-d", "--rm"] and not args.detach


def test_defaults_mean_image_config_and_daemon_defaults() -> None:
    req = create_request("create", "busybox")
    assert not req.has_cmd and not req.has_entrypoint and not req.cmd
    assert req.stop_timeout == -1 and not req.tty and not req.stdin_open


def test_empty_entrypoint_is_an_override_that_clears_it() -> None:
    req = create_request("run", "--entrypoint", "", "busybox")
    assert req.has_entrypoint and list(req.entrypoint) == []
    req = create_request("run", "--entrypoint", "/bin/echo", "busybox", "hi")
    assert list(req.entrypoint) == ["/bin/echo"] and list(req.cmd) == ["hi"]


def test_detached_run_does_not_close_stdin_after_first_client() -> None:
    req = create_request("run", "-d", "-i", "busybox")
    assert req.stdin_open and not req.stdin_once


def test_sig_proxy_false_form() -> None:
    assert build_parser().parse_args(["run", "--sig-proxy=false", "busybox"]).sig_proxy is False
    assert build_parser().parse_args(["run", "busybox"]).sig_proxy is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--restart", "sometimes"], "invalid restart policy 'sometimes'"),
        (["--restart", "always:3"], "can only be used with on-failure"),
        (["--restart", "on-failure:-1"], "cannot be negative"),
        (["--rm", "--restart", "always"], "cannot specify both --restart and --rm"),
        (["--pull", "sometimes"], "invalid pull option"),
        (["--log-opt", "novalue"], "expected KEY=VALUE"),
        (["-e", "=x"], "invalid environment variable: =x"),
        (["-v", "data"], "mount path must be absolute"),
        (["-v", "../x:/mnt"], "bind source path must be absolute"),
        (["-v", "./rel:/mnt"], "bind source path must be absolute"),
        (["-v", "/src:rel"], "mount path must be absolute"),
        (["-v", "/src:/mnt:xx"], "invalid mode: xx"),
        (["-v", "/a:/m", "-v", "/b:/m/"], "Duplicate mount point: /m"),
    ],
)
def test_bad_run_flags_are_refused_with_125(argv: list[str], message: str) -> None:
    with pytest.raises(CliError) as info:
        create_request("run", *argv, "busybox")
    assert message in info.value.message
    assert info.value.exit_code == 125


@pytest.mark.parametrize(
    ("text", "name", "retries"),
    [
        (None, "no", 0),
        ("no", "no", 0),
        ("always", "always", 0),
        ("unless-stopped", "unless-stopped", 0),
        ("on-failure", "on-failure", 0),
        ("on-failure:5", "on-failure", 5),
    ],
)
def test_restart_policies(text: str | None, name: str, retries: int) -> None:
    policy = parse_restart_policy(text)
    assert (policy.name, policy.max_retries) == (name, retries)


def test_volume_defaults_to_rw_rprivate_and_cleans_paths() -> None:
    bind = parse_volume("/srv//data/:/mnt/x/")
    assert (bind.source, bind.target, bind.readonly, bind.propagation) == (
        "/srv/data",
        "/mnt/x",
        False,
        "rprivate",
    )
    assert parse_volumes(["/a:/x:rw", "/b:/y:ro"])[1].readonly


def test_env_file_rules(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_bytes(
        b"\xef\xbb\xbfFIRST=1\n"
        b"# a comment\n"
        b"\n"
        b"   INDENTED=kept as is  \n"
        b'QUOTED="not unquoted"\r\n'
        b"FROM_CLIENT\n"
        b"NOT_SET\n"
        b"EMPTY=\n"
    )
    assert parse_env_file(str(env_file), {"FROM_CLIENT": "c"}) == [
        "FIRST=1",
        "INDENTED=kept as is  ",
        'QUOTED="not unquoted"',
        "FROM_CLIENT=c",
        "EMPTY=",
    ]


def test_env_file_comes_before_e_flags(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("A=file\n")
    assert parse_env([str(env_file)], ["A=flag"], {}) == ["A=file", "A=flag"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("BAD KEY=1\n", "variable 'BAD KEY' contains whitespaces"),
        ("=value\n", "no variable name on line '=value'"),
    ],
)
def test_env_file_errors(tmp_path: Path, content: str, message: str) -> None:
    env_file = tmp_path / "env"
    env_file.write_text(content)
    with pytest.raises(CliError, match=message):
        parse_env_file(str(env_file), {})


def test_missing_env_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="open .*nope: no such file or directory"):
        parse_env_file(str(tmp_path / "nope"), {})


# --- detach keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "keys"),
    [
        ("ctrl-p,ctrl-q", b"\x10\x11"),
        ("ctrl-x,y", b"\x18y"),
        ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", bytes([0, 27, 28, 29, 30, 31])),
        ("a,b,c", b"abc"),
        ("DEL", b"\x7f"),
    ],
)
def test_parse_detach_keys(spec: str, keys: bytes) -> None:
    assert parse_detach_keys(spec) == keys


@pytest.mark.parametrize("spec", ["", "ctrl-", "ctrl-1", "ctrl-P", "ab", "shift-a", "é"])
def test_bad_detach_keys(spec: str) -> None:
    with pytest.raises(InvalidArgument, match="Invalid detach keys"):
        parse_detach_keys(spec)


def test_detach_scanner_holds_partial_sequence_and_releases_it() -> None:
    scanner = DetachScanner(b"\x10\x11")
    assert scanner.feed(b"ab\x10") == (b"ab", False)
    assert scanner.feed(b"x") == (b"\x10x", False)  # not the sequence: both bytes go through
    assert scanner.feed(b"\x10") == (b"", False)
    assert scanner.feed(b"\x11ignored") == (b"", True)


def test_detach_scanner_overlapping_prefix() -> None:
    scanner = DetachScanner(b"\x10\x10\x11")
    assert scanner.feed(b"\x10\x10\x10\x11") == (b"\x10", True)
    scanner = DetachScanner(b"\x10\x11")
    assert scanner.feed(b"\x10") == (b"", False)
    assert scanner.flush() == b"\x10"


# --- ps -----------------------------------------------------------------------------------------


def summary(**kw: Any) -> pb.ContainerSummary:
    base: dict[str, Any] = {
        "id": CID,
        "name": "happy_turing",
        "image": "busybox",
        "command": "sh -c 'echo hi'",
        "created": 1_700_000_000,
        "state": "running",
        "status": "Up 5 seconds",
    }
    base.update(kw)
    return pb.ContainerSummary(**base)


def test_go_quote_and_ellipsis() -> None:
    assert go_quote("sh -c 'echo hi'") == "\"sh -c 'echo hi'\""
    assert go_quote('say "hi"\n\\') == '"say \\"hi\\"\\n\\\\"'
    assert go_quote("\x01") == '"\\x01"'
    assert ellipsis("x" * 20, 20) == "x" * 20
    assert ellipsis("/bin/sh -c 'while true; do sleep 1; done'", 20) == "/bin/sh -c 'while t…"


def test_ps_row_truncates_like_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt_module.time, "time", lambda: 1_700_000_005.2)
    row = ps_row(
        summary(command="/bin/sh -c 'while true; do sleep 1; done'", labels={"b": "2", "a": "1"}),
        trunc=True,
    )
    assert row["ID"] == CID[:12]
    assert row["Command"] == '"/bin/sh -c \'while t…"'
    assert row["RunningFor"] == "5 seconds ago"
    assert row["Labels"] == "a=1,b=2"
    full = ps_row(summary(image="sha256:" + "ab" * 32), trunc=False)
    assert full["ID"] == CID and full["Image"] == "sha256:" + "ab" * 32
    assert ps_row(summary(image="sha256:" + "ab" * 32), trunc=True)["Image"] == "ab" * 6


def test_ps_table_has_docker_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt_module.time, "time", lambda: 1_700_000_005.0)
    rows = [ps_row(summary(), trunc=True)]
    lines = format_ps(rows, None, quiet=False, size=False).splitlines()
    assert lines[0].split() == [
        "CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES",
    ]  # fmt: skip
    assert lines[1].startswith(CID[:12] + "   busybox   ")
    assert "\"sh -c 'echo hi'\"" in lines[1] and lines[1].endswith("happy_turing")
    assert lines[0].index("COMMAND") == lines[1].index('"sh -c')
    sized = format_ps(rows, "", quiet=False, size=True).splitlines()
    assert sized[0].endswith("SIZE") and sized[1].endswith("0B")


def test_ps_quiet_template_and_json() -> None:
    rows = [ps_row(summary(), trunc=True), ps_row(summary(id="f" * 64, name="b"), trunc=True)]
    assert format_ps(rows, "{{.Names}}", quiet=True, size=False) == f"{CID[:12]}\nffffffffffff\n"
    assert format_ps(rows, "{{.Names}}: {{.State}}", quiet=False, size=False) == (
        "happy_turing: running\nb: running\n"
    )
    table_out = format_ps(rows, "table {{.ID}}\\t{{.RunningFor}}", quiet=False, size=False)
    assert table_out.splitlines()[0].split("   ")[0:2] == ["CONTAINER ID", "CREATED"]
    doc = json.loads(format_ps(rows, "json", quiet=False, size=False).splitlines()[0])
    assert doc["ID"] == CID[:12] and doc["Names"] == "happy_turing" and doc["State"] == "running"
    with pytest.raises(CliError, match="can't evaluate field Nope"):
        format_ps(rows, "{{.Nope}}", quiet=False, size=False)


# --- logs ---------------------------------------------------------------------------------------


def test_log_timestamps_prefix_every_line_start() -> None:
    assert rfc3339_nano(1_700_000_000_000_000_123) == "2023-11-14T22:13:20.000000123Z"
    printer = LogPrinter(timestamps=True)
    t = 1_700_000_000_500_000_000
    stamp = b"2023-11-14T22:13:20.500000000Z "
    assert printer.format(pb.LogEntry(stream="stdout", data=b"a\nb", time_nano=t)) == (
        stamp + b"a\n" + stamp + b"b"
    )
    # The rest of a partial line is not stamped again; stderr keeps its own line state.
    assert printer.format(pb.LogEntry(stream="stderr", data=b"e\n", time_nano=t)) == stamp + b"e\n"
    assert printer.format(pb.LogEntry(stream="stdout", data=b"c\n", time_nano=t)) == b"c\n"
    plain = LogPrinter(timestamps=False)
    assert plain.format(pb.LogEntry(stream="stdout", data=b"x\ny\n", time_nano=t)) == b"x\ny\n"


# --- cp -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "parsed"),
    [
        ("web:/etc/hosts", ("web", "/etc/hosts")),
        ("web:rel", ("web", "rel")),
        ("/abs:with:colons", (None, "/abs:with:colons")),
        ("./local:name", (None, "./local:name")),
        ("plain", (None, "plain")),
        ("-", (None, "-")),
    ],
)
def test_split_cp_arg(arg: str, parsed: tuple[str | None, str]) -> None:
    assert split_cp_arg(arg) == parsed


def test_stat_is_dir_reads_go_and_posix_modes() -> None:
    assert stat_is_dir({"mode": (1 << 31) | 0o755})
    assert stat_is_dir({"mode": 0o040755})
    assert not stat_is_dir({"mode": 0o100644})
    assert not stat_is_dir({"mode": (1 << 27) | 0o777})


def make_tar(entries: list[tuple[str, str, bytes | str]]) -> bytes:
    """(name, kind, data): kind is file|dir|symlink|hardlink (data = target for links)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if kind == "file":
                assert isinstance(data, bytes)
                info.size = len(data)
                info.mode = 0o640
                tf.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o750
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
            tf.addfile(info)
    return buffer.getvalue()


def test_extract_renames_top_entry_and_keeps_modes(tmp_path: Path) -> None:
    data = make_tar(
        [
            ("etc", "dir", b""),
            ("etc/hosts", "file", b"127.0.0.1 localhost\n"),
            ("etc/alias", "hardlink", "etc/hosts"),
            ("etc/link", "symlink", "/etc/hosts"),
        ]
    )
    extract_archive(io.BytesIO(data), lambda is_dir: (tmp_path / "copy", False))
    assert (tmp_path / "copy" / "hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert (tmp_path / "copy" / "hosts").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "copy").stat().st_mode & 0o777 == 0o750
    copy = tmp_path / "copy"
    assert (copy / "alias").stat().st_ino == (copy / "hosts").stat().st_ino
    assert os.readlink(tmp_path / "copy" / "link") == "/etc/hosts"


def test_extract_without_directory_entries(tmp_path: Path) -> None:
    seen: list[bool] = []

    def choose(is_dir: bool) -> tuple[Path, bool]:
        seen.append(is_dir)
        return tmp_path / "out", False

    extract_archive(io.BytesIO(make_tar([("app/sub/conf", "file", b"c")])), choose)
    assert seen == [True]
    assert (tmp_path / "out" / "sub" / "conf").read_bytes() == b"c"


@pytest.mark.parametrize(
    "entries",
    [
        [("top", "dir", b""), ("top/../escaped", "file", b"x")],
        [("top", "dir", b""), ("other/escaped", "file", b"x")],
        [("top", "dir", b""), ("top/l", "symlink", "OUTSIDE"), ("top/l/escaped", "file", b"x")],
        [("top", "dir", b""), ("top/h", "hardlink", "../escaped")],
    ],
)
def test_extract_refuses_entries_that_leave_the_destination(
    tmp_path: Path, entries: list[tuple[str, str, bytes | str]]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    entries = [(n, k, str(outside) if d == "OUTSIDE" else d) for n, k, d in entries]
    with pytest.raises(CliError, match="refusing"):
        extract_archive(io.BytesIO(make_tar(entries)), lambda is_dir: (dest / "top", False))
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "escaped").exists() and not (dest / "escaped").exists()


# --- a fake daemon ------------------------------------------------------------------------------


class FakeEngine(engine_pb2_grpc.EngineServicer):
    """Canned container behaviour, recording what the CLI asked for and in which order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.created: list[pb.CreateContainerRequest] = []
        self.attach_options: pb.AttachOptions | None = None
        self.exec_options: pb.ExecOptions | None = None
        self.stdin = bytearray()
        self.stdin_closed = False
        self.resizes: list[tuple[int, int]] = []
        self.got_resize = threading.Event()
        self.missing_image = False
        self.start_error: str | None = None
        self.exit_code = 0
        self.echo_stdin = False
        self.wait_for_cancel = False
        self.hold_after_half_close = False
        self.inspect_doc: dict[str, Any] = {}
        self.copy_tar = b""
        self.copy_stat: dict[str, Any] = {}
        self.copied_in: list[pb.CopyToContainerOptions] = []
        self.copied_tar = b""
        self.remove_error: str | None = None
        self.started: asyncio.Event | None = None

    def _started(self) -> asyncio.Event:
        if self.started is None:
            self.started = asyncio.Event()
        return self.started

    async def CreateContainer(self, request: pb.CreateContainerRequest, context: Any) -> Any:
        self.events.append("create")
        self.created.append(request)
        if self.missing_image:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"No such image: {request.image}")
        return pb.CreateContainerResponse(id=CID, name="happy_turing")

    async def PullImage(self, request: pb.PullImageRequest, context: Any) -> AsyncIterator[Any]:
        self.events.append("pull")
        self.missing_image = False
        yield pb.PullImageProgress(status=f"latest: Pulling from {request.reference}")
        yield pb.PullImageProgress(result=pb.PullImageResult(image_id="sha256:" + "1" * 64))

    async def StartContainer(self, request: pb.ContainerRef, context: Any) -> pb.Empty:
        self.events.append("start")
        if self.start_error:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, self.start_error)
        self._started().set()
        return pb.Empty()

    async def InspectContainer(self, request: pb.ContainerRef, context: Any) -> Any:
        if not self.inspect_doc or request.id not in (CID, "web"):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"No such container: {request.id}")
        return pb.InspectContainerResponse(json=json.dumps(self.inspect_doc))

    async def InspectImage(self, request: pb.InspectImageRequest, context: Any) -> Any:
        if request.reference != "busybox":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"No such image: {request.reference}")
        return pb.InspectImageResponse(json=json.dumps({"Id": "sha256:" + "1" * 64}))

    async def InspectNetwork(self, request: pb.NetworkRef, context: Any) -> Any:
        if request.name != "appnet":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"network {request.name} not found")
        return pb.Network(id="n" * 64, name="appnet", driver="bridge")

    async def InspectVolume(self, request: pb.VolumeRef, context: Any) -> Any:
        if request.name != "data":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"get {request.name}: no such volume")
        return pb.Volume(name="data", driver="local", mountpoint="/v/data")

    async def RemoveContainer(self, request: pb.RemoveContainerRequest, context: Any) -> Any:
        self.events.append(f"rm {request.id} force={request.force}")
        if self.remove_error and not request.force:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, self.remove_error)
        return pb.Empty()

    async def WaitContainer(self, request: pb.WaitContainerRequest, context: Any) -> Any:
        self.events.append(f"wait {request.condition}")
        return pb.WaitContainerResponse(exit_code=self.exit_code)

    async def ListContainers(self, request: pb.ListContainersRequest, context: Any) -> Any:
        self.events.append(f"list all={request.all} last={request.last}")
        return pb.ListContainersResponse(containers=[summary(created=int(time.time()) - 60)])

    async def _session(
        self, requests: AsyncIterator[pb.StdioInput], wait_start: bool
    ) -> AsyncIterator[pb.StdioOutput]:
        yield pb.StdioOutput(ready=True)
        if wait_start:
            await asyncio.wait_for(self._started().wait(), 5)
        yield pb.StdioOutput(stdout=b"hello\n")
        yield pb.StdioOutput(stderr=b"oops\n")
        if self.echo_stdin or self.wait_for_cancel:
            async for item in requests:
                kind = item.WhichOneof("msg")
                if kind == "stdin":
                    self.stdin += item.stdin
                elif kind == "resize":
                    self.resizes.append((item.resize.rows, item.resize.cols))
                    self.got_resize.set()
                elif kind == "close_stdin":
                    self.stdin_closed = True
                    break
            else:
                self.events.append("detached")  # input ended without close_stdin
                if self.hold_after_half_close:
                    await asyncio.Event().wait()  # until the client cancels
                return
            if self.echo_stdin:
                yield pb.StdioOutput(stdout=bytes(self.stdin))
        yield pb.StdioOutput(exit=pb.ProcessExit(exit_code=self.exit_code, reason="Completed"))

    async def Attach(self, requests: AsyncIterator[pb.StdioInput], context: Any) -> Any:
        first = await anext(aiter(requests))
        self.attach_options = first.attach
        self.events.append("attach")
        async for out in self._session(requests, wait_start=not self.inspect_doc):
            yield out

    async def Exec(self, requests: AsyncIterator[pb.StdioInput], context: Any) -> Any:
        first = await anext(aiter(requests))
        self.exec_options = first.exec
        self.events.append("exec")
        async for out in self._session(requests, wait_start=False):
            yield out

    async def CopyFromContainer(
        self, request: pb.CopyFromContainerRequest, context: Any
    ) -> AsyncIterator[pb.CopyChunk]:
        self.events.append(f"copy-from {request.path}")
        if not self.copy_stat:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Could not find {request.path}")
        yield pb.CopyChunk(stat_json=json.dumps(self.copy_stat))
        for i in range(0, len(self.copy_tar), 1000):
            yield pb.CopyChunk(data=self.copy_tar[i : i + 1000])

    async def CopyToContainer(self, requests: AsyncIterator[Any], context: Any) -> pb.Empty:
        async for chunk in requests:
            if chunk.WhichOneof("part") == "options":
                self.copied_in.append(chunk.options)
            else:
                self.copied_tar += chunk.data
        return pb.Empty()


class FakeDaemon:
    def __init__(self) -> None:
        self.engine = FakeEngine()
        self.dir = tempfile.mkdtemp(prefix="rtctl-")  # short: unix socket paths are limited
        self.socket = f"{self.dir}/engine.sock"
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),))

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = grpc.aio.server()
        engine_pb2_grpc.add_EngineServicer_to_server(self.engine, server)  # type: ignore[no-untyped-call]
        server.add_insecure_port(f"unix:{self.socket}")
        await server.start()
        self._ready.set()
        await self._stop.wait()
        await server.stop(0)

    def __enter__(self) -> FakeDaemon:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def cli(self, *argv: str) -> int:
        return main(["-H", f"unix://{self.socket}", *argv])


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    with FakeDaemon() as d:
        yield d


@pytest.fixture
def piped_stdin(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Replace stdin with a pipe; the test writes into it and closes it."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "r")
    monkeypatch.setattr("sys.stdin", reader)
    with os.fdopen(write_fd, "wb") as writer:
        yield writer
    reader.close()


def test_run_attaches_before_start_and_exits_with_the_container_code(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.engine.exit_code = 3
    assert daemon.cli("run", "--name", "web", "busybox", "sh", "-c", "exit 3") == 3
    assert daemon.engine.events == ["create", "attach", "start"]
    opts = daemon.engine.attach_options
    assert opts is not None and opts.id == CID and opts.stdout and opts.stderr and not opts.stdin
    out, err = capsys.readouterr()
    assert out == "hello\n" and err == "oops\n"


def test_run_forwards_piped_stdin_then_closes_it(
    daemon: FakeDaemon, piped_stdin: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.engine.echo_stdin = True
    piped_stdin.write(b"line one\nline two\n")
    piped_stdin.close()
    assert daemon.cli("run", "-i", "busybox", "cat") == 0
    assert daemon.engine.stdin_closed and bytes(daemon.engine.stdin) == b"line one\nline two\n"
    req = daemon.engine.created[0]
    assert req.stdin_open and req.stdin_once
    assert daemon.engine.attach_options is not None and daemon.engine.attach_options.stdin
    assert capsys.readouterr().out == "hello\nline one\nline two\n"


def test_run_streams_a_large_stdin_completely(
    daemon: FakeDaemon, piped_stdin: Any, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    daemon.engine.echo_stdin = True
    data = bytes(range(256)) * 8192  # 2 MiB: far more than the pipe and the send window hold

    def feed() -> None:
        piped_stdin.write(data)
        piped_stdin.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    assert daemon.cli("run", "-i", "busybox", "cat") == 0
    feeder.join()
    assert daemon.engine.stdin_closed and bytes(daemon.engine.stdin) == data
    assert capsysbinary.readouterr().out == b"hello\n" + data  # binary output is untouched


def test_run_rm_waits_for_the_removal(daemon: FakeDaemon) -> None:
    assert daemon.cli("run", "--rm", "busybox", "true") == 0
    assert daemon.engine.events == ["create", "attach", "start", "wait removed"]
    assert daemon.engine.created[0].auto_remove


def test_run_detached_prints_the_id(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert daemon.cli("run", "-d", "busybox", "sleep", "9") == 0
    assert daemon.engine.events == ["create", "start"]
    assert capsys.readouterr().out == CID + "\n"


def test_run_pulls_a_missing_image_on_stderr(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.engine.missing_image = True
    assert daemon.cli("run", "busybox", "true") == 0
    assert daemon.engine.events == ["create", "pull", "create", "attach", "start"]
    out, err = capsys.readouterr()
    assert out == "hello\n"  # stdout is the container's alone
    assert "Unable to find image 'busybox:latest' locally" in err
    assert "Pulling from busybox" in err


def test_run_never_pull_reports_the_missing_image(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.engine.missing_image = True
    assert daemon.cli("run", "--pull", "never", "busybox") == 125
    assert daemon.engine.events == ["create"]
    assert "No such image: busybox" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ('exec: "nope": executable file not found in $PATH', 127),
        ("exec: /etc: permission denied", 126),
        ("cgroup trouble", 125),
    ],
)
def test_run_start_failure_exit_codes(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], error: str, code: int
) -> None:
    daemon.engine.start_error = error
    assert daemon.cli("run", "busybox", "nope") == code
    assert error in capsys.readouterr().err


def test_bad_flag_never_reaches_the_daemon(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    assert daemon.cli("run", "--restart", "bogus", "busybox") == 125
    assert daemon.engine.events == []
    assert "invalid restart policy" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["run", "--no-such-flag", "busybox", "true"], "runtimectl run: error: unrecognized"),
        (["ps", "--no-such-flag"], "runtimectl ps: error: unrecognized"),
        (["image", "ls", "--no-such-flag"], "runtimectl image ls: error: unrecognized"),
        (["network", "create"], "runtimectl network create: error: the following arguments"),
        (["no-such-command"], "runtimectl: error: argument COMMAND: invalid choice"),
    ],
)
def test_usage_errors_exit_125_in_the_commands_own_words(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], argv: list[str], usage: str
) -> None:
    """docker's status for its own failures, not argparse's 2: a script around `run`
    must not mistake a typo for a container that exited 2."""
    with pytest.raises(SystemExit) as info:
        daemon.cli(*argv)
    assert info.value.code == 125
    err = capsys.readouterr().err
    assert err.startswith(usage)
    command = usage.split(":")[0]
    assert err.endswith(f"\nSee '{command} --help'.\n") and err.count("\n") == 2
    assert daemon.engine.events == []


def test_run_and_create_without_a_daemon_exit_125(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = f"unix://{tmp_path}/none.sock"
    assert main(["-H", host, "run", "busybox", "true"]) == 125
    assert main(["-H", host, "create", "busybox"]) == 125
    assert main(["-H", host, "ps"]) == 1  # as docker's: only run and create say 125
    assert capsys.readouterr().err.count("is runtimed running?") == 3


def test_rm_reports_a_running_container_and_continues(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.engine.remove_error = "cannot remove container web: container is running"
    assert daemon.cli("rm", "web", "other") == 1
    out, err = capsys.readouterr()
    assert "Error response from daemon: cannot remove container web" in err
    # Both were asked (at once, as docker does: in either order), though one failed.
    assert sorted(daemon.engine.events) == ["rm other force=False", "rm web force=False"]
    assert daemon.cli("rm", "-f", "web") == 0
    assert capsys.readouterr().out == "web\n"


def test_ps_lists_through_the_daemon(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    assert daemon.cli("container", "ls", "-n", "2") == 0
    assert daemon.engine.events == ["list all=True last=2"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("CONTAINER ID") and "About a minute ago" in lines[1]


def test_inspect_falls_back_from_container_to_image(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    assert daemon.cli("inspect", "busybox") == 0
    assert json.loads(capsys.readouterr().out)[0]["Id"].startswith("sha256:")
    assert daemon.cli("inspect", "nothing") == 1
    assert "Error: No such object: nothing" in capsys.readouterr().err
    assert daemon.cli("container", "inspect", "busybox") == 1
    assert "Error: No such container: busybox" in capsys.readouterr().err


def test_inspect_finds_networks_and_volumes_too(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    """docker inspect [--type network|volume], as users type it for those objects too."""
    assert daemon.cli("inspect", "appnet", "data", "--format", "{{.Name}} {{.Driver}}") == 0
    assert capsys.readouterr().out == "appnet bridge\ndata local\n"
    assert daemon.cli("inspect", "--type", "volume", "data", "--format", "{{.Mountpoint}}") == 0
    assert capsys.readouterr().out == "/v/data\n"
    assert daemon.cli("inspect", "--type", "network", "data") == 1
    assert "Error: No such network: data" in capsys.readouterr().err


def test_exec_passes_options_and_returns_the_process_code(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.engine.exit_code = 42
    rc = daemon.cli("exec", "-e", "A=1", "-u", "nobody", "-w", "/tmp", "web", "sh", "-c", "exit 42")
    assert rc == 42
    opts = daemon.engine.exec_options
    assert opts is not None
    assert (opts.id, list(opts.cmd), list(opts.env)) == ("web", ["sh", "-c", "exit 42"], ["A=1"])
    assert (opts.user, opts.working_dir, opts.tty, opts.stdin) == ("nobody", "/tmp", False, False)
    assert capsys.readouterr().out == "hello\n"


def test_tty_needs_a_terminal_on_stdin(
    daemon: FakeDaemon, piped_stdin: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert daemon.cli("run", "-it", "busybox", "sh") == 1
    assert "the input device is not a TTY" in capsys.readouterr().err
    assert daemon.engine.events == []


@pytest.fixture
def pty_stdin(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, int]]:
    """stdin is the slave side of a fresh pty (30 rows, 100 columns); yields (master, slave)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    reader = os.fdopen(slave, "r")
    monkeypatch.setattr("sys.stdin", reader)
    yield master, slave
    reader.close()
    os.close(master)


def attachable(daemon: FakeDaemon) -> None:
    daemon.engine.inspect_doc = {
        "Id": CID,
        "Config": {"Tty": True, "OpenStdin": True},
        "State": {"Running": True},
    }
    daemon.engine.wait_for_cancel = True


@pytest.mark.parametrize("daemon_ends_call", [True, False])
def test_attach_detaches_on_the_keys_and_restores_the_terminal(
    daemon: FakeDaemon,
    pty_stdin: tuple[int, int],
    capsys: pytest.CaptureFixture[str],
    daemon_ends_call: bool,
) -> None:
    master, slave = pty_stdin
    attachable(daemon)
    # Either way the keys typed before the sequence arrive; a daemon that keeps the call
    # open after our half-close gets cancelled.
    daemon.engine.hold_after_half_close = not daemon_ends_call
    before = termios.tcgetattr(slave)

    def type_keys() -> None:
        # Only once the terminal is raw: in cooked mode ctrl-q is flow control, not input.
        if daemon.engine.got_resize.wait(5):
            os.write(master, b"ab\x10x\x10\x11after")

    typist = threading.Thread(target=type_keys)
    typist.start()
    rc = daemon.cli("attach", "web")
    typist.join()
    assert rc == 0
    assert daemon.engine.resizes[0] == (30, 100)
    assert bytes(daemon.engine.stdin) == b"ab\x10x"
    assert "read escape sequence" in capsys.readouterr().err
    assert termios.tcgetattr(slave) == before
    # A running container is not started again; the daemon saw the client leave.
    assert daemon.engine.events == ["attach", "detached"]


def test_sigterm_restores_the_terminal(
    daemon: FakeDaemon, pty_stdin: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    _, slave = pty_stdin
    attachable(daemon)
    before = termios.tcgetattr(slave)
    raw_seen: list[bool] = []

    def terminate() -> None:
        if daemon.engine.got_resize.wait(5):
            raw_seen.append(not termios.tcgetattr(slave)[3] & termios.ICANON)
            os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate)
    killer.start()
    rc = daemon.cli("attach", "--sig-proxy=false", "web")
    killer.join()
    assert raw_seen == [True]
    assert rc == 128 + signal.SIGTERM
    assert termios.tcgetattr(slave) == before
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_cp_from_container_into_a_directory(
    daemon: FakeDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.engine.copy_stat = {"name": "app", "mode": (1 << 31) | 0o755}
    daemon.engine.copy_tar = make_tar([("app", "dir", b""), ("app/conf", "file", b"x" * 5000)])
    assert daemon.cli("cp", "web:/srv/app", str(tmp_path)) == 0
    assert (tmp_path / "app" / "conf").read_bytes() == b"x" * 5000
    assert daemon.cli("cp", "web:/srv/app", str(tmp_path / "renamed")) == 0
    assert (tmp_path / "renamed" / "conf").exists()
    assert daemon.engine.events == ["copy-from /srv/app", "copy-from /srv/app"]
    assert "Successfully copied" in capsys.readouterr().err


def test_cp_from_container_contents_only_and_to_stdout(
    daemon: FakeDaemon, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    daemon.engine.copy_stat = {"name": "app", "mode": (1 << 31) | 0o755}
    daemon.engine.copy_tar = make_tar([("app", "dir", b""), ("app/conf", "file", b"c")])
    existing = tmp_path / "existing"
    existing.mkdir()
    assert daemon.cli("cp", "web:/srv/app/.", str(existing)) == 0
    assert [p.name for p in existing.iterdir()] == ["conf"]
    capsysbinary.readouterr()
    assert daemon.cli("cp", "-q", "web:/srv/app", "-") == 0
    assert capsysbinary.readouterr() == (daemon.engine.copy_tar, b"")


def test_cp_to_container_names_the_entry_after_the_destination(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("hello")
    # The destination does not exist: the file is created under that name in its parent.
    assert daemon.cli("cp", str(source), "web:/tmp/renamed.txt") == 0
    assert [o.path for o in daemon.engine.copied_in] == ["/tmp"]
    with tarfile.open(fileobj=io.BytesIO(daemon.engine.copied_tar)) as tf:
        (member,) = tf.getmembers()
        assert (member.name, member.uid, member.gid) == ("renamed.txt", 0, 0)
        extracted = tf.extractfile(member)
        assert extracted is not None and extracted.read() == b"hello"


def test_cp_to_an_existing_container_directory(daemon: FakeDaemon, tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<p>")
    daemon.engine.copy_stat = {"name": "www", "mode": (1 << 31) | 0o755}
    assert daemon.cli("cp", str(tmp_path / "site"), "web:/var/www") == 0
    assert [o.path for o in daemon.engine.copied_in] == ["/var/www"]
    with tarfile.open(fileobj=io.BytesIO(daemon.engine.copied_tar)) as tf:
        assert sorted(tf.getnames()) == ["site", "site/index.html"]


def test_cp_needs_exactly_one_container(daemon: FakeDaemon, capsys: Any) -> None:
    assert daemon.cli("cp", "a:/x", "b:/y") == 1
    assert "copying between containers is not supported" in capsys.readouterr().err
    assert daemon.cli("cp", "/x", "/y") == 1
    assert "must specify at least one container source" in capsys.readouterr().err

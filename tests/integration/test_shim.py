"""The per-container shim with real crun, inside the user namespace the daemon uses.

Each test runs a scenario as root of `unshare --user --map-auto --map-root-user
--mount` (see tests/unit/_userns.py): the launcher, the shims and crun run
there exactly as under the daemon, and the daemon's client
(runtimed.core.shim_client) drives them. Containers use a busybox root
filesystem made once per session by the test user (who is root inside).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.unit._userns import run_scenario

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SHIM_DIR = REPO / "shim"
if str(SHIM_DIR) not in sys.path:
    sys.path.insert(0, str(SHIM_DIR))

STDOUT, STDERR, EXIT = 1, 2, 5
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z"


# -- outside the namespace -------------------------------------------------------


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Static busybox with hard-linked applets (busybox then really execs them)."""
    if shutil.which("crun") is None:
        pytest.skip("crun is not installed")
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.skip("busybox-static is not installed")
    root = tmp_path_factory.mktemp("shim-rootfs")
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root"):
        (root / d).mkdir()
    shutil.copy2(busybox, root / "bin/busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if not (root / "bin" / applet).exists():
            os.link(root / "bin/busybox", root / "bin" / applet)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    return root


def _run(func: str, tmp_path: Path, rootfs: Path) -> str:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return run_scenario(__file__, func, str(scratch), str(rootfs), userns=True)


# -- inside the namespace: helpers ----------------------------------------------

_TEMPLATE: dict[str, Any] = {}


def _spec(rootfs: str, args: list[str], *, tty: bool = False, pid_ns: str | None = None) -> dict:
    """crun's own rootless template without a user namespace (the mapping is inherited)
    and without cgroups (not managed here)."""
    if not _TEMPLATE:
        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"spec-{os.getpid()}"
        tmp.mkdir()
        subprocess.run(["crun", "spec", "--rootless"], cwd=tmp, check=True)
        _TEMPLATE.update(json.loads((tmp / "config.json").read_text()))
        shutil.rmtree(tmp)
    spec = json.loads(json.dumps(_TEMPLATE))
    spec["process"].update(terminal=tty, args=args)
    spec["process"]["env"] = ["PATH=/bin", "TERM=xterm"] if tty else ["PATH=/bin"]
    spec["root"] = {"path": rootfs, "readonly": True}
    spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "cgroup"]
    spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    linux = spec["linux"]
    linux.pop("resources", None)
    namespaces = [n for n in linux["namespaces"] if n["type"] not in ("user", "pid")]
    namespaces.append({"type": "pid", "path": pid_ns} if pid_ns else {"type": "pid"})
    linux["namespaces"] = namespaces
    return spec


class Ctr:
    def __init__(self, env: Env, cid: str, state_dir: Path, log: Path) -> None:
        self.env, self.id, self.state_dir, self.log = env, cid, state_dir, log
        self.shim_pid = 0
        self.pid = 0

    @property
    def client(self) -> Any:
        from runtimed.core.shim_client import ShimClient

        return ShimClient(self.state_dir)


class Env:
    """A run dir, a crun root and a launcher, like the daemon's."""

    def __init__(self, scratch: str, rootfs: str) -> None:
        from runtimed.core.shim_client import ShimLauncher

        self.rootfs = rootfs
        self.run = Path(scratch) / "run"
        self.data = Path(scratch) / "data"
        self.data.mkdir(parents=True)
        self.crun_root = self.run / "crun"
        self.launcher = ShimLauncher(
            socket=self.run / "shim-launcher.sock",
            shim_path=SHIM_DIR,
            pid_file=self.run / "ns-holder.pid",
        )
        self.containers: list[Ctr] = []

    async def create(
        self,
        args: list[str],
        *,
        tty: bool = False,
        stdin: bool = False,
        stdin_once: bool = False,
        log: str = "json-file",
        pid_ns: str | None = None,
    ) -> Ctr:
        # Full-length ids make socket paths longer than sun_path allows: that must work.
        cid = secrets.token_hex(32)
        state_dir = self.run / "containers" / cid
        (state_dir / "bundle").mkdir(parents=True)
        spec = _spec(self.rootfs, args, tty=tty, pid_ns=pid_ns)
        (state_dir / "bundle/config.json").write_text(json.dumps(spec))
        log_path = self.data / (f"{cid}-json.log" if log == "json-file" else f"{cid}.log")
        ctr = Ctr(self, cid, state_dir, log_path)
        ctr.shim_pid, ctr.pid = await self.launcher.spawn(
            {
                "id": cid,
                "bundle": str(state_dir / "bundle"),
                "state_dir": str(state_dir),
                "runtime": shutil.which("crun"),
                "runtime_root": str(self.crun_root),
                "tty": tty,
                "stdin": stdin,
                "stdin_once": stdin_once,
                "log": {"driver": log, "path": str(log_path), "max_size": 0, "max_file": 1},
                "exit_file": str(state_dir / "exit.json"),
            }
        )
        self.containers.append(ctr)
        return ctr

    async def cleanup(self) -> None:
        from runtimed.errors import RuntimedError

        await self.launcher.stop()
        for ctr in self.containers:
            if not ctr.state_dir.exists():
                continue  # deleted by the test: the shim removed its state dir
            with contextlib.suppress(RuntimedError):
                await ctr.client.kill(signal.SIGKILL, all_processes=True)
            with contextlib.suppress(RuntimedError, TimeoutError):
                await asyncio.wait_for(ctr.client.wait(), 3)
            try:
                await ctr.client.delete()
            except RuntimedError:
                _kill_leftovers(ctr)


def _kill_leftovers(ctr: Ctr) -> None:
    """Last resort when a shim did not clean up: kill it and its container, checking first
    that the pids still name them (a pid may have been reused)."""

    def stat(pid: int) -> list[bytes]:
        try:
            raw = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            return []
        return [raw[raw.index(b"(") + 1 : raw.rindex(b")")], *raw[raw.rindex(b")") + 2 :].split()]

    shim = stat(ctr.shim_pid)
    if shim and shim[0] == b"runtimed-shim":
        os.kill(ctr.shim_pid, signal.SIGKILL)
    init = stat(ctr.pid)
    if init and int(init[2]) in (ctr.shim_pid, 1):
        os.kill(ctr.pid, signal.SIGKILL)


def scenario(body: Any) -> Any:
    """Run an async scenario body with an Env that is cleaned up whatever happens."""

    def run(scratch: str, rootfs: str) -> None:
        async def main() -> None:
            env = Env(scratch, rootfs)
            try:
                # Well inside run_scenario's 60 s, so cleanup always gets its turn.
                await asyncio.wait_for(body(env), 30)
            finally:
                await env.cleanup()

        asyncio.run(main())

    run.__name__ = body.__name__
    return run


async def collect(stream: Any, until: bytes | None = None, timeout: float = 10) -> dict[int, Any]:
    """Frames by type until EXIT (or `until` appears in stdout); EXIT decoded."""
    got: dict[int, Any] = {STDOUT: b"", STDERR: b""}

    async def pump() -> None:
        while (frame := await stream.read()) is not None:
            kind, data = frame
            if kind == EXIT:
                got[EXIT] = json.loads(data)
                return
            got[kind] += data
            if until is not None and until in got[STDOUT]:
                return

    await asyncio.wait_for(pump(), timeout)
    return got


async def wait_exit(ctr: Ctr, timeout: float = 10) -> dict[str, Any]:
    return await asyncio.wait_for(ctr.client.wait(), timeout)


def gone(pid: int, timeout: float = 5) -> bool:
    """The process has ended (a zombie waiting for its reaper counts as ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            return True
        if stat[stat.rindex(b")") + 2 :].startswith(b"Z"):
            return True
        time.sleep(0.02)
    return False


# -- scenarios ------------------------------------------------------------------


@scenario
async def scenario_logs(env: Env) -> None:
    long_line = "head -c 20000 /dev/zero | tr '\\0' a; echo"
    script = f"echo hello; echo '<b>&</b>' >&2; {long_line}; printf tail"
    for driver in ("json-file", "cri"):
        ctr = await env.create(["sh", "-c", script], log=driver)
        await ctr.client.start()
        state = await wait_exit(ctr)
        assert (state["exit_code"], state["reason"]) == (0, "Completed")
        text = ctr.log.read_text()
        if driver == "cri":
            lines = text.splitlines()
            assert len(lines) == 5, text[:500]
            got = sorted(
                re.fullmatch(TS + r" (\w+) ([PF]) (.*)", line).group(2, 3, 4) for line in lines
            )
            assert got == sorted(
                [
                    ("stdout", "F", "hello"),
                    ("stderr", "F", "<b>&</b>"),
                    ("stdout", "P", "a" * 16384),
                    ("stdout", "F", "a" * (20000 - 16384)),
                    ("stdout", "P", "tail"),
                ]
            )
        else:
            lines = text.splitlines()
            assert len(lines) == 5, text[:500]
            records = [json.loads(line) for line in lines]
            assert all(list(r) == ["log", "stream", "time"] for r in records)
            assert all(re.fullmatch(TS, r["time"]) for r in records)
            assert sorted((r["stream"], r["log"]) for r in records) == sorted(
                [
                    ("stdout", "hello\n"),
                    ("stderr", "<b>&</b>\n"),
                    ("stdout", "a" * 16384),
                    ("stdout", "a" * (20000 - 16384) + "\n"),
                    ("stdout", "tail"),
                ]
            )
            assert '"log":"\\u003cb\\u003e\\u0026\\u003c/b\\u003e\\n"' in text
        exit_file = json.loads((ctr.state_dir / "exit.json").read_text())
        assert exit_file["exit_code"] == 0 and exit_file["status"] == "exited"


def test_output_lands_in_both_log_formats_exactly(tmp_path: Path, rootfs: Path) -> None:
    _run("scenario_logs", tmp_path, rootfs)


@scenario
async def scenario_exit_codes(env: Env) -> None:
    # Spawned concurrently: the launcher serves several at once.
    ok, fail, killed = await asyncio.gather(
        env.create(["true"]), env.create(["sh", "-c", "exit 1"]), env.create(["sleep", "1000"])
    )
    for ctr in (ok, fail, killed):
        assert (await ctr.client.state())["status"] == "created"
        await ctr.client.start()
    assert (await killed.client.state())["status"] == "running"
    await killed.client.kill(signal.SIGKILL)
    # SIGTERM's default action never reaches a pid namespace's init; a pod member
    # sharing the pid namespace of another container (its "pause") it does reach.
    pause = await env.create(["sleep", "1000"])
    await pause.client.start()
    member = await env.create(["sleep", "1000"], pid_ns=f"/proc/{pause.pid}/ns/pid")
    await member.client.start()
    await member.client.kill(signal.SIGTERM)
    results = {
        name: await wait_exit(ctr)
        for name, ctr in (("ok", ok), ("fail", fail), ("killed", killed), ("member", member))
    }
    assert {k: (v["exit_code"], v["reason"]) for k, v in results.items()} == {
        "ok": (0, "Completed"),
        "fail": (1, "Error"),
        "killed": (137, "Error"),
        "member": (143, "Error"),
    }
    for state in results.values():
        assert state["status"] == "exited"
        assert state["finished_at"] >= state["started_at"] > 0
    # The exit survives in exit.json for a daemon that was away.
    assert json.loads((killed.state_dir / "exit.json").read_text())["exit_code"] == 137


def test_exit_codes_and_reasons(tmp_path: Path, rootfs: Path) -> None:
    _run("scenario_exit_codes", tmp_path, rootfs)


@scenario
async def scenario_create_error(env: Env) -> None:
    from runtimed.errors import FailedPrecondition

    try:
        await env.create(["/no/such/program"])
    except FailedPrecondition as exc:
        assert "/no/such/program" in exc.message, exc.message
        assert "No such file or directory" in exc.message, exc.message
    else:
        raise AssertionError("creating a container with a missing program succeeded")
    assert not list((env.crun_root).glob("*/status")), "crun state left behind"


def test_create_failure_reports_crun_error(tmp_path: Path, rootfs: Path) -> None:
    _run("scenario_create_error", tmp_path, rootfs)


@scenario
async def scenario_attach(env: Env) -> None:
    ctr = await env.create(["sh", "-c", "cat; echo done >&2"], stdin=True, stdin_once=True)
    # Attached before start: no output is missed.
    stream = await ctr.client.attach(stdin=True, stdout=True, stderr=True)
    watcher = await ctr.client.attach(stdin=False, stdout=True, stderr=False)
    await ctr.client.start()
    await stream.write_stdin(b"hello through stdin\n")
    got = await collect(stream, until=b"hello through stdin\n")
    assert got[STDOUT] == b"hello through stdin\n"
    await stream.write_stdin(b"second\n")
    await stream.close_stdin()  # stdin_once: cat sees EOF
    rest = await collect(stream)
    assert rest[STDOUT] == b"second\n" and rest[STDERR] == b"done\n"
    assert rest[EXIT]["exit_code"] == 0
    other = await collect(watcher)
    assert other[STDOUT] == b"hello through stdin\nsecond\n" and other[STDERR] == b""
    assert other[EXIT]["status"] == "exited"
    logged = [json.loads(line)["log"] for line in ctr.log.read_text().splitlines()]
    assert logged == ["hello through stdin\n", "second\n", "done\n"]


def test_attach_gets_live_output_and_stdin_reaches_cat(tmp_path: Path, rootfs: Path) -> None:
    _run("scenario_attach", tmp_path, rootfs)


@scenario
async def scenario_tty(env: Env) -> None:
    ctr = await env.create(["sh", "-c", "tty; read x; stty size"], tty=True, stdin=True)
    stream = await ctr.client.attach(stdin=True, stdout=True, stderr=True)
    await ctr.client.start()
    got = await collect(stream, until=b"\n")
    assert got[STDOUT] == b"/dev/pts/0\r\n"
    await stream.resize(37, 111)
    await stream.write_stdin(b"go\r")
    rest = await collect(stream)
    assert rest[STDOUT].endswith(b"37 111\r\n"), rest[STDOUT]
    assert rest[EXIT]["exit_code"] == 0
    # With a tty everything is stdout, in the log too.
    streams = {json.loads(line)["stream"] for line in ctr.log.read_text().splitlines()}
    assert streams == {"stdout"}


def test_tty_and_resize(tmp_path: Path, rootfs: Path) -> None:
    _run("scenario_tty", tmp_path, rootfs)


@scenario
async def scenario_exec(env: Env) -> None:
    from runtimed.errors import FailedPrecondition

    ctr = await env.create(["sleep", "1000"])
    await ctr.client.start()
    process = {
        "args": ["sh", "-c", "echo out; echo err >&2; exit 7"],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
    }
    got = await collect(await ctr.client.exec(process, tty=False, stdin=False))
    assert (got[STDOUT], got[STDERR], got[EXIT]["exit_code"]) == (b"out\n", b"err\n", 7)

    cat = dict(process, args=["cat"])
    stream = await ctr.client.exec(cat, tty=False, stdin=True)
    await stream.write_stdin(b"echoed back\n")
    await stream.close_stdin()
    got = await collect(stream)
    assert (got[STDOUT], got[EXIT]["exit_code"]) == (b"echoed back\n", 0)

    tty = dict(process, args=["tty"])
    got = await collect(await ctr.client.exec(tty, tty=True, stdin=False))
    assert re.fullmatch(rb"/dev/pts/\d+\r\n", got[STDOUT]), got
    assert got[EXIT]["exit_code"] == 0

    # ExecSync's timeout: the exec is killed, the container lives on.
    stream = await ctr.client.exec(
        dict(process, args=["sleep", "1000"]), tty=False, stdin=False, exec_id="slow"
    )
    await ctr.client.kill_exec("slow", signal.SIGKILL)
    assert (await collect(stream))[EXIT]["exit_code"] == 137
    assert (await ctr.client.state())["status"] == "running"
    # Exec output is not the container's log.
    assert ctr.log.read_text() == ""

    await ctr.client.kill(signal.SIGKILL)
    await wait_exit(ctr)
    try:
        await ctr.client.exec(process, tty=False, stdin=False)
    except FailedPrecondition as exc:
        assert "not running" in exc.message
    else:
        raise AssertionError("exec in an exited container succeeded")


def test_exec_output_stdin_tty_and_exit_codes(tmp_path: Path, rootfs: Path) -> None:
    _run("scenario_exec", tmp_path, rootfs)


@scenario
async def scenario_launcher_death(env: Env) -> None:
    ctr = await env.create(["sh", "-c", "while true; do echo tick; sleep 0.05; done"])
    await ctr.client.start()
    launcher_pid = await env.launcher.ensure()
    assert (env.run / "ns-holder.pid").read_text().strip() == str(launcher_pid)
    assert Path(f"/proc/{ctr.shim_pid}/comm").read_text().strip() == "runtimed-shim"
    os.kill(launcher_pid, signal.SIGKILL)
    assert gone(launcher_pid)
    size = ctr.log.stat().st_size
    await asyncio.sleep(0.5)
    assert ctr.log.stat().st_size > size, "the log stopped growing without the launcher"
    assert (await ctr.client.state())["status"] == "running"
    stream = await ctr.client.attach(stdin=False, stdout=True, stderr=True)
    assert b"tick\n" in (await collect(stream, until=b"tick\n"))[STDOUT]
    await stream.close()
    # CRI ReopenContainerLog: after a rename the log goes on in a new file.
    rotated = ctr.log.with_name(ctr.log.name + ".1")
    ctr.log.rename(rotated)
    await ctr.client.reopen_log()
    await asyncio.sleep(0.3)
    assert json.loads(ctr.log.read_text().splitlines()[0])["log"] == "tick\n"
    size = rotated.stat().st_size
    await asyncio.sleep(0.2)
    assert rotated.stat().st_size == size, "still writing to the renamed file"
    # A new launcher serves new containers next to the old ones.
    other = await env.create(["true"])
    assert await env.launcher.ensure() != launcher_pid
    await other.client.start()
    assert (await wait_exit(other))["exit_code"] == 0
    await ctr.client.kill(signal.SIGKILL)
    assert (await wait_exit(ctr))["exit_code"] == 137


def test_containers_survive_the_launcher(tmp_path: Path, rootfs: Path) -> None:
    _run("scenario_launcher_death", tmp_path, rootfs)


@scenario
async def scenario_delete(env: Env) -> None:
    from runtimed.errors import FailedPrecondition, Unavailable

    ran = await env.create(["sleep", "1000"])
    await ran.client.start()
    try:
        await ran.client.delete()
    except FailedPrecondition as exc:
        assert "running" in exc.message
    else:
        raise AssertionError("delete of a running container succeeded")
    await ran.client.kill(signal.SIGKILL, all_processes=True)
    await wait_exit(ran)
    never_started = await env.create(["sleep", "1000"])
    for ctr in (ran, never_started):
        await ctr.client.delete()
        assert gone(ctr.pid) and gone(ctr.shim_pid), "a process outlived delete"
        assert not ctr.state_dir.exists()
        assert not (env.crun_root / ctr.id).exists()
        try:
            await ctr.client.state()
        except Unavailable:
            pass
        else:
            raise AssertionError("a deleted shim still answers")
    assert ran.log.exists()  # the log belongs to the daemon, not to the shim


def test_delete_leaves_nothing_behind(tmp_path: Path, rootfs: Path) -> None:
    _run("scenario_delete", tmp_path, rootfs)


@scenario
async def scenario_slow_client(env: Env) -> None:
    # 100 lines of 60000 bytes (6 MB): far more than the shim's per-client buffer,
    # the socket and asyncio's reader (which reads ahead) hold together.
    script = "for i in $(seq 100); do head -c 60000 /dev/zero | tr '\\0' x; echo; done"
    ctr = await env.create(["sh", "-c", script])
    stream = await ctr.client.attach(stdin=False, stdout=True, stderr=True)
    await ctr.client.start()
    started = time.monotonic()
    state = await wait_exit(ctr, timeout=20)  # nobody reads `stream` meanwhile
    assert state["exit_code"] == 0
    assert time.monotonic() - started < 10
    lines = ctr.log.read_text().splitlines()
    pieces = [json.loads(line)["log"] for line in lines]
    assert "".join(pieces) == ("x" * 60000 + "\n") * 100
    got = await collect(stream)
    assert got[EXIT]["exit_code"] == 0
    assert 0 < len(got[STDOUT]) < 100 * 60001, "the slow client should have lost output"


def test_slow_attach_client_does_not_block_the_log(tmp_path: Path, rootfs: Path) -> None:
    _run("scenario_slow_client", tmp_path, rootfs)

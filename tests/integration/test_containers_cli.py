"""docker-style containers through runtimectl: run, lifecycle, logs, exec, cp, errors."""

from __future__ import annotations

import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from tests.support.containers import inspect
from tests.support.daemon import Daemon
from tests.support.waiting import ended, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image(daemon: Daemon) -> str:
    """busybox with every applet as a hard link, imported from a local tarball."""
    return daemon.import_busybox("bb:test")


def test_run_prints_output_and_returns_exit_code(daemon: Daemon, image: str) -> None:
    result = daemon.ok("run", "--rm", image, "echo", "hello world")
    assert result.stdout == "hello world\n"
    failing = daemon.ctl("run", "--rm", image, "sh", "-c", "echo oops >&2; exit 3")
    assert failing.returncode == 3
    assert failing.stderr == "oops\n"
    # --rm removed both.
    assert daemon.ok("ps", "-a", "-q").stdout == ""


def test_run_options_reach_the_process(
    daemon: Daemon, image: str, tmp_path: Path, cleanup: list[str]
) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from host\n")
    os.chmod(shared, 0o777)
    cleanup.append("opts")
    out = daemon.ok(
        "run",
        "--name",
        "opts",
        "-e",
        "A=1",
        "--env-file",
        str(env_file),
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "--hostname",
        "box",
        "--label",
        "team=core",
        "-v",
        f"{shared}:/shared",
        "-v",
        f"{shared}:/ro:ro",
        image,
        "sh",
        "-c",
        "echo $A $FROM_FILE; pwd; id -u; id -g; hostname; cat /shared/in.txt;"
        " echo written > /shared/out.txt; echo x > /ro/no 2>/dev/null || echo ro-refused",
    ).out_lines
    assert out == ["1 yes", "/tmp", "1000", "1000", "box", "from host", "ro-refused"]
    assert (shared / "out.txt").read_text() == "written\n"
    doc = inspect(daemon, "opts")
    assert doc["Config"]["Labels"] == {"team": "core"}
    assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 0
    assert doc["Name"] == "/opts"


def test_read_only_entrypoint_and_user_lookup(daemon: Daemon, image: str) -> None:
    ro = daemon.ctl("run", "--rm", "--read-only", image, "touch", "/x")
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr
    assert daemon.ok("run", "--rm", "--entrypoint", "echo", image, "via", "ep").stdout == "via ep\n"
    assert daemon.ok("run", "--rm", "-u", "app", image, "id", "-un").stdout == "app\n"
    unknown = daemon.ctl("run", "--rm", "-u", "nobody-here", image, "true")
    assert unknown.returncode == 125 and "unable to find user nobody-here" in unknown.stderr


def test_missing_command_is_127(daemon: Daemon, image: str) -> None:
    result = daemon.ctl("run", "--rm", image, "/no/such/binary")
    assert result.returncode == 127
    assert "/no/such/binary" in result.stderr
    assert daemon.ok("ps", "-a", "-q").stdout == ""


def test_create_start_attach_stop_rm(daemon: Daemon, image: str) -> None:
    cid = daemon.ok(
        "create",
        "--name",
        "life",
        image,
        "sh",
        "-c",
        "trap 'echo bye; exit 143' TERM; echo up; while :; do sleep 0.1; done",
    ).stdout.strip()
    assert len(cid) == 64
    ps = daemon.ok("ps", "-a").out_lines
    assert ps[0].split() == [
        "CONTAINER",
        "ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]
    row = next(line for line in ps if line.startswith(cid[:12]))
    assert "Created" in row and row.rstrip().endswith("life")
    assert daemon.ok("start", "life").stdout.strip() == "life"
    wait_for(lambda: "up\n" in daemon.ok("logs", "life").stdout, what="first output")
    assert "Up " in next(line for line in daemon.ok("ps").out_lines if "life" in line)

    refused = daemon.ctl("rm", "life")
    assert refused.returncode == 1 and "container is running" in refused.stderr
    started = time.monotonic()
    daemon.ok("stop", "-t", "5", "life")
    assert time.monotonic() - started < 4  # the trap answered SIGTERM at once
    assert inspect(daemon, "life")["State"]["ExitCode"] == 143
    assert daemon.ok("logs", "life").stdout == "up\nbye\n"
    assert daemon.ok("rm", "life").stdout.strip() == "life"
    missing = daemon.ctl("inspect", "life")
    assert missing.returncode == 1 and "No such" in missing.stderr


def test_stop_timeout_then_kill_and_kill_signal(daemon: Daemon, image: str) -> None:
    daemon.ok("run", "-d", "--name", "stubborn", image, "sleep", "100")
    started = time.monotonic()
    daemon.ok("stop", "-t", "1", "stubborn")
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 10  # SIGTERM ignored by PID 1, SIGKILL after the timeout
    assert inspect(daemon, "stubborn")["State"]["ExitCode"] == 137
    daemon.ok("start", "stubborn")
    daemon.ok("kill", "stubborn")
    assert daemon.ok("wait", "stubborn").stdout.strip() == "137"
    daemon.ok("rm", "stubborn")
    daemon.ok(
        "run",
        "-d",
        "--name",
        "hup",
        image,
        "sh",
        "-c",
        "trap 'exit 129' HUP; while :; do sleep 0.1; done",
    )
    daemon.ok("kill", "-s", "HUP", "hup")
    assert daemon.ok("wait", "hup").stdout.strip() == "129"
    daemon.ok("rm", "hup")
    bad = daemon.ctl("run", "--stop-signal", "SIGNOPE", image, "true")
    assert bad.returncode == 125


def test_name_conflict_rename_and_ps_filters(
    daemon: Daemon, image: str, cleanup: list[str]
) -> None:
    cleanup += ["first", "renamed"]
    daemon.ok("run", "-d", "--name", "first", "--label", "k=v", image, "sleep", "100")
    dup = daemon.ctl("run", "--name", "first", image, "true")
    assert dup.returncode == 125 and "is already in use" in dup.stderr
    daemon.ok("rename", "first", "renamed")
    names = daemon.ok("ps", "--format", "{{.Names}}").out_lines
    assert "renamed" in names and "first" not in names
    assert (
        daemon.ok("ps", "-q", "--filter", "label=k=v").stdout.strip()
        == inspect(daemon, "renamed")["Id"][:12]
    )
    assert (
        daemon.ok("ps", "-q", "--filter", "status=exited", "--filter", "name=renamed").stdout == ""
    )
    full = daemon.ok("ps", "--no-trunc", "-q").stdout.split()
    assert inspect(daemon, "renamed")["Id"] in full


def test_logs_tail_timestamps_and_follow(daemon: Daemon, image: str, cleanup: list[str]) -> None:
    cleanup.append("talker")
    daemon.ok(
        "run",
        "-d",
        "--name",
        "talker",
        image,
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; done; echo err >&2; sleep 1; echo late",
    )
    wait_for(lambda: "err" in daemon.ok("logs", "talker").stderr, what="stderr line")
    assert daemon.ok("logs", "--tail", "2", "talker").stdout == "line3\n"
    stamped = daemon.ok("logs", "-t", "talker").out_lines[0]
    stamp, _, text = stamped.partition(" ")
    assert text == "line1" and stamp.endswith("Z") and "T" in stamp
    followed = daemon.ok("logs", "-f", "talker", timeout=30)
    assert followed.stdout == "line1\nline2\nline3\nlate\n"
    log_path = Path(inspect(daemon, "talker")["LogPath"])
    first = json.loads(log_path.read_text().splitlines()[0])
    assert list(first) == ["log", "stream", "time"]
    assert first["log"] == "line1\n" and first["stream"] == "stdout"


def test_exec_top_and_errors(daemon: Daemon, image: str, cleanup: list[str]) -> None:
    cleanup.append("worker")
    daemon.ok("run", "-d", "--name", "worker", image, "sleep", "100")
    assert daemon.ok("exec", "worker", "echo", "inside").stdout == "inside\n"
    code = daemon.ctl("exec", "worker", "sh", "-c", "exit 7")
    assert code.returncode == 7
    env = daemon.ok(
        "exec",
        "-e",
        "X=42",
        "-w",
        "/etc",
        "-u",
        "app",
        "worker",
        "sh",
        "-c",
        "echo $X $(pwd) $(id -un)",
    )
    assert env.stdout == "42 /etc app\n"
    piped = daemon.ok("exec", "-i", "worker", "wc", "-c", input="12345")
    assert piped.stdout.strip() == "5"
    top = daemon.ok("top", "worker").out_lines
    assert "PID" in top[0] and any("sleep 100" in line for line in top[1:])
    daemon.ok("stop", "-t", "0", "worker")
    stopped = daemon.ctl("exec", "worker", "true")
    assert stopped.returncode != 0 and "not running" in stopped.stderr


def test_pid_namespace_of_another_container(daemon: Daemon, image: str, cleanup: list[str]) -> None:
    """docker run --pid container:NAME: the processes of NAME are visible (and signalable)."""
    cleanup += ["pidtarget", "pidjoiner"]
    daemon.ok("run", "-d", "--name", "pidtarget", image, "sleep", "4242")
    seen = daemon.ok("run", "--rm", "--pid", "container:pidtarget", image, "ps", "-o", "args")
    assert "sleep 4242" in seen.stdout
    alone = daemon.ok("run", "--rm", image, "ps", "-o", "args")
    assert "sleep 4242" not in alone.stdout
    daemon.ok("create", "--name", "pidjoiner", "--pid", "container:pidtarget", image, "true")
    doc = json.loads(daemon.ok("inspect", "pidjoiner").stdout)[0]
    target_id = json.loads(daemon.ok("inspect", "pidtarget").stdout)[0]["Id"]
    assert doc["HostConfig"]["PidMode"] == f"container:{target_id}"
    before = daemon.ok("ps", "-aq").stdout
    for bad, why in (("hots", "invalid --pid"), ("container:nosuch", "not found")):
        result = daemon.ctl("run", "--rm", "--pid", bad, image, "true")
        assert result.returncode == 125 and why in result.stderr, result.stderr
    assert daemon.ok("ps", "-aq").stdout == before


def test_host_pid_namespace(daemon: Daemon, image: str, cleanup: list[str]) -> None:
    """docker run --pid host: the host's processes (rootless: its /proc bound, as no procfs can
    be mounted there); what the init leaves behind ends with it, as in a namespace of its own."""
    cleanup += ["hostpid", "hostpid2"]
    seen = daemon.ok("run", "--rm", "--pid", "host", image, "readlink", "/proc/self/ns/pid")
    assert seen.stdout.strip() == os.readlink("/proc/self/ns/pid")
    # This test's own process is there (not `ls /proc`: host processes come and go meanwhile).
    daemon.ok("run", "--rm", "--pid", "host", image, "test", "-d", f"/proc/{os.getpid()}")
    script = "sleep 4243 >/dev/null 2>&1 & echo $!"
    leftover = int(
        daemon.ok("run", "--name", "hostpid", "--pid", "host", image, "sh", "-c", script).stdout
    )
    wait_for(lambda: ended(leftover), what="the init's leftover to end with the container")
    assert inspect(daemon, "hostpid")["HostConfig"]["PidMode"] == "host"
    # top shows the tree; stop ends the init and then what it left.
    script = "sleep 4244 >/dev/null 2>&1 & echo $! > /tmp/bg; exec sleep 4245"
    daemon.ok("run", "-d", "--name", "hostpid2", "--pid", "host", image, "sh", "-c", script)
    wait_for(lambda: daemon.ctl("exec", "hostpid2", "test", "-s", "/tmp/bg").returncode == 0,
             what="the background pid written")  # fmt: skip
    background = int(daemon.ok("exec", "hostpid2", "cat", "/tmp/bg").stdout)
    # Only its own processes, though every process of this user shares the namespace.
    rows = daemon.ok("top", "hostpid2").out_lines[1:]
    assert sorted(row.split(None, 7)[-1] for row in rows) == ["sleep 4244", "sleep 4245"]
    daemon.ok("stop", "-t", "1", "hostpid2")
    wait_for(lambda: ended(background), what="the background sleep to end at stop")


def test_cp_both_directions(daemon: Daemon, image: str, tmp_path: Path, cleanup: list[str]) -> None:
    cleanup.append("files")
    daemon.ok(
        "run",
        "-d",
        "--name",
        "files",
        image,
        "sh",
        "-c",
        "mkdir -p /data/sub && echo content > /data/sub/f.txt && sleep 100",
    )
    wait_for(lambda: daemon.ctl("exec", "files", "test", "-f", "/data/sub/f.txt").returncode == 0)
    daemon.ok("cp", "files:/data", str(tmp_path / "out"))
    assert (tmp_path / "out" / "sub" / "f.txt").read_text() == "content\n"
    src = tmp_path / "upload.txt"
    src.write_text("uploaded\n")
    daemon.ok("cp", str(src), "files:/tmp/")
    assert daemon.ok("exec", "files", "cat", "/tmp/upload.txt").stdout == "uploaded\n"
    # A symlink inside the container pointing at / does not lead outside its root.
    daemon.ok("exec", "files", "ln", "-s", "/", "/escape")
    daemon.ok("cp", "files:/escape/etc/hostname", str(tmp_path / "hostname"))
    assert (tmp_path / "hostname").read_text() == inspect(daemon, "files")["Config"][
        "Hostname"
    ] + "\n"
    with tarfile.open(tmp_path / "t.tar", "w") as tar:
        tar.add(src, arcname="../../../outside.txt")
    bad = daemon.ctl("cp", "-", "files:/tmp", input=(tmp_path / "t.tar").read_bytes())
    assert bad.returncode != 0


def test_restart_policies(daemon: Daemon, image: str, cleanup: list[str]) -> None:
    cleanup += ["flaky", "always"]
    daemon.ok(
        "run", "-d", "--name", "flaky", "--restart", "on-failure:2", image, "sh", "-c", "exit 1"
    )
    wait_for(
        lambda: (
            inspect(daemon, "flaky")["RestartCount"] == 2
            and not inspect(daemon, "flaky")["State"]["Running"]
        ),
        what="two restarts",
    )
    time.sleep(0.5)
    assert inspect(daemon, "flaky")["RestartCount"] == 2
    daemon.ok("run", "-d", "--name", "always", "--restart", "always", image, "sh", "-c", "exit 0")
    wait_for(lambda: inspect(daemon, "always")["RestartCount"] >= 2, what="always restarting")
    daemon.ok("stop", "-t", "0", "always")
    count = inspect(daemon, "always")["RestartCount"]
    time.sleep(0.5)
    assert inspect(daemon, "always")["RestartCount"] == count  # a manual stop stands
    conflict = daemon.ctl("run", "--rm", "--restart", "always", image, "true")
    assert conflict.returncode == 125 and "--rm" in conflict.stderr


def test_prune_removes_only_stopped(daemon: Daemon, image: str, cleanup: list[str]) -> None:
    cleanup.append("keeper")
    daemon.ok("run", "-d", "--name", "keeper", image, "sleep", "100")
    daemon.ok("run", "--name", "done1", image, "true")
    out = daemon.ok("container", "prune", "-f").stdout
    assert "Deleted Containers:" in out
    names = daemon.ok("ps", "-a", "--format", "{{.Names}}").out_lines
    assert "keeper" in names and "done1" not in names


def test_bad_input_changes_nothing(daemon: Daemon, image: str) -> None:
    before = daemon.ok("ps", "-a", "-q").stdout
    missing = daemon.ctl("run", "--pull", "never", "nosuch/image:1", "true")
    assert missing.returncode == 125 and "No such image" in missing.stderr
    bad_policy = daemon.ctl("run", "--restart", "sometimes", image, "true")
    assert bad_policy.returncode == 125 and "restart policy" in bad_policy.stderr
    bad_name = daemon.ctl("run", "--name", "bad name!", image, "true")
    assert bad_name.returncode == 125 and "Invalid container name" in bad_name.stderr
    bad_bind = daemon.ctl("run", "-v", "/no/such/dir:/x", image, "true")
    # -v makes a missing source as docker does; rootless, / is not ours to write.
    assert bad_bind.returncode == 125
    assert "error while creating mount source path '/no/such/dir': mkdir /no: permission" in (
        bad_bind.stderr
    )
    unknown_flag = daemon.ctl("run", "--no-such-flag", image, "true")
    assert unknown_flag.returncode == 125 and "--no-such-flag" in unknown_flag.stderr
    assert daemon.ctl("start", "ghost").returncode == 1
    assert "No such container: ghost" in daemon.ctl("stop", "ghost").stderr
    assert daemon.ok("ps", "-a", "-q").stdout == before


def test_file_bind_start_attach_restart_and_since(
    daemon: Daemon, image: str, tmp_path: Path, cleanup: list[str]
) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text("setting=1\n")
    os.chmod(tmp_path, 0o755)
    cleanup += ["attached", "bounce"]
    daemon.ok(
        "create",
        "--name",
        "attached",
        "-v",
        f"{conf}:/etc/app.conf:ro",
        image,
        "cat",
        "/etc/app.conf",
    )
    started = daemon.ok("start", "-a", "attached")
    assert started.stdout == "setting=1\n"
    daemon.ok("run", "-d", "--name", "bounce", image, "sh", "-c", "echo boot; sleep 100")
    first_pid = inspect(daemon, "bounce")["State"]["Pid"]
    daemon.ok("restart", "-t", "0", "bounce")
    state = inspect(daemon, "bounce")["State"]
    assert state["Running"] and state["Pid"] != first_pid
    wait_for(lambda: daemon.ok("logs", "bounce").stdout == "boot\nboot\n", what="second boot")
    assert daemon.ok("logs", "--since", "2999-01-01T00:00:00Z", "bounce").stdout == ""
    assert daemon.ok("logs", "--until", "2000-01-01T00:00:00Z", "bounce").stdout == ""


def test_stop_kill_and_rm_act_on_several_containers_at_once(
    daemon: Daemon, image: str, tmp_path: Path, cleanup: list[str]
) -> None:
    """docker stops several containers at once: each has its SIGTERM before any is killed."""
    shared = tmp_path / "terms"
    shared.mkdir()
    (shared / "log").touch()
    os.chmod(tmp_path, 0o755)
    boxes = ["para1", "para2", "para3"]
    cleanup += boxes
    # On SIGTERM each notes it and waits for the other two: stopped one after another, the
    # first would wait out its grace period and die by SIGKILL (137) instead of exiting 0.
    script = (
        "trap 'echo $0 >> /s/log; until [ $(wc -l < /s/log) -ge 3 ]; do sleep 0.1; done;"
        " exit 0' TERM; while true; do sleep 1; done"
    )
    for name in boxes:
        daemon.ok(
            "run", "-d", "--name", name, "-v", f"{shared}:/s", image, "sh", "-c", script, name
        )
    stopped = daemon.ok("stop", "-t", "10", *boxes)
    assert stopped.out_lines == boxes  # in the order given, whatever order they ended in
    assert [inspect(daemon, name)["State"]["ExitCode"] for name in boxes] == [0, 0, 0]
    assert sorted((shared / "log").read_text().split()) == boxes
    missing = daemon.ctl("rm", "para1", "nosuch", "para2")
    assert missing.returncode == 1
    assert missing.out_lines == ["para1", "para2"]
    assert "No such container: nosuch" in missing.stderr

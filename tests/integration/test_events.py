"""Docker's events through runtimectl and the CRI's GetContainerEvents through the
generated client, from a real daemon run with -D (whose RPC log is checked too)."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from runtimed.gen.runtime.v1 import api_pb2 as cri
from tests.support.daemon import BIN, Daemon
from tests.support.images import PushedImages
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with Daemon(extra_args=("-D",)) as d:
        yield d


@pytest.fixture(scope="module")
def image(daemon: Daemon) -> str:
    return daemon.import_busybox("evbox:1")


def past(daemon: Daemon, since: float, *filters: str) -> list[dict[str, Any]]:
    """Kept events from `since` until now, as Docker's JSON messages."""
    args = ["events", "--since", f"{since:.9f}", "--until", f"{time.time():.9f}"]
    for item in filters:
        args += ["--filter", item]
    result = daemon.ok(*args, "--format", "{{json .}}", timeout=60)
    return [json.loads(line) for line in result.out_lines]


def actions(events: list[dict[str, Any]]) -> list[str]:
    return [e["Action"] for e in events]


def involving(events: list[dict[str, Any]], cid: str) -> list[tuple[str, str]]:
    """(type, action) of the events whose actor is the container or that name it."""
    return [
        (e["Type"], e["Action"])
        for e in events
        if e["Actor"]["ID"] == cid or e["Actor"]["Attributes"].get("container") == cid
    ]


def ctl_popen(daemon: Daemon, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "runtimectl"), "-H", f"unix://{daemon.socket}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=daemon.env,
    )


def line_reader(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_run_rm_lifecycle_in_dockers_order(daemon: Daemon, image: str) -> None:
    t0 = time.time()
    result = daemon.ctl(
        "run", "--rm", "--name", "ev-rm", "--label", "stage=test", image, "sh", "-c", "exit 3"
    )
    assert result.returncode == 3, result.stderr
    events = past(daemon, t0, "container=ev-rm")
    assert actions(events) == ["create", "attach", "start", "die", "destroy"]
    cid = events[0]["id"]
    assert len(cid) == 64
    for event in events:
        assert event["Type"] == "container" and event["status"] == event["Action"]
        assert event["Actor"]["ID"] == cid and event["from"] == image
        attrs = event["Actor"]["Attributes"]
        assert attrs["name"] == "ev-rm" and attrs["image"] == image and attrs["stage"] == "test"
    die = events[3]["Actor"]["Attributes"]
    assert die["exitCode"] == "3" and die["execDuration"].isdigit()
    # The default network is joined before the start and left after the exit, as Docker's.
    assert involving(past(daemon, t0), cid) == [
        ("container", "create"),
        ("container", "attach"),
        ("network", "connect"),
        ("container", "start"),
        ("container", "die"),
        ("network", "disconnect"),
        ("container", "destroy"),
    ]


def test_format_json_is_dockers_message(daemon: Daemon, image: str) -> None:
    t0 = time.time()
    daemon.ok("create", "--name", "ev-shape", image, "true")
    (event,) = past(daemon, t0, "container=ev-shape")
    assert list(event) == [
        "status",
        "id",
        "from",
        "Type",
        "Action",
        "Actor",
        "scope",
        "time",
        "timeNano",
    ]
    assert event["scope"] == "local" and event["Action"] == "create"
    assert event["time"] == event["timeNano"] // 1_000_000_000
    assert abs(event["time"] - t0) < 600
    # The default line: time, type, action, id, attributes sorted.
    plain = daemon.ok(
        "events", "--since", f"{t0:.9f}", "--until", f"{time.time():.9f}",
        "--filter", "container=ev-shape",
    ).out_lines  # fmt: skip
    stamp, rest = plain[0].split(" ", 1)
    assert stamp[19] == "." and len(stamp.split(".")[1]) >= 10
    assert rest == f"container create {event['id']} (image={image}, name=ev-shape)"
    daemon.ok("rm", "ev-shape")


def test_stop_kill_rename_exec_restart(daemon: Daemon, image: str) -> None:
    t0 = time.time()
    cid = daemon.ok("run", "-d", "--name", "ev-life", image, "sleep", "300").stdout.strip()
    daemon.ok("rename", "ev-life", "ev-life2")
    assert daemon.ctl("exec", "ev-life2", "sh", "-c", "exit 4").returncode == 4
    daemon.ok("kill", "ev-life2")
    daemon.ok("wait", "ev-life2")
    daemon.ok("start", "ev-life2")
    daemon.ok("stop", "-t", "0", "ev-life2")  # sleep as pid 1 ignores SIGTERM: then SIGKILL
    daemon.ok("restart", "-t", "0", "ev-life2")
    daemon.ok("rm", "-f", "ev-life2")
    events = past(daemon, t0, f"container={cid}", "type=container")
    assert actions(events) == [
        "create",
        "start",
        "rename",
        "exec_create: sh -c exit 4",
        "exec_start: sh -c exit 4",
        "exec_die",
        "kill",
        "die",
        "start",
        "kill",
        "kill",
        "die",
        "stop",
        "start",  # restart of a stopped container: nothing to stop
        "restart",
        "kill",
        "die",
        "destroy",
    ]
    attrs = [e["Actor"]["Attributes"] for e in events]
    assert attrs[0]["name"] == "ev-life" and attrs[2]["name"] == "ev-life2"
    assert attrs[2]["oldName"] == "/ev-life"
    exec_id = attrs[3]["execID"]
    assert exec_id and attrs[4]["execID"] == attrs[5]["execID"] == exec_id
    assert attrs[5]["exitCode"] == "4"
    assert attrs[6]["signal"] == "9" and attrs[7]["exitCode"] == "137"
    assert [attrs[9]["signal"], attrs[10]["signal"]] == ["15", "9"]
    # exec_start matches by prefix, as Docker's filter does for the exec actions.
    assert actions(past(daemon, t0, f"container={cid}", "event=exec_start")) == [
        "exec_start: sh -c exit 4"
    ]


def test_filters(daemon: Daemon, image: str) -> None:
    t0 = time.time()
    daemon.ok("run", "--rm", "--name", "ev-f1", "--label", "tier=db", image, "true")
    daemon.ok("run", "--rm", "--name", "ev-f2", "--label", "tier=web", image, "true")
    by_label = past(daemon, t0, "label=tier=db", "event=die")
    assert [e["Actor"]["Attributes"]["name"] for e in by_label] == ["ev-f1"]
    either = past(daemon, t0, "container=ev-f1", "container=ev-f2", "event=start")
    assert [e["Actor"]["Attributes"]["name"] for e in either] == ["ev-f1", "ev-f2"]
    # image= matches with or without the tag.
    assert len(past(daemon, t0, "image=evbox", "event=create")) == 2
    assert past(daemon, t0, "image=evbox:2", "event=create") == []
    assert {e["Type"] for e in past(daemon, t0, "type=network")} == {"network"}
    bad = daemon.ctl("events", "--filter", "colour=red", "--until", "0s")
    assert bad.returncode == 1 and "invalid filter 'colour'" in bad.stderr
    bad = daemon.ctl("events", "--filter", "container")
    assert bad.returncode == 125 and "bad format of filter" in bad.stderr


def test_network_volume_and_image_events(
    daemon: Daemon, image: str, pushed_images: PushedImages
) -> None:
    t0 = time.time()
    net_id = daemon.ok("network", "create", "evnet").stdout.strip()
    daemon.ok("volume", "create", "evvol")
    run = ["run", "--rm", "--name", "ev-nv", "--network", "evnet", "-v", "evvol:/data"]
    daemon.ok(*run, image, "true")
    daemon.ok("network", "rm", "evnet")
    daemon.ok("volume", "rm", "evvol")
    cid = past(daemon, t0, "container=ev-nv")[0]["id"]

    nets = past(daemon, t0, "network=evnet")
    assert actions(nets) == ["create", "connect", "disconnect", "destroy"]
    assert all(e["Actor"]["ID"] == net_id and "status" not in e for e in nets)
    assert all(e["Actor"]["Attributes"]["name"] == "evnet" for e in nets)
    assert nets[0]["Actor"]["Attributes"]["type"] == "bridge"
    assert nets[1]["Actor"]["Attributes"]["container"] == cid

    vols = past(daemon, t0, "volume=evvol")
    assert actions(vols) == ["create", "mount", "unmount", "destroy"]
    assert all(e["Actor"]["ID"] == "evvol" for e in vols)
    assert vols[0]["Actor"]["Attributes"] == {"driver": "local"}
    mount = vols[1]["Actor"]["Attributes"]
    assert mount["container"] == cid and mount["destination"] == "/data"
    assert mount["read/write"] == "true" and mount["driver"] == "local"
    assert vols[2]["Actor"]["Attributes"] == {"driver": "local", "container": cid}

    t1 = time.time()
    image_id = json.loads(daemon.ok("image", "inspect", image).stdout)[0]["Id"]
    daemon.ok("tag", image, "evtag:1")
    daemon.ok("rmi", "evtag:1")
    daemon.ok("pull", pushed_images.busybox.ref)
    daemon.ok("rmi", pushed_images.busybox.ref)
    images = past(daemon, t1, "type=image")
    assert [(e["Action"], e["Actor"]["Attributes"].get("name")) for e in images][:2] == [
        ("tag", "evtag:1"),
        ("untag", image_id),
    ]
    assert images[0]["id"] == images[1]["id"] == image_id
    pull = images[2]
    assert pull["Action"] == "pull" and pull["id"] == pushed_images.busybox.ref
    assert actions(images[3:]) == ["untag", "untag", "delete"]  # the tag, the digest, the image
    assert images[-1]["Actor"]["ID"].startswith("sha256:")

    t2 = time.time()
    tarball = next(daemon.root.glob("busybox-*.tar"))
    new_id = daemon.ok("import", str(tarball), "evimp:1").stdout.strip()
    assert [(e["Action"], e["id"]) for e in past(daemon, t2, "type=image")] == [
        ("tag", new_id),
        ("import", new_id),
    ]
    daemon.ok("rmi", "evimp:1")


def test_live_stream_and_ctrl_c(daemon: Daemon, image: str) -> None:
    proc = ctl_popen(daemon, "events", "--format", "{{json .}}", "--filter", "type=container")
    lines = line_reader(proc)
    try:
        # Subscribed once a probe's event shows up (runs until one does).
        for attempt in range(200):
            daemon.ok("create", "--name", f"ev-probe{attempt}", image, "true")
            try:
                lines.get(timeout=0.5)
                break
            except queue.Empty:
                continue
        daemon.ok("run", "--rm", "--name", "ev-live", image, "true")
        live: list[str] = []
        deadline = time.monotonic() + 30
        while "destroy" not in live:
            assert time.monotonic() < deadline, f"live events seen: {live}"
            event = json.loads(lines.get(timeout=30))
            if event["Actor"]["Attributes"]["name"] == "ev-live":
                live.append(event["Action"])
        assert live == ["create", "attach", "start", "die", "destroy"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
        for probe in daemon.ok("ps", "-a", "--format", "{{.Names}}").out_lines:
            if probe.startswith("ev-probe"):
                daemon.ok("rm", probe)


def test_until_ends_the_command(daemon: Daemon, image: str) -> None:
    t0 = time.time()
    daemon.ok("create", "--name", "ev-until", image, "true")
    until = f"{time.time() + 2:.9f}"
    proc = ctl_popen(daemon, "events", "--since", f"{t0:.9f}", "--until", until)
    out, err = proc.communicate(timeout=60)  # ends by itself once `until` has passed
    assert proc.returncode == 0, err
    assert any(
        " container create " in line and "name=ev-until" in line for line in out.splitlines()
    )
    daemon.ok("rm", "ev-until")


def test_since_reaches_back_across_a_restart(daemon: Daemon, image: str) -> None:
    t0 = time.time()
    daemon.ok("create", "--name", "ev-persist", image, "true")
    daemon.stop()
    daemon.start()
    daemon.ok("rm", "ev-persist")
    events = past(daemon, t0, "container=ev-persist")
    assert actions(events) == ["create", "destroy"]
    assert events[0]["id"] == events[1]["id"]


def test_debug_logs_every_rpc(daemon: Daemon) -> None:
    daemon.ok("version")
    daemon.ok("events", "--since", "1s", "--until", "0s")
    missing = daemon.ctl("inspect", "no-such-container-ev")
    assert missing.returncode != 0

    def served() -> list[dict[str, Any]]:
        out = []
        for line in daemon.log().splitlines():
            if '"rpc_served"' in line:
                out.append(json.loads(line))
        return out

    wait_for(
        lambda: any(r["method"].endswith("/InspectContainer") for r in served()),
        what="the InspectContainer log line",
    )
    records = served()
    version = [r for r in records if r["method"] == "/runtimed.v1.Engine/Version"]
    assert version and version[-1]["code"] == "OK" and version[-1]["level"] == "debug"
    assert isinstance(version[-1]["duration_ms"], float) and version[-1]["duration_ms"] >= 0
    assert isinstance(version[-1]["peer"], str)
    inspect = [r for r in records if r["method"] == "/runtimed.v1.Engine/InspectContainer"]
    assert inspect[-1]["code"] == "NOT_FOUND"
    # A stream is logged when it ends, with its status.
    assert any(r["method"] == "/runtimed.v1.Engine/Events" and r["code"] == "OK" for r in records)


# -- CRI -------------------------------------------------------------------------------


def test_cri_container_events(daemon: Daemon, pushed_images: PushedImages, tmp_path: Path) -> None:
    ref = pushed_images.busybox.ref
    daemon.cri_images().PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=ref)))
    rt = daemon.cri_runtime()
    pod_config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="evpod", uid="uid-ev", namespace="default"),
        hostname="evpod",
        log_directory=str(tmp_path),
    )
    pod_id = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=pod_config)).pod_sandbox_id
    received: queue.Queue[cri.ContainerEventResponse] = queue.Queue()
    call = rt.GetContainerEvents(cri.GetEventsRequest())

    def pump() -> None:
        try:
            for event in call:
                received.put(event)
        except grpc.RpcError:
            return

    threading.Thread(target=pump, daemon=True).start()

    def create(name: str) -> str:
        config = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name=name),
            image=cri.ImageSpec(image=ref),
            command=["sleep", "300"],
            log_path=f"{name}.log",
        )
        request = cri.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config
        )
        return rt.CreateContainer(request).container_id

    def next_for(cid: str) -> cri.ContainerEventResponse:
        while True:
            event = received.get(timeout=30)
            if event.container_id == cid:
                return event

    def status_of(event: cri.ContainerEventResponse, cid: str) -> cri.ContainerStatus | None:
        found = [s for s in event.containers_statuses if s.id == cid]
        return found[0] if found else None

    try:
        for attempt in range(200):  # subscribed once a probe's event arrives
            create(f"probe{attempt}")
            try:
                received.get(timeout=0.5)
                break
            except queue.Empty:
                continue
        cid = create("main")
        created = next_for(cid)
        assert created.container_event_type == cri.CONTAINER_CREATED_EVENT
        assert created.pod_sandbox_status.id == pod_id
        assert created.pod_sandbox_status.metadata.uid == "uid-ev"
        assert created.pod_sandbox_status.state == cri.SANDBOX_READY
        assert created.created_at > 0
        status = status_of(created, cid)
        assert status is not None and status.state == cri.CONTAINER_CREATED
        assert status.metadata.name == "main"

        rt.StartContainer(cri.StartContainerRequest(container_id=cid))
        started = next_for(cid)
        assert started.container_event_type == cri.CONTAINER_STARTED_EVENT
        status = status_of(started, cid)
        assert status is not None and status.state == cri.CONTAINER_RUNNING

        rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=0))
        stopped = next_for(cid)
        assert stopped.container_event_type == cri.CONTAINER_STOPPED_EVENT
        status = status_of(stopped, cid)
        assert status is not None and status.state == cri.CONTAINER_EXITED
        assert status.exit_code != 0 and status.finished_at > 0
        # What ContainerStatus says, word for word (the same builder made it).
        assert status == rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid)).status

        rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
        deleted = next_for(cid)
        assert deleted.container_event_type == cri.CONTAINER_DELETED_EVENT
        assert deleted.pod_sandbox_status.id == pod_id
        assert status_of(deleted, cid) is None
        assert created.created_at < started.created_at < stopped.created_at < deleted.created_at
    finally:
        call.cancel()
        rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def test_commit_pause_health_save_and_load_events(
    daemon: Daemon, image: str, tmp_path: Path
) -> None:
    t0 = time.time()
    daemon.ok("run", "-d", "--name", "ev-more", "--health-cmd", "true", "--health-interval",
              "300ms", image, "sleep", "300")  # fmt: skip
    try:
        cid = json.loads(daemon.ok("inspect", "ev-more").stdout)[0]["Id"]
        wait_for(
            lambda: "health_status: healthy" in actions(past(daemon, t0, "container=ev-more")),
            what="the health_status event",
        )
        daemon.ok("pause", "ev-more")
        daemon.ok("unpause", "ev-more")
        new_id = daemon.ok("commit", "-m", "snap", "ev-more", "evcommit:1").stdout.strip()
    finally:
        daemon.ok("rm", "-f", "ev-more")
    mine = [e for e in past(daemon, t0, "container=ev-more") if e["Action"] != "exec_die"]
    commit = next(e for e in mine if e["Action"] == "commit")
    assert commit["id"] == cid and commit["Actor"]["Attributes"]["imageID"] == new_id
    assert commit["Actor"]["Attributes"]["comment"] == "snap"
    order = [a for a in actions(mine) if a in ("pause", "unpause", "commit")]
    assert order == ["pause", "unpause", "commit"]

    t1 = time.time()
    archive = tmp_path / "ev.tar"
    daemon.ok("save", "-o", str(archive), "evcommit:1")
    daemon.ok("rmi", "evcommit:1")
    daemon.ok("load", "-i", str(archive))
    moved = [(e["Action"], e["id"]) for e in past(daemon, t1, "type=image")]
    assert ("save", new_id) in moved and ("load", new_id) in moved
    assert moved.index(("save", new_id)) < moved.index(("load", new_id))
    daemon.ok("rmi", "evcommit:1")

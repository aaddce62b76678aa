"""commit, diff, export and history through runtimectl against the real daemon."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import tarfile

import pytest

from runtimed.images.layers import chain_ids
from tests.support.daemon import BIN, Daemon
from tests.support.images import PushedImages

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base(daemon: Daemon) -> str:
    return daemon.import_busybox("walkbase:1")


def inspect(daemon: Daemon, ref: str) -> dict:
    return json.loads(daemon.ok("image", "inspect", ref).stdout)[0]


def run_named(daemon: Daemon, name: str, image: str, script: str) -> None:
    daemon.ok("run", "--name", name, image, "sh", "-c", script)


def test_layer_walk_commit_twice_and_remove_in_order(daemon: Daemon, base: str) -> None:
    run_named(daemon, "walk1", base, "echo one > /one")
    first = daemon.ok("commit", "-a", "alice", "-m", "my commit", "walk1", "first").stdout.strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first)
    run_named(daemon, "walk2", "first", "echo two > /two")
    second = daemon.ok("commit", "-m", "second commit", "walk2", "second:latest").stdout.strip()

    layers = {ref: inspect(daemon, ref)["RootFS"]["Layers"] for ref in (base, "first", "second")}
    assert [len(layers[r]) for r in (base, "first", "second")] == [1, 2, 3]
    assert layers["second"][:2] == layers["first"] and layers["first"][:1] == layers[base]
    assert inspect(daemon, "second")["Parent"] == first
    chains = chain_ids(layers["second"])

    # `first` is the parent of `second`: rmi only untags it.
    assert daemon.ok("rmi", "first").out_lines == ["Untagged: first:latest"]
    assert inspect(daemon, first)["RepoTags"] == []
    assert first.removeprefix("sha256:")[:12] not in daemon.ok("images", "-q").out_lines
    assert first.removeprefix("sha256:")[:12] in daemon.ok("images", "-a", "-q").out_lines
    refused = daemon.ctl("rmi", first)
    assert refused.returncode == 1
    assert "image has dependent child images" in refused.stderr

    # walk2 still uses first: removing second deletes only second and its own layer.
    assert daemon.ok("rmi", "second").out_lines == [
        "Untagged: second:latest",
        f"Deleted: {second}",
        f"Deleted: {chains[2]}",
    ]
    daemon.ok("rm", "walk2")
    assert daemon.ok("rmi", first).out_lines == [f"Deleted: {first}", f"Deleted: {chains[1]}"]
    assert inspect(daemon, base)["RootFS"]["Layers"] == layers[base]
    assert daemon.ok("run", "--rm", base, "cat", "/etc/hostname").returncode == 0
    daemon.ok("rm", "walk1")


def test_removing_a_child_prunes_its_untagged_parent(daemon: Daemon, base: str) -> None:
    run_named(daemon, "prune1", base, "echo a > /a")
    parent = daemon.ok("commit", "prune1", "pparent").stdout.strip()
    run_named(daemon, "prune2", "pparent", "echo b > /b")
    child = daemon.ok("commit", "prune2", "pchild").stdout.strip()
    chains = chain_ids(inspect(daemon, "pchild")["RootFS"]["Layers"])
    daemon.ok("rm", "prune1", "prune2")
    assert daemon.ok("rmi", "pparent").out_lines == ["Untagged: pparent:latest"]
    assert daemon.ok("rmi", "pchild").out_lines == [
        "Untagged: pchild:latest",
        f"Deleted: {child}",
        f"Deleted: {chains[2]}",
        f"Deleted: {parent}",
        f"Deleted: {chains[1]}",
    ]


def test_commit_options_reach_config_and_history(daemon: Daemon, base: str) -> None:
    run_named(daemon, "opts", base, "echo motd > /etc/motd")
    image_id = daemon.ok(
        "commit",
        "-a",
        "Jane Doe <jane@example.com>",
        "-m",
        "with changes",
        "-c",
        'CMD ["/bin/cat", "/etc/motd"]',
        "-c",
        "ENV FOO=bar",
        "-c",
        "EXPOSE 8080",
        "-c",
        "LABEL purpose=practice",
        "-c",
        "WORKDIR /tmp",
        "--pause=false",
        "opts",
        "withopts:1",
    ).stdout.strip()
    doc = inspect(daemon, "withopts:1")
    assert doc["Id"] == image_id
    assert doc["Author"] == "Jane Doe <jane@example.com>"
    assert doc["Comment"] == "with changes"
    assert doc["Config"]["Cmd"] == ["/bin/cat", "/etc/motd"]
    assert "FOO=bar" in doc["Config"]["Env"]
    assert doc["Config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert doc["Config"]["Labels"] == {"purpose": "practice"}
    assert doc["Config"]["WorkingDir"] == "/tmp"
    last = doc["History"][-1]
    assert last["author"] == "Jane Doe <jane@example.com>" and last["comment"] == "with changes"
    assert last["created_by"] == "sh -c echo motd > /etc/motd"
    assert daemon.ok("run", "--rm", "withopts:1").stdout == "motd\n"
    assert daemon.ok("run", "--rm", "withopts:1", "pwd").stdout == "/tmp\n"
    # Without changes the container's own command becomes the image's.
    daemon.ok("commit", "opts", "plain:1")
    assert inspect(daemon, "plain:1")["Config"]["Cmd"] == ["sh", "-c", "echo motd > /etc/motd"]
    bad = daemon.ctl("commit", "-c", "FROB x", "opts", "bad:1")
    assert bad.returncode == 1 and "FROB" in bad.stderr
    missing = daemon.ctl("commit", "no-such-container")
    assert missing.returncode == 1
    assert "No such container: no-such-container" in missing.stderr
    daemon.ok("rm", "opts")
    daemon.ok("rmi", "withopts:1", "plain:1")


DELETIONS = (
    "rm /etc/group && rm -rf /home && mkdir -p /home/new && echo n > /home/new/f"
    " && echo changed >> /etc/passwd && mkdir /added && echo hi > /added/f"
)


def test_diff_lists_changes_in_docker_order(daemon: Daemon, base: str) -> None:
    run_named(daemon, "differ", base, DELETIONS)
    assert daemon.ok("diff", "differ").out_lines == [
        "A /added",
        "A /added/f",
        "C /etc",
        "D /etc/group",
        "C /etc/passwd",
        "D /home",
        "A /home/new",
        "A /home/new/f",
    ]
    fresh = daemon.ok("create", "--name", "untouched", base, "true").stdout
    assert fresh
    assert daemon.ok("diff", "untouched").stdout == ""
    daemon.ok("start", "-a", "untouched")
    assert daemon.ok("diff", "untouched").stdout == ""  # mount points are not changes
    daemon.ok("rm", "differ", "untouched")


def test_deletions_and_opaque_dirs_survive_commit(daemon: Daemon, base: str) -> None:
    run_named(daemon, "deleter", base, DELETIONS)
    daemon.ok("commit", "deleter", "deleted:1")
    script = (
        "test ! -e /etc/group && echo group-gone; ls /home; cat /home/new/f /added/f;"
        " tail -n 1 /etc/passwd"
    )
    out = daemon.ok("run", "--rm", "deleted:1", "sh", "-c", script).stdout
    assert out == "group-gone\nnew\nn\nhi\nchanged\n"
    # The layer itself carries docker's whiteout names.
    archive = daemon.root / "deleted.tar"
    daemon.ok("save", "-o", str(archive), "deleted:1")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        top = tar.extractfile(manifest[0]["Layers"][-1])
        assert top is not None
        with tarfile.open(fileobj=io.BytesIO(top.read())) as layer:
            names = set(layer.getnames())
    assert {"etc/.wh.group", "home/.wh..wh..opq", "home/new/f", "added/f"} <= names
    assert not any(n.startswith(("proc", "sys", "dev", "etc/hosts")) for n in names)
    daemon.ok("rm", "deleter")
    daemon.ok("rmi", "deleted:1")


def test_commit_running_container_and_empty_commit(daemon: Daemon, base: str) -> None:
    daemon.ok(
        "run", "-d", "--name", "runner", base, "sh", "-c", "echo live > /live; exec sleep 300"
    )
    daemon.ok("exec", "runner", "test", "-e", "/live")
    image_id = daemon.ok("commit", "runner", "live:1").stdout.strip()
    assert daemon.ok("run", "--rm", "live:1", "cat", "/live").stdout == "live\n"
    assert daemon.ok("ps", "-q", "--filter", "name=runner").stdout.strip()
    daemon.ok("rm", "-f", "runner")
    # A container that changed nothing adds a history entry but no layer.
    daemon.ok("create", "--name", "idle", base)
    empty = daemon.ok("commit", "idle", "empty:1").stdout.strip()
    doc = inspect(daemon, "empty:1")
    assert doc["RootFS"]["Layers"] == inspect(daemon, base)["RootFS"]["Layers"]
    assert doc["History"][-1].get("empty_layer") is True
    assert empty != image_id
    daemon.ok("rm", "idle")
    daemon.ok("rmi", "live:1", "empty:1")


def test_export_writes_the_flattened_filesystem(daemon: Daemon, base: str) -> None:
    run_named(daemon, "exporter", base, DELETIONS)
    target = daemon.root / "export.tar"
    daemon.ok("export", "-o", str(target), "exporter")
    with tarfile.open(target) as tar:
        names = set(tar.getnames())
        passwd = tar.extractfile("etc/passwd")
        assert passwd is not None and passwd.read().endswith(b"changed\n")
        busybox = tar.extractfile("bin/busybox")  # a hard link to the first applet's name
        assert busybox is not None and len(busybox.read()) > 100_000
    assert "etc/group" not in names and "home/app" not in names
    assert {"home/new/f", "added/f", "tmp"} <= names
    assert not any(n.startswith("./") or ".wh." in n for n in names)
    assert (
        subprocess.run(
            [str(BIN / "runtimectl"), "-H", f"unix://{daemon.socket}", "export", "exporter"],
            capture_output=True,
            env=daemon.env,
            check=True,
        ).stdout
        == target.read_bytes()
    )
    daemon.ok("rm", "exporter")


def _on_terminal(daemon: Daemon, *args: str) -> tuple[int, str]:
    """Run runtimectl with its stdout on a pseudo-terminal; (exit code, stderr)."""
    main, sub = pty.openpty()
    try:
        proc = subprocess.run(
            [str(BIN / "runtimectl"), "-H", f"unix://{daemon.socket}", *args],
            stdout=sub,
            stderr=subprocess.PIPE,
            env=daemon.env,
            timeout=60,
        )
    finally:
        os.close(sub)
        os.close(main)
    return proc.returncode, proc.stderr.decode()


def test_export_and_save_refuse_a_terminal(daemon: Daemon, base: str) -> None:
    daemon.ok("create", "--name", "tty-export", base)
    for args in (("export", "tty-export"), ("save", base)):
        code, err = _on_terminal(daemon, *args)
        assert code == 1
        assert "cowardly refusing to save to a terminal. Use the -o flag or redirect" in err
    daemon.ok("rm", "tty-export")


def _history_rows(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]


def test_history_of_committed_images(daemon: Daemon, base: str) -> None:
    run_named(daemon, "hist1", base, "echo one > /one")
    first = daemon.ok("commit", "-m", "my commit", "hist1", "hfirst").stdout.strip()
    run_named(daemon, "hist2", "hfirst", "head -c 2000000 /dev/zero > /two")
    second = daemon.ok("commit", "-m", "second commit", "hist2", "hsecond").stdout.strip()
    base_id = inspect(daemon, base)["Id"]
    out = daemon.ok("history", "hsecond").stdout
    rows = _history_rows(out)
    assert rows[0] == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    assert [r[0] for r in rows[1:]] == [
        i.removeprefix("sha256:")[:12] for i in (second, first, base_id)
    ]
    assert rows[1][2:] == ["sh -c head -c 2000000 /dev/zero > /two", "2MB", "second commit"]
    assert rows[2][2:] == ["sh -c echo one > /one", "4B", "my commit"]
    assert rows[3][2].startswith("Imported from /")
    assert rows[1][1].endswith("ago")
    quiet = daemon.ok("history", "-q", "--no-trunc", "hsecond").out_lines
    assert quiet == [second, first, base_id]
    raw = daemon.ok("history", "--human=false", "--format", "{{.Size}}|{{.CreatedAt}}", "hsecond")
    size, created = raw.out_lines[0].split("|")
    assert size == "2000000" and re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", created
    )
    as_json = json.loads(daemon.ok("history", "--format", "json", "hsecond").out_lines[0])
    assert as_json["Comment"] == "second commit" and as_json["Size"] == "2MB"
    table = daemon.ok("history", "--format", "table {{.ID}}\t{{.CreatedBy}}", "hsecond")
    assert _history_rows(table.stdout)[0] == ["IMAGE", "CREATED BY"]
    long_cmd = "echo " + "x" * 60
    run_named(daemon, "hist3", base, long_cmd)
    daemon.ok("commit", "hist3", "hlong")
    shown = _history_rows(daemon.ok("history", "hlong").stdout)[1][2]
    assert shown == ("sh -c " + long_cmd)[:44] + "…"
    full = daemon.ok("history", "--no-trunc", "hlong").stdout
    assert "sh -c " + long_cmd in full
    daemon.ok("rm", "hist1", "hist2", "hist3")
    daemon.ok("rmi", "hsecond", "hfirst", "hlong")


def test_history_of_a_pulled_image_has_missing_rows(
    daemon: Daemon, pushed_images: PushedImages
) -> None:
    scenario = pushed_images.busybox
    image_id = daemon.ok("pull", "-q", scenario.ref).out_lines[-1]
    rows = _history_rows(daemon.ok("history", scenario.ref).stdout)
    config = scenario.image.config_json
    assert len(rows) == 1 + len(config["history"])
    assert rows[1][0] == image_id.removeprefix("sha256:")[:12]
    assert all(r[0] == "<missing>" for r in rows[2:])
    shown = [h["created_by"] for h in reversed(config["history"])]
    assert [r[2] for r in rows[1:]] == [t if len(t) <= 45 else t[:44] + "…" for t in shown]
    daemon.ok("rmi", scenario.ref)

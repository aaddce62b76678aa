"""Image commands through runtimectl against the real daemon and Debian's registry."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.images import (
    PushedImages,
    build_image,
    busybox_rootfs_layer,
    push,
    rootfs_tarball,
)
from tests.support.oci import File, Layer
from tests.support.registry import Registry
from tests.support.rootfs import read_paths

pytestmark = pytest.mark.integration


def inspect(daemon: Daemon, ref: str) -> dict:
    return json.loads(daemon.ok("image", "inspect", ref).stdout)[0]


def layer_dirs(daemon: Daemon) -> set[str]:
    root = daemon.data_dir / "layers"
    return {p.name for p in root.iterdir()} if root.exists() else set()


def test_daemon_is_rootless_with_private_socket(daemon: Daemon) -> None:
    mode = daemon.socket.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    info = daemon.ok("info").stdout
    assert "Rootless: true" in info
    assert "Storage Driver: overlay" in info
    assert "Runtime: crun" in info
    version = daemon.ok("version").stdout
    assert "Server: runtimed" in version and "CRI version:    v1" in version


def test_pull_lists_inspects_and_unpacks_with_whiteouts(
    daemon: Daemon, pushed_images: PushedImages
) -> None:
    scenario = pushed_images.busybox
    result = daemon.ok("pull", scenario.ref)
    lines = result.out_lines
    assert lines[0].endswith("Pulling from library/busybox")
    assert sum(1 for line in lines if line.endswith(": Pull complete")) == 3
    image_id = lines[-1]
    assert image_id == scenario.image.config_digest

    listed = daemon.ok("images").out_lines
    assert listed[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    repo = scenario.ref.rsplit(":", 1)[0]
    row = next(line.split() for line in listed[1:] if line.startswith(repo + " "))
    assert row[1] == "1.36" and row[2] == image_id.removeprefix("sha256:")[:12]

    assert image_id.removeprefix("sha256:")[:12] in daemon.ok("images", "-q").out_lines
    digests = daemon.ok("images", "--digests").stdout
    assert scenario.pushed.digest in digests
    as_json = [json.loads(line) for line in daemon.ok("images", "--format", "json").out_lines]
    assert {"Repository": repo, "Tag": "1.36"}.items() <= next(
        j for j in as_json if j["Repository"] == repo
    ).items()

    doc = inspect(daemon, scenario.ref)
    assert doc["Id"] == image_id
    assert doc["RepoTags"] == [scenario.ref]
    assert doc["RepoDigests"] == [f"{repo}@{scenario.pushed.digest}"]
    assert len(doc["RootFS"]["Layers"]) == 3
    assert len(doc["History"]) >= 1
    assert doc["Os"] == "linux" and doc["Architecture"] == "amd64"

    seen = read_paths(doc["GraphDriver"]["Data"]["LowerDir"], [*scenario.files, *scenario.absent])
    for path, content in scenario.files.items():
        assert seen[path] is not None, f"{path} missing from the unpacked image"
        assert seen[path]["data"].encode("latin-1") == content
    for path in scenario.absent:
        assert seen[path] is None, f"{path} should have been removed by a whiteout"

    # A second pull finds everything in place and fetches nothing.
    again = daemon.ok("pull", scenario.ref).out_lines
    assert sum(1 for line in again if line.endswith(": Already exists")) == 3
    assert any("Image is up to date" in line for line in again)


def test_tag_and_rmi(daemon: Daemon, pushed_images: PushedImages) -> None:
    ref = pushed_images.busybox.ref
    daemon.ok("pull", ref)
    daemon.ok("tag", ref, "mybox:dev")
    assert "mybox" in daemon.ok("images").stdout
    out = daemon.ok("rmi", "mybox:dev").out_lines
    assert out == ["Untagged: mybox:dev"]
    assert inspect(daemon, ref)["RepoTags"] == [ref]

    before = layer_dirs(daemon)
    out = daemon.ok("rmi", ref).out_lines
    assert out[0] == f"Untagged: {ref}"
    assert any(line.startswith("Untagged: ") and "@sha256:" in line for line in out)
    deleted = [line for line in out if line.startswith("Deleted: ")]
    assert deleted[0] == f"Deleted: {pushed_images.busybox.image.config_digest}"
    assert len(deleted) == 4  # the image and its three layers
    assert len(layer_dirs(daemon)) == len(before) - 3
    missing = daemon.ctl("image", "inspect", ref)
    assert missing.returncode == 1 and f"No such image: {ref}" in missing.stderr


def test_shared_layers_are_kept_while_used(daemon: Daemon, registry: Registry) -> None:
    base = busybox_rootfs_layer()
    top = Layer([File("etc/which", b"second\n")])
    push(registry, "test/shared-a", "1", build_image([base]))
    push(registry, "test/shared-b", "1", build_image([base, top]))
    daemon.ok("pull", f"{registry.host}/test/shared-a:1")
    out = daemon.ok("pull", f"{registry.host}/test/shared-b:1").out_lines
    assert sum(1 for line in out if line.endswith("Already exists")) == 1
    daemon.ok("rmi", f"{registry.host}/test/shared-a:1")
    doc = inspect(daemon, f"{registry.host}/test/shared-b:1")
    seen = read_paths(doc["GraphDriver"]["Data"]["LowerDir"], ["/bin/busybox", "/etc/which"])
    assert seen["/bin/busybox"] is not None and seen["/etc/which"]["data"] == "second\n"
    daemon.ok("rmi", f"{registry.host}/test/shared-b:1")


def test_import_rootfs_tarball(daemon: Daemon, tmp_path: Path) -> None:
    tarball = tmp_path / "rootfs.tar"
    rootfs_tarball(tarball)
    image_id = daemon.ok(
        "import", "-c", 'CMD ["/bin/sh"]', "-m", "from the tests", str(tarball), "mybase:1"
    ).stdout.strip()
    assert image_id.startswith("sha256:")
    doc = inspect(daemon, "mybase:1")
    assert doc["Id"] == image_id and doc["RepoTags"] == ["mybase:1"]
    assert doc["Config"]["Cmd"] == ["/bin/sh"]
    assert len(doc["RootFS"]["Layers"]) == 1
    assert doc["Comment"] == "from the tests"
    seen = read_paths(doc["GraphDriver"]["Data"]["LowerDir"], ["/bin/busybox", "/etc/passwd"])
    assert seen["/bin/busybox"]["mode"] & 0o111
    assert seen["/etc/passwd"]["data"].startswith("root:x:0:0:")
    # Owned by root of the user namespace: the daemon unpacked it there.
    assert seen["/bin/busybox"]["uid"] == 0

    stdin_id = daemon.ok("import", "-", "mybase:stdin", input=tarball.read_bytes()).stdout.strip()
    assert stdin_id.startswith("sha256:")
    daemon.ok("rmi", "mybase:1", "mybase:stdin")


def test_import_refuses_garbage_and_leaves_nothing(daemon: Daemon, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(os.urandom(4096))
    before = layer_dirs(daemon)
    result = daemon.ctl("import", str(junk), "junk:1")
    assert result.returncode == 1
    assert "import: the tarball is not a valid tar" in result.stderr
    assert layer_dirs(daemon) == before
    assert "junk" not in daemon.ok("images").stdout
    missing = daemon.ctl("import", str(tmp_path / "nope.tar"))
    assert missing.returncode == 125 and "no such file" in missing.stderr


def test_prune_removes_only_dangling(daemon: Daemon, registry: Registry) -> None:
    base = busybox_rootfs_layer()
    first = build_image([base, Layer([File("etc/version", b"1\n")])])
    second = build_image([base, Layer([File("etc/version", b"2\n")])])
    ref = f"{registry.host}/test/prune:latest"
    push(registry, "test/prune", "latest", first)
    daemon.ok("pull", ref)
    push(registry, "test/prune", "latest", second)
    daemon.ok("pull", ref)
    dangling = daemon.ok("images", "-q", "--filter", "dangling=true").out_lines
    assert first.config_digest.removeprefix("sha256:")[:12] in dangling
    out = daemon.ok("image", "prune", "-f").stdout
    assert f"deleted: {first.config_digest}" in out
    assert "Total reclaimed space:" in out
    assert daemon.ok("images", "-q", "--filter", "dangling=true").stdout == ""
    assert inspect(daemon, ref)["Id"] == second.config_digest
    daemon.ok("rmi", ref)


def test_bad_input_gets_clear_errors(daemon: Daemon) -> None:
    bad = daemon.ctl("pull", "library/BusyBox:1")
    assert bad.returncode == 1
    assert "invalid reference format" in bad.stderr and "lowercase" in bad.stderr
    bad_tag = daemon.ctl("tag", "nosuch:1", "x:y")
    assert bad_tag.returncode == 1 and "No such image: nosuch:1" in bad_tag.stderr
    rmi = daemon.ctl("rmi", "nosuch:latest")
    assert rmi.returncode == 1 and "No such image" in rmi.stderr
    unknown_filter = daemon.ctl("images", "--filter", "colour=blue")
    assert unknown_filter.returncode == 1 and "invalid filter" in unknown_filter.stderr


def test_pull_on_a_terminal_draws_progress_bars(daemon: Daemon, registry: Registry) -> None:
    import pty
    import subprocess

    from tests.support.daemon import BIN
    from tests.support.images import big_image

    image = big_image(total_mb=8, layers=2)
    push(registry, "test/tty", "1", image)
    ref = f"{registry.host}/test/tty:1"
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN / "runtimectl"), "-H", f"unix://{daemon.socket}", "pull", ref],
        stdout=follower,
        stderr=follower,
        env=daemon.env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(60) == 0
    os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    assert "\x1b[" in screen  # lines redrawn in place
    assert re.search(r"Downloading \[=*>? *\]  [0-9.]+[kMG]?B/[0-9.]+MB", screen)
    assert screen.rstrip().splitlines()[-1].strip() == image.config_digest
    daemon.ok("rmi", ref)

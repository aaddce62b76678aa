"""Docker-style volumes through runtimectl, as the test user: named and anonymous volumes,
copy-up, binds, tmpfs, --volumes-from, and data that outlives containers, images and
daemon restarts."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from tests.support.daemon import Daemon

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    for key, value in attrs.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def build_app_image(daemon: Daemon, tag: str) -> str:
    """busybox plus: /home/app and /data owned by app (1000), a seed file, an image VOLUME
    /cache with a primed file, and /escape, a link to /etc that must resolve in the image."""
    base, out = daemon.root / "app-base.tar", daemon.root / "app.tar"
    subprocess.run([str(ROOT / "deploy" / "make-busybox-rootfs.sh"), str(base)], check=True)
    with tarfile.open(base) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            if member.name == "./home/app":
                member.uid = member.gid = 1000
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        _add(dst, "./data", type=tarfile.DIRTYPE, mode=0o750, uid=1000, gid=1000)
        _add(dst, "./data/seed.txt", data=b"seed\n", mode=0o640, uid=1000, gid=1000)
        _add(dst, "./cache", type=tarfile.DIRTYPE, mode=0o755)
        _add(dst, "./cache/primed", data=b"primed\n", mode=0o644)
        _add(dst, "./escape", type=tarfile.SYMTYPE, linkname="/etc")
    daemon.ok("import", "-c", "VOLUME /cache", "-c", 'CMD ["/bin/sh"]', str(out), tag)
    return tag


@pytest.fixture(scope="module")
def image(daemon: Daemon) -> str:
    return build_app_image(daemon, "volapp:test")


@pytest.fixture
def names(daemon: Daemon) -> Iterator[list[str]]:
    """Containers and volumes a test made: removed afterwards, containers first."""
    made: list[str] = []
    yield made
    engine = daemon.engine()
    for name in made:
        with contextlib.suppress(grpc.RpcError):
            engine.RemoveContainer(pb.RemoveContainerRequest(id=name, force=True, volumes=True))
    for name in made:
        with contextlib.suppress(grpc.RpcError):
            engine.RemoveVolume(pb.RemoveVolumeRequest(name=name, force=True))


def volume_names(daemon: Daemon, *filters: str) -> list[str]:
    args = [a for f in filters for a in ("--filter", f)]
    return daemon.ok("volume", "ls", "-q", *args).out_lines


def inspect_volume(daemon: Daemon, name: str) -> dict:
    return json.loads(daemon.ok("volume", "inspect", name).stdout)[0]


def test_volume_commands(daemon: Daemon, image: str, names: list[str], tmp_path: Path) -> None:
    names += ["vc-a", "vc-b", "vc-c", "vc-user"]
    assert daemon.ok("volume", "create", "--label", "team=core", "vc-a").stdout == "vc-a\n"
    daemon.ok("volume", "create", "-d", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
              "--opt", "o=size=1m", "--name", "vc-b")  # fmt: skip
    doc = inspect_volume(daemon, "vc-a")
    assert doc["Name"] == "vc-a" and doc["Driver"] == "local" and doc["Scope"] == "local"
    assert doc["Labels"] == {"team": "core"} and doc["Options"] is None
    assert doc["Mountpoint"] == str(daemon.data_dir / "volumes" / "vc-a" / "_data")
    assert doc["CreatedAt"].endswith("Z")
    assert inspect_volume(daemon, "vc-b")["Options"] == {
        "type": "tmpfs",
        "device": "tmpfs",
        "o": "size=1m",
    }
    # The local driver's tmpfs and bind volumes are mounted while a container uses them.
    host = tmp_path / "bound"
    host.mkdir()
    os.chmod(host, 0o777)
    daemon.ok("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={host}",
              "vc-c")  # fmt: skip
    script = "df -k /m | awk 'NR>1 {print $2}'; echo via-volume > /b/f"
    out = daemon.ok("run", "--rm", "-v", "vc-b:/m", "-v", "vc-c:/b", image, "sh", "-c", script)
    assert out.stdout == "1024\n" and (host / "f").read_text() == "via-volume\n"
    table = daemon.ok("volume", "ls").out_lines
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert ["local", "vc-a"] in [line.split() for line in table]
    daemon.ok("create", "--name", "vc-user", "-v", "vc-a:/a", image)
    assert "vc-a" not in volume_names(daemon, "dangling=true")
    assert "vc-b" in volume_names(daemon, "dangling=true")
    assert "vc-a" in volume_names(daemon, "dangling=false")
    assert volume_names(daemon, "label=team=core") == ["vc-a"]
    assert "vc-a" not in volume_names(daemon, "label!=team")
    assert volume_names(daemon, "name=vc-", "driver=local") == ["vc-a", "vc-b", "vc-c"]
    assert daemon.ok(
        "volume", "ls", "--filter", "name=vc-a", "--format", "{{.Name}}:{{.Driver}}"
    ).out_lines == ["vc-a:local"]
    assert daemon.ok("volume", "inspect", "-f", "{{.Labels.team}}", "vc-a").stdout == "core\n"
    typed = daemon.ok("inspect", "--type", "volume", "-f", "{{.Name}} {{.Labels.team}}", "vc-a")
    assert typed.stdout == "vc-a core\n"

    in_use = daemon.ctl("volume", "rm", "vc-a")
    assert in_use.returncode == 1 and "volume is in use" in in_use.stderr
    missing = daemon.ctl("volume", "rm", "vc-nope")
    assert missing.returncode == 1 and "no such volume" in missing.stderr
    assert daemon.ok("volume", "rm", "-f", "vc-nope").stdout == "vc-nope\n"
    bad = daemon.ctl("volume", "create", "../../etc")
    assert bad.returncode != 0 and "invalid characters" in bad.stderr
    bad_opt = daemon.ctl("volume", "create", "-o", "type=nfs", "vc-nfs")
    assert bad_opt.returncode != 0 and "only type=tmpfs or o=bind" in bad_opt.stderr
    daemon.ok("rm", "-v", "vc-user")
    assert daemon.ok("volume", "rm", "vc-a", "vc-b", "vc-c").out_lines == ["vc-a", "vc-b", "vc-c"]
    assert (host / "f").exists()  # removing a bind volume leaves the host's files
    assert not (daemon.data_dir / "volumes" / "vc-a").exists()


def test_named_volume_data_outlives_containers(
    daemon: Daemon, image: str, names: list[str]
) -> None:
    names += ["nv-writer", "nv-data"]
    daemon.ok("run", "--name", "nv-writer", "-v", "nv-data:/store", image,
              "sh", "-c", "echo kept > /store/file")  # fmt: skip
    assert "nv-data" in volume_names(daemon)  # `run -v NAME:` made it
    daemon.ok("rm", "-v", "nv-writer")  # -v takes anonymous volumes only
    out = daemon.ok("run", "--rm", "-v", "nv-data:/again:ro", image, "cat", "/again/file")
    assert out.stdout == "kept\n"
    ro = daemon.ctl("run", "--rm", "-v", "nv-data:/again:ro", image, "touch", "/again/x")
    assert ro.returncode == 1 and "Read-only file system" in ro.stderr
    host = daemon.data_dir / "volumes" / "nv-data" / "_data" / "file"
    assert host.read_text() == "kept\n"


def test_copy_up_content_and_ownership(daemon: Daemon, image: str, names: list[str]) -> None:
    names += ["cu-home", "cu-data", "cu-none", "cu-escape"]
    # A fresh volume over a directory the image gives to app: app can write to it.
    out = daemon.ok("run", "--rm", "-u", "app", "-v", "cu-home:/home/app", image,
                    "sh", "-c", "touch /home/app/mine && stat -c '%U %a' /home/app")  # fmt: skip
    assert out.stdout == "app 755\n"
    script = "stat -c '%U:%G %a' /data /data/seed.txt; cat /data/seed.txt"
    out = daemon.ok("run", "--rm", "-v", "cu-data:/data", image, "sh", "-c", script)
    assert out.out_lines == ["app:app 750", "app:app 640", "seed"]
    # Only the first mount copies: a volume with data keeps it as it is.
    daemon.ok("run", "--rm", "-v", "cu-data:/data", image, "rm", "/data/seed.txt")
    listing = daemon.ok("run", "--rm", "-v", "cu-data:/data", image, "ls", "-A", "/data")
    assert listing.stdout == ""
    nocopy = daemon.ok("run", "--rm", "-v", "cu-none:/data:nocopy", image, "ls", "-A", "/data")
    assert nocopy.stdout == ""
    mounted = daemon.ok("run", "--rm", "--mount", "type=volume,src=cu-none,dst=/data,volume-nocopy",
                        image, "ls", "-A", "/data")  # fmt: skip
    assert mounted.stdout == ""
    # An absolute link in the image resolves inside the image, never on the host.
    daemon.ok("run", "--rm", "-v", "cu-escape:/escape", image, "true")
    copied = daemon.data_dir / "volumes" / "cu-escape" / "_data" / "passwd"
    assert "app:x:1000" in copied.read_text() and "runtimed-test" not in copied.read_text()


def test_anonymous_volumes_go_with_rm_v_and_run_rm(
    daemon: Daemon, image: str, names: list[str]
) -> None:
    before = set(volume_names(daemon))
    # The image's VOLUME /cache is anonymous and primed from the image.
    out = daemon.ok("run", "--rm", "-v", "/scratch", image,
                    "sh", "-c", "cat /cache/primed; touch /scratch/x")  # fmt: skip
    assert out.stdout == "primed\n"
    assert set(volume_names(daemon)) == before  # --rm removed both
    names.append("anon-keep")
    daemon.ok("run", "--name", "anon-keep", "-v", "/scratch", image, "true")
    doc = json.loads(daemon.ok("inspect", "anon-keep").stdout)[0]
    anon = {m["Destination"]: m["Name"] for m in doc["Mounts"] if m["Type"] == "volume"}
    assert set(anon) == {"/cache", "/scratch"}
    assert set(volume_names(daemon)) == before | set(anon.values())
    labels = inspect_volume(daemon, anon["/cache"])["Labels"]
    assert labels == {"com.docker.volume.anonymous": ""}
    daemon.ok("rm", "anon-keep")  # without -v they stay, as docker leaves them
    assert set(volume_names(daemon)) == before | set(anon.values())
    pruned = daemon.ok("volume", "prune", "-f")
    assert set(anon.values()) <= set(pruned.out_lines) and "Total reclaimed space" in pruned.stdout
    assert set(volume_names(daemon)).isdisjoint(anon.values())
    before = set(volume_names(daemon))
    names.append("anon-v")
    daemon.ok("create", "--name", "anon-v", image)
    daemon.ok("rm", "-v", "anon-v")
    assert set(volume_names(daemon)) == before


def test_prune_keeps_named_and_used_volumes(daemon: Daemon, image: str, names: list[str]) -> None:
    names += ["pr-used", "pr-named", "pr-labelled", "pr-ctr"]
    for name in ("pr-used", "pr-named"):
        daemon.ok("volume", "create", name)
    daemon.ok("volume", "create", "--label", "keep=yes", "pr-labelled")
    daemon.ok("create", "--name", "pr-ctr", "-v", "pr-used:/u", image)
    daemon.ok("volume", "prune", "-f")
    assert {"pr-used", "pr-named", "pr-labelled"} <= set(volume_names(daemon))
    pruned = daemon.ok("volume", "prune", "-f", "-a", "--filter", "label!=keep").out_lines
    assert "pr-named" in pruned and "pr-used" not in pruned and "pr-labelled" not in pruned
    assert {"pr-used", "pr-labelled"} <= set(volume_names(daemon))
    assert "pr-named" not in volume_names(daemon)


def test_a_bad_tmpfs_value_names_the_option(daemon: Daemon, image: str) -> None:
    before = daemon.ok("ps", "-a", "-q").stdout
    res = daemon.ctl("run", "--rm", "--tmpfs", "/t:size=bogus", image, "true")
    assert res.returncode == 125, res
    assert "invalid tmpfs option 'size=bogus': size must be a number of bytes" in res.stderr
    res = daemon.ctl("run", "--rm", "--tmpfs", "/t:mode=rwx", image, "true")
    assert res.returncode == 125 and "'mode=rwx': mode must be an octal mode" in res.stderr
    res = daemon.ctl("run", "--rm", "--mount", "type=tmpfs,dst=/t,tmpfs-size=bogus", image, "true")
    assert res.returncode == 125 and "invalid value for tmpfs-size: bogus" in res.stderr
    assert daemon.ok("ps", "-a", "-q").stdout == before  # nothing was created


def test_binds_and_tmpfs(daemon: Daemon, image: str, tmp_path: Path, names: list[str]) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    (shared / "from-host").write_text("host\n")
    single = tmp_path / "single.conf"
    single.write_text("one file\n")
    names.append("bt-live")
    daemon.ok("run", "-d", "--name", "bt-live",
              "--mount", f"type=bind,source={shared},target=/s,bind-propagation=rprivate",
              "--mount", f"type=bind,src={single},dst=/etc/single.conf,readonly",
              "--tmpfs", "/t:size=1m,mode=1777",
              "--mount", "type=tmpfs,target=/t2,tmpfs-size=2m,tmpfs-mode=1770",
              image, "sleep", "60")  # fmt: skip
    daemon.ok("exec", "bt-live", "sh", "-c", "echo ctr > /s/from-ctr")
    # Same directory, not a copy: the host sees the write at once.
    assert (shared / "from-ctr").read_text() == "ctr\n"
    out = daemon.ok("exec", "bt-live", "sh", "-c",
                    "cat /s/from-host /etc/single.conf; stat -c %a /t2; "
                    "df -k /t /t2 | awk 'NR>1 {print $2}'")  # fmt: skip
    assert out.out_lines == ["host", "one file", "1770", "1024", "2048"]
    ro = daemon.ctl("exec", "bt-live", "sh", "-c", "echo x > /etc/single.conf")
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr
    full = daemon.ctl("exec", "bt-live", "dd", "if=/dev/zero", "of=/t/big", "bs=1k", "count=2048")
    assert full.returncode != 0 and "No space left on device" in full.stderr
    noexec = daemon.ctl("exec", "bt-live", "sh", "-c", "cp /bin/true /t2/t && /t2/t")
    assert noexec.returncode == 126  # docker's tmpfs default: noexec
    doc = json.loads(daemon.ok("inspect", "bt-live").stdout)[0]
    assert {(m["Type"], m["Destination"]) for m in doc["Mounts"]} == {
        ("bind", "/s"),
        ("bind", "/etc/single.conf"),
        ("tmpfs", "/t"),
        ("tmpfs", "/t2"),
        ("volume", "/cache"),
    }
    missing = daemon.ctl("run", "--rm", "--mount", "type=bind,src=/no/such,dst=/x", image, "true")
    assert missing.returncode == 125 and "bind source path does not exist: /no/such" in (
        missing.stderr
    )
    assert not Path("/no/such").exists()
    # docker's -v (unlike --mount) makes a missing host directory, as the seed notes' first
    # volume example expects.
    made = tmp_path / "made" / "by-v"
    daemon.ok("run", "--rm", "-v", f"{made}:/x", image, "sh", "-c", "echo hi > /x/f")
    assert (made / "f").read_text() == "hi\n"
    assert made.stat().st_uid == os.getuid()


def test_volumes_from_and_shared_writes(
    daemon: Daemon, image: str, tmp_path: Path, names: list[str]
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    os.chmod(host, 0o777)
    names += ["vf-src", "vf-ro", "vf-rw", "vf-data"]
    daemon.ok("run", "-d", "--name", "vf-src", "-v", "vf-data:/data", "-v", f"{host}:/host",
              image, "sleep", "60")  # fmt: skip
    daemon.ok("run", "-d", "--name", "vf-rw", "--volumes-from", "vf-src", image, "sleep", "60")
    # Two running containers on one volume see each other's writes at once.
    daemon.ok("exec", "vf-src", "sh", "-c", "echo one > /data/shared; echo h > /host/h")
    assert daemon.ok(
        "exec", "vf-rw", "cat", "/data/shared", "/host/h", "/cache/primed"
    ).out_lines == [
        "one",
        "h",
        "primed",
    ]
    daemon.ok("exec", "vf-rw", "sh", "-c", "echo two >> /data/shared")
    assert daemon.ok("exec", "vf-src", "cat", "/data/shared").out_lines == ["one", "two"]
    script = "cat /data/shared; touch /data/x || touch /host/x || echo refused"
    ro = daemon.ctl("run", "--name", "vf-ro", "--volumes-from", "vf-src:ro", image,
                    "sh", "-c", script)  # fmt: skip
    assert ro.out_lines == ["one", "two", "refused"]
    bad = daemon.ctl("run", "--rm", "--volumes-from", "vf-nope", image, "true")
    assert bad.returncode == 125 and "No such container: vf-nope" in bad.stderr
    # The source's anonymous /cache stays while a --volumes-from user holds it.
    cache = {m["Destination"]: m["Name"]
             for m in json.loads(daemon.ok("inspect", "vf-src").stdout)[0]["Mounts"]
             if m["Type"] == "volume"}["/cache"]  # fmt: skip
    daemon.ok("rm", "-f", "-v", "vf-src")
    assert cache in volume_names(daemon)
    daemon.ok("rm", "-f", "vf-rw", "vf-ro")
    daemon.ok("volume", "rm", cache)


def test_escapes_and_bad_mounts_are_refused(daemon: Daemon, image: str) -> None:
    engine = daemon.engine()
    for mount, message in [
        (pb.MountSpec(type="volume", source="../../etc", target="/x"), "invalid characters"),
        (pb.MountSpec(type="volume", source="a/../../b", target="/x"), "invalid characters"),
        (pb.MountSpec(type="bind", source="relative/..", target="/x"), "absolute host path"),
        (pb.MountSpec(type="volume", source="okname", target="/"), "can't be '/'"),
        (pb.MountSpec(type="tmpfs", target="/t", tmpfs_options=["uid=0,remount"]), "tmpfs"),
        (pb.MountSpec(type="volume", source="okname", target="/x", volume_driver="nope"),
         "volume driver 'nope' not found"),
    ]:  # fmt: skip
        with pytest.raises(grpc.RpcError) as info:
            engine.CreateContainer(pb.CreateContainerRequest(image=image, mounts=[mount]))
        assert message in info.value.details(), info.value.details()
    bind = pb.Bind(source="../../../../etc", target="/x")
    with pytest.raises(grpc.RpcError) as info:
        engine.CreateContainer(pb.CreateContainerRequest(image=image, binds=[bind]))
    assert "invalid characters" in info.value.details()
    # A volume directory swapped for a link is refused, not followed.
    (daemon.data_dir / "volumes" / "swapped").symlink_to("/tmp")
    try:
        swapped = daemon.ctl("run", "--rm", "-v", "swapped:/x", image, "true")
        assert swapped.returncode == 125 and "not a plain directory" in swapped.stderr
    finally:
        (daemon.data_dir / "volumes" / "swapped").unlink()
    assert "okname" not in volume_names(daemon)
    assert daemon.ok("ps", "-a", "-q").stdout == ""


def test_data_survives_daemon_restart_and_image_removal(
    daemon: Daemon, image: str, names: list[str]
) -> None:
    names += ["sv-data", "sv-ctr"]
    tarball = daemon.root / "app.tar"
    daemon.ok("import", "-c", "LABEL gone=soon", str(tarball), "volapp:gone")
    daemon.ok("run", "-d", "--name", "sv-ctr", "-v", "sv-data:/d", "volapp:gone",
              "sh", "-c", "echo before > /d/f; sleep 60")  # fmt: skip
    daemon.stop()
    daemon.start()
    # A running container keeps its volume through the restart.
    assert daemon.ok("exec", "sv-ctr", "cat", "/d/f").stdout == "before\n"
    daemon.ok("rm", "-f", "sv-ctr")
    daemon.ok("rmi", "volapp:gone")
    assert daemon.ok("run", "--rm", "-v", "sv-data:/d", image, "cat", "/d/f").stdout == "before\n"

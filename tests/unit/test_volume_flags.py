"""Volume flags and their translation: -v, --mount, --tmpfs, --volumes-from, the Engine
request's mounts and the CRI's, and names and paths that could escape."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest

from runtimed.api.cri_mounts import cri_mounts
from runtimed.api.engine_volumes import volume_extras
from runtimed.cli.client import CliError
from runtimed.cli.main import build_parser
from runtimed.cli.mountflags import parse_mount, parse_ram_size, parse_tmpfs
from runtimed.cli.runflags import build_create_request, parse_volume
from runtimed.errors import InvalidArgument
from runtimed.gen.runtime.v1 import api_pb2 as cri
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.oci.spec import _mount_json
from runtimed.volumes.names import (
    check_name,
    check_sub_path,
    clean_target,
    join_no_symlinks,
)
from runtimed.volumes.plan import MountEntry, check_tmpfs_options, oci_mount, tmpfs_words


def request(*argv: str) -> pb.CreateContainerRequest:
    args: argparse.Namespace = build_parser().parse_args(["run", *argv, "busybox"])
    return build_create_request(args, {})


# --- -v ---------------------------------------------------------------------------------


def test_v_forms_bind_named_and_anonymous() -> None:
    bind = parse_volume("/srv:/data:ro,rshared")
    assert isinstance(bind, pb.Bind)
    assert (bind.source, bind.target, bind.readonly, bind.propagation) == (
        "/srv",
        "/data",
        True,
        "rshared",
    )
    named = parse_volume("cache:/var/cache:ro,nocopy")
    assert isinstance(named, pb.MountSpec)
    assert (named.type, named.source, named.target, named.readonly, named.no_copy) == (
        "volume",
        "cache",
        "/var/cache",
        True,
        True,
    )
    anon = parse_volume("/scratch/")
    assert isinstance(anon, pb.MountSpec) and (anon.source, anon.target) == ("", "/scratch")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rel", "mount path must be absolute"),
        ("/", "destination can't be '/'"),
        ("../etc:/x", "bind source path must be absolute"),
        ("a/b:/x", "bind source path must be absolute"),
        ("x:/y", "bind source path must be absolute"),  # one character is no volume name
        ("vol:/x:rshared", "invalid mode: rshared"),  # propagation is for binds
        ("/h:/x:nocopy", "invalid mode: nocopy"),  # nocopy is for volumes
        ("vol:/x:ro,rw", "conflicting modes"),
    ],
)
def test_bad_v_specs(spec: str, message: str) -> None:
    with pytest.raises(CliError) as info:
        parse_volume(spec)
    assert message in info.value.message and info.value.exit_code == 125


def test_run_request_carries_every_mount_flag() -> None:
    req = request(
        "-v",
        "/h:/bind",
        "-v",
        "data:/data",
        "-v",
        "/anon",
        "--volume-driver",
        "plug",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770",
        "--tmpfs",
        "/run:size=1m,exec",
        "--volumes-from",
        "other:ro",
    )
    assert [(b.source, b.target) for b in req.binds] == [("/h", "/bind")]
    kinds = [(m.type, m.source, m.target, m.volume_driver) for m in req.mounts]
    assert kinds == [
        ("volume", "data", "/data", "plug"),
        ("volume", "", "/anon", "plug"),
        ("tmpfs", "", "/t", ""),
        ("tmpfs", "", "/run", ""),
    ]
    assert req.mounts[2].tmpfs_size == 64 << 20 and req.mounts[2].tmpfs_mode == 0o1770
    assert list(req.mounts[3].tmpfs_options) == ["size=1m", "exec"]
    assert list(req.volumes_from) == ["other:ro"]


def test_duplicate_targets_across_flags_are_refused() -> None:
    with pytest.raises(CliError, match="Duplicate mount point: /d"):
        request("-v", "/h:/d", "--tmpfs", "/d/")


# --- --mount / --tmpfs ------------------------------------------------------------------


def test_mount_keys() -> None:
    spec = parse_mount(
        "type=volume,src=v1,dst=/v,readonly,volume-driver=d,volume-opt=a=b,"
        'volume-label=team=core,volume-nocopy=true,"consistency=cached"'
    )
    assert (spec.type, spec.source, spec.target, spec.readonly) == ("volume", "v1", "/v", True)
    assert (spec.volume_driver, dict(spec.volume_opts), dict(spec.volume_labels)) == (
        "d",
        {"a": "b"},
        {"team": "core"},
    )
    assert spec.no_copy
    bind = parse_mount("type=bind,source=/srv//x/,target=/x,bind-propagation=rslave,ro=false")
    assert (bind.source, bind.bind_propagation, bind.readonly) == ("/srv/x", "rslave", False)
    assert parse_mount("target=/anon").type == "volume"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("type=bind,target=/x", "source is required"),
        ("type=bind,source=rel,target=/x", "must be absolute"),
        ("type=tmpfs,source=x,target=/x", "source is not allowed"),
        ("type=nfs,target=/x", "invalid mount type"),
        ("source=v", "target is required"),
        ("type=bind,source=/s,target=/x,volume-opt=a=b", "cannot mix 'volume-*'"),
        ("type=volume,target=/x,tmpfs-size=1m", "cannot mix 'tmpfs-*'"),
        ("type=volume,target=/x,bind-propagation=shared", "cannot mix 'bind-*'"),
        ("type=tmpfs,target=/x,tmpfs-mode=999", "octal"),
        ("type=volume,target=/x,volume-opt=novalue", "key=value"),
        ("type=volume,target=/x,flavour=x", "unexpected key 'flavour'"),
        ("type=volume,target=/x,readonly=maybe", "invalid value for readonly"),
    ],
)
def test_bad_mounts(text: str, message: str) -> None:
    with pytest.raises(CliError) as info:
        parse_mount(text)
    assert message in info.value.message


def test_sizes_are_binary_and_tmpfs_needs_absolute_paths() -> None:
    assert parse_ram_size("64m") == 64 * 1024 * 1024
    assert parse_ram_size("1GiB") == 1 << 30
    assert parse_ram_size("512") == 512
    with pytest.raises(CliError):
        parse_ram_size("lots")
    with pytest.raises(CliError, match="must be absolute"):
        parse_tmpfs("tmp:size=1m")


def test_tmpfs_options_merge_over_docker_defaults() -> None:
    entry = MountEntry(type="tmpfs", target="/t", options=["exec", "size=1m", "mode=700"])
    assert tmpfs_words(entry) == ["nosuid", "nodev", "exec", "size=1m", "mode=700"]
    sized = MountEntry(type="tmpfs", target="/t", tmpfs_size=2048, tmpfs_mode=0o1777, readonly=True)
    assert tmpfs_words(sized) == ["noexec", "nosuid", "nodev", "ro", "size=2048", "mode=1777"]
    mount = _mount_json(oci_mount(sized, "tmpfs"))
    assert mount["type"] == "tmpfs" and "ro" in mount["options"] and "rbind" not in mount["options"]
    with pytest.raises(InvalidArgument, match="invalid tmpfs option"):
        check_tmpfs_options(["size=1m", "nfsvers=4"])
    with pytest.raises(InvalidArgument, match="invalid tmpfs option"):
        check_tmpfs_options(["remount"])
    with pytest.raises(InvalidArgument, match="one option per entry"):
        check_tmpfs_options(["uid=0,remount"])
    # A bad value says which option and what it takes, before anything is mounted.
    for word, said in [
        ("size=bogus", "'size=bogus': size must be a number of bytes"),
        ("size=", "'size=': size must be"),
        ("mode=999", "'mode=999': mode must be an octal mode"),
        ("uid=root", "'uid=root': uid must be a numeric user id"),
        ("nr_inodes=1x", "'nr_inodes=1x': nr_inodes must be a number"),
    ]:
        with pytest.raises(InvalidArgument, match=re.escape(said)):
            check_tmpfs_options([word])
    good = ["size=64m", "size=50%", "mode=1777", "uid=1000", "nr_inodes=10k", "huge=never"]
    assert check_tmpfs_options(good) == good


# --- Engine and CRI translation ---------------------------------------------------------


def test_engine_request_to_extras() -> None:
    req = pb.CreateContainerRequest(
        image="busybox",
        binds=[pb.Bind(source="/h", target="/b"), pb.Bind(source="named", target="/n")],
        mounts=[pb.MountSpec(type="tmpfs", target="/t", tmpfs_options=["size=1m"])],
        volumes_from=["c1"],
    )
    extras = volume_extras(req)
    assert [(m["type"], m["source"], m["target"]) for m in extras["mounts"]] == [
        ("tmpfs", "", "/t"),
        ("volume", "named", "/n"),
    ]
    assert extras["volumes_from"] == ["c1"]
    with pytest.raises(InvalidArgument, match="cannot mix"):
        volume_extras(
            pb.CreateContainerRequest(
                mounts=[pb.MountSpec(type="bind", source="/s", target="/t", tmpfs_size=1)]
            )
        )


def test_cri_mounts() -> None:
    binds, extras = cri_mounts(
        [
            cri.Mount(container_path="/ro", host_path="/srv//a", readonly=True),
            cri.Mount(
                container_path="/rro", host_path="/srv", readonly=True, recursive_read_only=True
            ),
            cri.Mount(
                container_path="/s", host_path="/srv", propagation=cri.PROPAGATION_BIDIRECTIONAL
            ),
            cri.Mount(
                container_path="/img", image=cri.ImageSpec(image="busybox"), image_sub_path="etc"
            ),
        ]
    )
    assert [(b.source, b.readonly, b.propagation, b.options) for b in binds] == [
        ("/srv/a", True, "rprivate", ()),
        ("/srv", True, "rprivate", ("rro",)),
        ("/srv", False, "rshared", ()),
    ]
    assert "rro" in _mount_json(binds[1])["options"]
    [image] = extras["mounts"]
    assert (image["type"], image["source"], image["sub_path"], image["readonly"]) == (
        "image",
        "busybox",
        "etc",
        True,
    )
    with pytest.raises(InvalidArgument, match="needs readonly"):
        cri_mounts([cri.Mount(container_path="/x", host_path="/srv", recursive_read_only=True)])
    with pytest.raises(InvalidArgument, match="PROPAGATION_PRIVATE"):
        cri_mounts(
            [
                cri.Mount(
                    container_path="/x",
                    host_path="/srv",
                    readonly=True,
                    recursive_read_only=True,
                    propagation=cri.PROPAGATION_HOST_TO_CONTAINER,
                )
            ]
        )
    with pytest.raises(InvalidArgument, match="must be absolute"):
        cri_mounts([cri.Mount(container_path="/x", host_path="rel")])


# --- names and paths --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "x", ".hidden", "-x", "a b", "a\x00b"])
def test_bad_volume_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid characters"):
        check_name(name)


def test_good_volume_names_and_targets() -> None:
    assert check_name("my-vol_1.2") == "my-vol_1.2"
    assert clean_target("/a/./b/../c//") == "/a/c"
    with pytest.raises(InvalidArgument, match="can't be '/'"):
        clean_target("/a/..")
    with pytest.raises(InvalidArgument, match="absolute"):
        clean_target("a")


def test_sub_paths_stay_below_and_follow_no_links(tmp_path: Path) -> None:
    assert check_sub_path("./a//b/") == "a/b"
    for bad in ("../x", "a/../../x", "/etc"):
        with pytest.raises(InvalidArgument):
            check_sub_path(bad)
    (tmp_path / "real" / "deep").mkdir(parents=True)
    os.symlink("/etc", tmp_path / "link")
    os.symlink("real", tmp_path / "inner")
    assert join_no_symlinks(tmp_path, "real/deep") == tmp_path / "real" / "deep"
    with pytest.raises(InvalidArgument, match="symbolic link"):
        join_no_symlinks(tmp_path, "link")
    with pytest.raises(InvalidArgument, match="symbolic link"):
        join_no_symlinks(tmp_path, "inner/deep")
    with pytest.raises(InvalidArgument, match="does not exist"):
        join_no_symlinks(tmp_path, "missing")

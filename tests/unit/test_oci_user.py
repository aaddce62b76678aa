"""Users are resolved from the image's own /etc/passwd and /etc/group, as Docker
does, and no link in a hostile image makes us read a file outside its rootfs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtimed.errors import InvalidArgument
from runtimed.oci.user import read_in_root, resolve_user, resolve_user_full

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment line
app:x:1000:1000:app:/home/app:/bin/sh
nohome:x:1001:1001::
broken line without fields
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """\
root:x:0:
app:x:1000:
wheel:x:10:root,app
staff:x:50:app
audio:x:29:someoneelse
nogroup:x:65534:
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    return root


def test_name_gets_its_gid_home_and_member_groups(rootfs: Path) -> None:
    user = resolve_user_full(rootfs, "app")
    assert (user.uid, user.gid, user.home) == (1000, 1000, "/home/app")
    assert user.additional_gids == [1000, 10, 50]
    assert resolve_user(rootfs, "root") == (0, 0, [0, 10])


def test_empty_user_is_root(rootfs: Path) -> None:
    assert resolve_user_full(rootfs, "").home == "/root"
    assert resolve_user(rootfs, "") == (0, 0, [0, 10])


def test_numeric_uid_known_or_not(rootfs: Path) -> None:
    assert resolve_user(rootfs, "1000") == (1000, 1000, [1000, 10, 50])
    unknown = resolve_user_full(rootfs, "4242")
    assert (unknown.uid, unknown.gid, unknown.additional_gids, unknown.home) == (4242, 0, [0], "/")


def test_explicit_group_by_number_or_name(rootfs: Path) -> None:
    assert resolve_user(rootfs, "4242:4343") == (4242, 4343, [4343])
    assert resolve_user(rootfs, "app:nogroup") == (1000, 65534, [65534, 10, 50])
    assert resolve_user(rootfs, "1000:staff") == (1000, 50, [50, 10])


def test_user_without_home_gets_slash(rootfs: Path) -> None:
    assert resolve_user_full(rootfs, "nohome").home == "/"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ghost", "unable to find user ghost: no matching entries in passwd file"),
        ("app:ghosts", "unable to find group ghosts: no matching entries in group file"),
        ("99999999999", "out of range"),
        ("app:", "group is empty"),
        (":app", "user is empty"),
    ],
)
def test_bad_user_specs_say_what_is_wrong(rootfs: Path, spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        resolve_user(rootfs, spec)
    assert message in err.value.message


def test_missing_passwd_allows_numbers_only(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    assert resolve_user(tmp_path, "0") == (0, 0, [0])
    with pytest.raises(InvalidArgument, match="unable to find user app"):
        resolve_user(tmp_path, "app")


def _outside(tmp_path: Path) -> Path:
    """A host passwd file an attacker would like us to read instead."""
    evil = tmp_path / "outside"
    (evil / "etc").mkdir(parents=True)
    (evil / "etc/passwd").write_text("app:x:0:0:evil:/:/bin/sh\n")
    (evil / "passwd").write_text("app:x:0:0:evil:/:/bin/sh\n")
    return evil


@pytest.mark.parametrize(
    "target",
    [
        "../../outside/passwd",  # relative, climbing out of the rootfs
        "/../../outside/passwd",  # absolute: must mean the rootfs root
        "{host}",  # the host's absolute path of the outside file
    ],
)
def test_passwd_symlinks_stay_inside_the_rootfs(tmp_path: Path, target: str) -> None:
    evil = _outside(tmp_path)
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    os.symlink(target.format(host=evil / "passwd"), root / "etc/passwd")
    with pytest.raises(InvalidArgument, match="unable to find user app"):
        resolve_user(root, "app")


def test_symlinks_resolve_as_the_container_sees_them(tmp_path: Path) -> None:
    _outside(tmp_path)
    root = tmp_path / "rootfs"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/passwd").write_text("app:x:1234:1234::/srv:/bin/sh\n")
    (root / "outside").mkdir()
    (root / "outside/passwd").write_text("app:x:555:555::/x:/bin/sh\n")
    os.symlink("/usr", root / "sysroot")
    os.symlink("../sysroot/lib", root / "lib")  # a chain through another link
    (root / "etc").mkdir()
    os.symlink("../lib/../lib/passwd", root / "etc/passwd")
    assert resolve_user(root, "app") == (1234, 1234, [1234])
    # An absolute link whose parents climb out lands on the rootfs's own copy.
    os.unlink(root / "etc/passwd")
    os.symlink("/../../../outside/passwd", root / "etc/passwd")
    assert resolve_user(root, "app") == (555, 555, [555])


def test_etc_itself_a_link_out_is_clamped(tmp_path: Path) -> None:
    _outside(tmp_path)
    root = tmp_path / "rootfs"
    root.mkdir()
    os.symlink("../outside/etc", root / "etc")
    with pytest.raises(InvalidArgument, match="unable to find user app"):
        resolve_user(root, "app")


def test_loops_fifos_and_directories_are_treated_as_missing(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    os.symlink("group", root / "etc/passwd")
    os.symlink("passwd", root / "etc/group")
    assert read_in_root(root, "/etc/passwd") is None
    os.unlink(root / "etc/passwd")
    os.mkfifo(root / "etc/passwd")  # opening a FIFO for reading would block forever
    assert read_in_root(root, "/etc/passwd") is None
    os.unlink(root / "etc/passwd")
    (root / "etc/passwd").mkdir()
    assert read_in_root(root, "/etc/passwd") is None
    assert read_in_root(root, "/etc/passwd/x") is None
    assert resolve_user(root, "0") == (0, 0, [0])

"""config.json generation: what the container will run, as whom, where, with
which mounts, namespaces, capabilities and limits; bad requests are refused
before anything is written. (Real crun runs: tests/integration/test_oci_crun.py.)"""

from __future__ import annotations

import json
import resource
import signal
from pathlib import Path
from typing import Any

import pytest

from runtimed.errors import InvalidArgument
from runtimed.oci import sysctls
from runtimed.oci.sandbox_ns import pin_namespaces, unpin_namespaces
from runtimed.oci.seccomp import default_profile
from runtimed.oci.signals import parse_signal
from runtimed.oci.spec import (
    DEFAULT_PATH,
    RLIM_INFINITY,
    BindMount,
    NamespacePaths,
    SpecRequest,
    build_exec_process,
    build_spec,
    stop_signal,
)

DOCKER_DEFAULT_CAPS = {
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
}


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
    )
    (root / "etc/group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:app\n")
    return root


def spec_for(rootfs: Path, **kw: Any) -> dict[str, Any]:
    kw.setdefault("image_config", {"Cmd": ["sh"]})
    spec = build_spec(SpecRequest(**kw), rootfs)
    json.dumps(spec)  # what is written to config.json must serialise
    return spec


def env_of(spec: dict[str, Any]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in spec["process"]["env"])


def mount_at(spec: dict[str, Any], dest: str) -> dict[str, Any]:
    found = [m for m in spec["mounts"] if m["destination"] == dest]
    assert len(found) == 1, (dest, spec["mounts"])
    return found[0]


# --- command -----------------------------------------------------------------------

IMAGE = {"Entrypoint": ["/entry"], "Cmd": ["--default"]}


@pytest.mark.parametrize(
    ("image", "entrypoint", "cmd", "args"),
    [
        (IMAGE, None, None, ["/entry", "--default"]),
        (IMAGE, None, ["--mine"], ["/entry", "--mine"]),
        (IMAGE, ["/other"], None, ["/other"]),  # a new entrypoint drops the image's CMD
        (IMAGE, ["/other"], ["x"], ["/other", "x"]),
        (IMAGE, [], ["echo", "hi"], ["echo", "hi"]),  # [] clears the entrypoint
        ({"Cmd": ["sh"]}, None, None, ["sh"]),
        ({"Cmd": ["sh"]}, None, ["ls", "-l"], ["ls", "-l"]),
    ],
)
def test_command_from_entrypoint_cmd_and_overrides(
    rootfs: Path, image: dict, entrypoint: list[str] | None, cmd: list[str] | None, args: list[str]
) -> None:
    spec = spec_for(rootfs, image_config=image, entrypoint=entrypoint, cmd=cmd)
    assert spec["process"]["args"] == args


@pytest.mark.parametrize(
    ("image", "entrypoint", "cmd"),
    [({}, None, None), (IMAGE, [], None), ({"Cmd": ["sh"]}, None, []), (IMAGE, [], [])],
)
def test_no_command_is_refused(
    rootfs: Path, image: dict, entrypoint: list[str] | None, cmd: list[str] | None
) -> None:
    with pytest.raises(InvalidArgument, match="no command specified"):
        spec_for(rootfs, image_config=image, entrypoint=entrypoint, cmd=cmd)


# --- env, cwd, user, hostname --------------------------------------------------------


def test_request_env_overrides_image_env_in_place(rootfs: Path) -> None:
    image = {"Cmd": ["sh"], "Env": ["PATH=/opt/bin", "A=1", "KEEP=yes", "broken"]}
    spec = spec_for(rootfs, image_config=image, env=["A=2", "NEW=x=y", "EMPTY="], hostname="h1")
    assert spec["process"]["env"] == [
        "PATH=/opt/bin",
        "A=2",
        "KEEP=yes",
        "NEW=x=y",
        "EMPTY=",
        "HOSTNAME=h1",
        "HOME=/root",
    ]


def test_defaults_path_home_and_term(rootfs: Path) -> None:
    env = env_of(spec_for(rootfs, user="app", tty=True))
    assert env["PATH"] == DEFAULT_PATH
    assert env["HOME"] == "/home/app"
    assert env["TERM"] == "xterm"
    assert "TERM" not in env_of(spec_for(rootfs))
    assert env_of(spec_for(rootfs, env=["HOME=/x", "TERM=dumb"], tty=True))["TERM"] == "dumb"


@pytest.mark.parametrize("bad", ["NOVALUE", "=value", "A=b\x00c"])
def test_malformed_env_is_refused(rootfs: Path, bad: str) -> None:
    with pytest.raises(InvalidArgument, match="environment variable"):
        spec_for(rootfs, env=[bad])


def test_working_dir_from_request_then_image_then_root(rootfs: Path) -> None:
    image = {"Cmd": ["sh"], "WorkingDir": "/srv/app/"}
    assert spec_for(rootfs, image_config=image)["process"]["cwd"] == "/srv/app"
    assert spec_for(rootfs, image_config=image, working_dir="/tmp")["process"]["cwd"] == "/tmp"
    assert spec_for(rootfs)["process"]["cwd"] == "/"
    with pytest.raises(InvalidArgument, match="absolute"):
        spec_for(rootfs, working_dir="relative/dir")


def test_user_from_request_or_image(rootfs: Path) -> None:
    image = {"Cmd": ["sh"], "User": "app"}
    assert spec_for(rootfs, image_config=image)["process"]["user"] == {
        "uid": 1000,
        "gid": 1000,
        "additionalGids": [1000, 50],
    }
    assert spec_for(rootfs, image_config=image, user="0:0")["process"]["user"]["uid"] == 0
    with pytest.raises(InvalidArgument, match="unable to find user ghost"):
        spec_for(rootfs, user="ghost")


def test_hostname_set_only_in_a_private_uts_namespace(rootfs: Path) -> None:
    assert spec_for(rootfs, hostname="web-1")["hostname"] == "web-1"
    joined = spec_for(rootfs, hostname="pod", namespaces=NamespacePaths(uts="/run/x/uts"))
    assert "hostname" not in joined  # the pinned namespace carries the name already
    assert env_of(joined)["HOSTNAME"] == "pod"
    for bad in ("a" * 65, "has space", "semi;colon"):
        with pytest.raises(InvalidArgument, match="hostname"):
            spec_for(rootfs, hostname=bad)


# --- namespaces ----------------------------------------------------------------------


def test_private_namespaces_and_no_user_namespace(rootfs: Path) -> None:
    spec = spec_for(rootfs)
    assert spec["linux"]["namespaces"] == [
        {"type": t} for t in ("pid", "ipc", "uts", "mount", "network")
    ]
    assert "uidMappings" not in spec["linux"]
    assert "cgroupsPath" not in spec["linux"] and "resources" not in spec["linux"]


def test_paths_join_and_host_network_has_no_entry(rootfs: Path) -> None:
    ns = NamespacePaths(network="/p/net", ipc="/p/ipc", uts="/p/uts", pid="/proc/7/ns/pid")
    assert spec_for(rootfs, namespaces=ns)["linux"]["namespaces"] == [
        {"type": "pid", "path": "/proc/7/ns/pid"},
        {"type": "ipc", "path": "/p/ipc"},
        {"type": "uts", "path": "/p/uts"},
        {"type": "mount"},
        {"type": "network", "path": "/p/net"},
    ]
    host = spec_for(rootfs, namespaces=NamespacePaths(host_network=True))
    assert "network" not in [n["type"] for n in host["linux"]["namespaces"]]
    with pytest.raises(InvalidArgument, match="exclusive"):
        spec_for(rootfs, namespaces=NamespacePaths(network="/p/net", host_network=True))


# --- mounts --------------------------------------------------------------------------


def test_standard_mounts(rootfs: Path) -> None:
    spec = spec_for(rootfs)
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests == ["/proc", "/dev", "/dev/pts", "/sys", "/dev/shm", "/dev/mqueue"]
    assert mount_at(spec, "/sys")["type"] == "sysfs"
    assert "ro" in mount_at(spec, "/sys")["options"]
    assert "newinstance" in mount_at(spec, "/dev/pts")["options"]


def test_host_network_binds_sys_recursively_read_only(rootfs: Path) -> None:
    sys_mount = mount_at(spec_for(rootfs, namespaces=NamespacePaths(host_network=True)), "/sys")
    assert sys_mount["type"] == "bind" and sys_mount["source"] == "/sys"
    assert {"rbind", "rro"} <= set(sys_mount["options"])


def test_bind_mounts_carry_readonly_and_propagation(rootfs: Path) -> None:
    spec = spec_for(
        rootfs,
        mounts=[
            BindMount("/host/data", "/data", readonly=True),
            BindMount("/host/logs", "/var/log/app/", propagation="rslave"),
            BindMount("tmpfs", "/scratch", type="tmpfs", options=("size=1m",)),
        ],
    )
    assert mount_at(spec, "/data") == {
        "destination": "/data",
        "type": "bind",
        "source": "/host/data",
        "options": ["rbind", "rprivate", "ro"],
    }
    assert mount_at(spec, "/var/log/app")["options"] == ["rbind", "rslave"]
    assert mount_at(spec, "/scratch")["options"] == ["size=1m"]
    assert spec["linux"]["rootfsPropagation"] == "rslave"
    assert "rootfsPropagation" not in spec_for(rootfs)["linux"]


def test_user_mounts_replace_defaults_and_parents_come_first(rootfs: Path) -> None:
    spec = spec_for(
        rootfs,
        mounts=[
            BindMount("/a/b", "/srv/a/b"),
            BindMount("/a", "/srv/a"),
            BindMount("/s", "/dev/shm"),
        ],
    )
    assert mount_at(spec, "/dev/shm")["source"] == "/s"
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.index("/srv/a") < dests.index("/srv/a/b")


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        (BindMount("/x", "relative"), "absolute"),
        (BindMount("/x", "/"), "cannot be '/'"),
        (BindMount("relative", "/x"), "source"),
        (BindMount("/x", "/y", propagation="sideways"), "propagation"),
    ],
)
def test_bad_mounts_are_refused(rootfs: Path, mount: BindMount, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        spec_for(rootfs, mounts=[mount])


def test_etc_files_are_bound_and_follow_readonly_rootfs(rootfs: Path) -> None:
    files = {"hostname_file": "/d/hostname", "hosts_file": "/d/hosts", "resolv_conf": "/d/resolv"}
    spec = spec_for(rootfs, **files)
    assert mount_at(spec, "/etc/hosts")["source"] == "/d/hosts"
    assert mount_at(spec, "/etc/hostname")["source"] == "/d/hostname"
    assert "ro" not in mount_at(spec, "/etc/resolv.conf")["options"]
    ro = spec_for(rootfs, readonly_rootfs=True, **files)
    assert ro["root"]["readonly"] is True
    assert "ro" in mount_at(ro, "/etc/resolv.conf")["options"]
    mine = spec_for(rootfs, mounts=[BindMount("/mine", "/etc/hosts")], **files)
    assert mount_at(mine, "/etc/hosts")["source"] == "/mine"  # the user's file wins
    assert all(m["destination"] != "/etc/hosts" for m in spec_for(rootfs)["mounts"])


# --- security ------------------------------------------------------------------------


def caps_of(spec: dict[str, Any]) -> set[str]:
    caps = spec["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"]
    return set(caps["bounding"])


def test_docker_defaults_for_security(rootfs: Path) -> None:
    spec = spec_for(rootfs)
    assert caps_of(spec) == DOCKER_DEFAULT_CAPS
    assert spec["process"]["noNewPrivileges"] is True
    assert "/proc/keys" in spec["linux"]["maskedPaths"]
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    assert "/proc/sys" in spec["linux"]["readonlyPaths"]
    seccomp = spec["linux"]["seccomp"]
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert spec_for(rootfs, no_new_privileges=False)["process"]["noNewPrivileges"] is False


def test_cap_add_and_drop(rootfs: Path) -> None:
    spec = spec_for(rootfs, cap_add=["net_admin", "CAP_SYS_PTRACE"], cap_drop=["CAP_CHOWN", "kill"])
    assert caps_of(spec) == DOCKER_DEFAULT_CAPS - {"CAP_CHOWN", "CAP_KILL"} | {
        "CAP_NET_ADMIN",
        "CAP_SYS_PTRACE",
    }
    assert caps_of(spec_for(rootfs, cap_drop=["ALL"], cap_add=["CHOWN"])) == {"CAP_CHOWN"}
    everything = caps_of(spec_for(rootfs, cap_add=["ALL"], cap_drop=["MKNOD"]))
    assert "CAP_SYS_ADMIN" in everything and "CAP_MKNOD" not in everything
    with pytest.raises(InvalidArgument, match="unknown capability"):
        spec_for(rootfs, cap_add=["CAP_FLY"])


def test_privileged_gets_all_caps_and_no_filters(rootfs: Path) -> None:
    spec = spec_for(rootfs, privileged=True)
    assert {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_MODULE"} <= caps_of(spec)
    assert "seccomp" not in spec["linux"]
    assert "maskedPaths" not in spec["linux"] and "readonlyPaths" not in spec["linux"]
    assert "ro" not in mount_at(spec, "/sys")["options"]


def allowed(profile: dict[str, Any]) -> set[str]:
    return {
        name
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
        for name in rule["names"]
    }


def test_seccomp_is_an_allow_list_that_follows_capabilities() -> None:
    plain = default_profile(DOCKER_DEFAULT_CAPS, "x86_64")
    assert plain["defaultAction"] == "SCMP_ACT_ERRNO" and plain["defaultErrnoRet"] == 1
    assert plain["architectures"][0] == "SCMP_ARCH_X86_64"
    assert {"read", "write", "execve", "openat", "clone", "arch_prctl"} - allowed(plain) == {
        "clone"  # only with arguments that create no namespace
    }
    dangerous = {"mount", "unshare", "setns", "keyctl", "kexec_load", "bpf", "init_module"}
    assert not dangerous & allowed(plain)
    assert {"chroot"} <= allowed(plain)  # CAP_SYS_CHROOT is a default capability
    admin = default_profile(DOCKER_DEFAULT_CAPS | {"CAP_SYS_ADMIN"}, "x86_64")
    assert {"mount", "unshare", "setns", "clone", "clone3"} <= allowed(admin)
    clone3 = [r for r in plain["syscalls"] if r["names"] == ["clone3"]]
    assert clone3 and clone3[0]["errnoRet"] == 38  # ENOSYS: libc falls back to clone
    assert "arch_prctl" not in allowed(default_profile(set(), "aarch64"))


def test_spec_seccomp_follows_cap_add(rootfs: Path) -> None:
    assert "unshare" not in allowed(spec_for(rootfs)["linux"]["seccomp"])
    assert "unshare" in allowed(spec_for(rootfs, cap_add=["SYS_ADMIN"])["linux"]["seccomp"])


# --- sysctls, rlimits, signals --------------------------------------------------------


def test_namespaced_sysctls_pass(rootfs: Path) -> None:
    sysctls = {
        "net.ipv4.ip_forward": "1",
        "net/ipv4/conf/eth0.100/rp_filter": "0",
        "kernel.shmmax": "100000",
        "kernel.msgmax": "9000",
        "kernel.sem": "250 32000 32 128",
        "fs.mqueue.msg_max": "20",
    }
    assert spec_for(rootfs, sysctls=sysctls)["linux"]["sysctl"] == {
        "net.ipv4.ip_forward": "1",
        "net.ipv4.conf.eth0/100.rp_filter": "0",
        "kernel.shmmax": "100000",
        "kernel.msgmax": "9000",
        "kernel.sem": "250 32000 32 128",
        "fs.mqueue.msg_max": "20",
    }


@pytest.mark.parametrize("name", ["vm.swappiness", "kernel.pid_max", "fs.file-max", "kernel.sem2"])
def test_host_wide_sysctls_are_refused(rootfs: Path, name: str) -> None:
    with pytest.raises(InvalidArgument, match="not namespaced"):
        spec_for(rootfs, sysctls={name: "1"})


def test_net_sysctls_need_a_network_namespace(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="host network"):
        spec_for(
            rootfs,
            sysctls={"net.core.somaxconn": "1"},
            namespaces=NamespacePaths(host_network=True),
        )


def test_rlimits_by_either_name(rootfs: Path) -> None:
    spec = spec_for(rootfs, rlimits=[("nofile", 100, 200), ("RLIMIT_CORE", 0, -1)])
    assert spec["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": RLIM_INFINITY},
    ]
    assert "rlimits" not in spec_for(rootfs)["process"]


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        (("nofiles", 1, 1), "unknown rlimit"),
        (("nproc", 10, 5), "above hard"),
        (("core", -5, 1), "negative"),
    ],
)
def test_bad_rlimits_are_refused(rootfs: Path, limit: tuple[str, int, int], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        spec_for(rootfs, rlimits=[limit])


def test_rlimits_above_our_own_hard_limit_are_clamped(rootfs: Path) -> None:
    _, own_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if own_hard == resource.RLIM_INFINITY:
        pytest.skip("this process has no hard limit on open files")
    spec = spec_for(rootfs, rlimits=[("nofile", own_hard + 10, own_hard + 10)])
    assert spec["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "soft": own_hard, "hard": own_hard}
    ]


def test_stop_signal(rootfs: Path) -> None:
    req = SpecRequest(image_config={"Cmd": ["sh"], "StopSignal": "SIGQUIT"})
    assert stop_signal(req) == signal.SIGQUIT
    req.stop_signal = "USR1"
    assert stop_signal(req) == signal.SIGUSR1
    assert stop_signal(SpecRequest(image_config={"Cmd": ["sh"]})) == signal.SIGTERM
    with pytest.raises(InvalidArgument, match="invalid signal"):
        spec_for(rootfs, stop_signal="SIGNOPE")


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("SIGTERM", 15),
        ("TERM", 15),
        ("term", 15),
        ("15", 15),
        ("SIGKILL", 9),
        ("SIGIOT", 6),
        ("SIGRTMIN", int(signal.SIGRTMIN)),
        ("SIGRTMIN+3", int(signal.SIGRTMIN) + 3),
        ("RTMAX-1", int(signal.SIGRTMAX) - 1),
        ("SIGWINCH", 28),
    ],
)
def test_parse_signal(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("bad", ["", "0", "65", "SIGNOPE", "SIGRTMIN+99", "RTMIN-1", "-9", "SIG"])
def test_parse_signal_rejects(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid signal"):
        parse_signal(bad)


def test_annotations_and_root(rootfs: Path) -> None:
    spec = spec_for(rootfs, annotations={"io.kubernetes.cri.sandbox-id": "abc"})
    assert spec["annotations"] == {"io.kubernetes.cri.sandbox-id": "abc"}
    assert spec["root"] == {"path": str(rootfs), "readonly": False}
    assert spec["process"]["terminal"] is False


# --- exec ----------------------------------------------------------------------------


def test_exec_process_inherits_and_overrides(rootfs: Path) -> None:
    base = spec_for(rootfs, env=["A=1"], cap_add=["NET_ADMIN"], rlimits=[("nofile", 10, 10)])
    proc = build_exec_process(base, ["ps"], ["A=2", "B=3"], "", "", False, rootfs)
    assert proc["args"] == ["ps"]
    assert env_of({"process": proc})["A"] == "2" and env_of({"process": proc})["B"] == "3"
    assert proc["capabilities"] == base["process"]["capabilities"]
    assert proc["rlimits"] == base["process"]["rlimits"]
    assert proc["cwd"] == "/" and proc["user"]["uid"] == 0
    assert base["process"]["args"] == ["sh"]  # the container's own process is untouched

    as_app = build_exec_process(base, ["id"], [], "app", "/tmp", True, rootfs)
    assert as_app["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 50]}
    env = env_of({"process": as_app})
    assert env["HOME"] == "/home/app" and env["TERM"] == "xterm"
    assert as_app["cwd"] == "/tmp" and as_app["terminal"] is True

    with pytest.raises(InvalidArgument, match="no command specified"):
        build_exec_process(base, [], [], "", "", False, rootfs)
    with pytest.raises(InvalidArgument, match="unable to find user"):
        build_exec_process(base, ["id"], [], "ghost", "", False, rootfs)


# --- pod namespaces (pinning itself runs in tests/integration/test_oci_crun.py) ----------


def test_pinning_refuses_a_bad_hostname_and_makes_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="hostname"):
        pin_namespaces(tmp_path / "pod", "no spaces allowed")
    assert not (tmp_path / "pod").exists()


def test_unpinning_what_is_not_pinned_is_a_no_op(tmp_path: Path) -> None:
    unpin_namespaces(tmp_path / "never-made")
    half = tmp_path / "half"
    half.mkdir()
    (half / "net").touch()  # as a pin that failed midway leaves it
    (half / "keep").touch()
    unpin_namespaces(half)
    assert sorted(p.name for p in half.iterdir()) == ["keep"]


# --- security context: groups, masked paths, seccomp modes; host IPC; sysctl names ------


def test_supplemental_groups_join_the_users_groups(rootfs: Path) -> None:
    user = spec_for(rootfs, user="app", supplemental_groups=[1234, 50])["process"]["user"]
    assert user == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 50, 1234]}
    # Strict: not the image's /etc/group memberships (staff), only what was asked.
    strict = spec_for(rootfs, user="app", supplemental_groups=[1234], groups_strict=True)
    assert strict["process"]["user"]["additionalGids"] == [1000, 1234]
    with pytest.raises(InvalidArgument, match="supplemental group -1"):
        spec_for(rootfs, supplemental_groups=[-1])


def test_masked_and_readonly_paths_replace_the_defaults(rootfs: Path) -> None:
    default = spec_for(rootfs)["linux"]
    assert "/proc/kcore" in default["maskedPaths"] and "/proc/sys" in default["readonlyPaths"]
    given = spec_for(rootfs, masked_paths=["/proc/version"], readonly_paths=["/etc"])["linux"]
    assert given["maskedPaths"] == ["/proc/version"] and given["readonlyPaths"] == ["/etc"]
    empty = spec_for(rootfs, masked_paths=[], readonly_paths=[])["linux"]
    assert empty["maskedPaths"] == default["maskedPaths"]
    assert empty["readonlyPaths"] == default["readonlyPaths"]
    privileged = spec_for(rootfs, masked_paths=["/proc/version"], privileged=True)["linux"]
    assert "maskedPaths" not in privileged and "readonlyPaths" not in privileged
    with pytest.raises(InvalidArgument, match="masked path 'proc'"):
        spec_for(rootfs, masked_paths=["proc"])


def test_seccomp_modes(rootfs: Path) -> None:
    assert spec_for(rootfs)["linux"]["seccomp"] == default_profile(DOCKER_DEFAULT_CAPS)
    assert "seccomp" not in spec_for(rootfs, seccomp="unconfined")["linux"]
    block = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"},
            {
                "names": ["mount"],
                "action": "SCMP_ACT_ERRNO",
                "includes": {"caps": ["CAP_SYS_ADMIN"]},
            },
        ],
    }
    plain = spec_for(rootfs, seccomp="profile", seccomp_profile=block)["linux"]["seccomp"]
    assert plain == {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [block["syscalls"][0]]}
    # Rules that depend on capabilities see the container's own.
    admin = spec_for(rootfs, seccomp="profile", seccomp_profile=block, cap_add=["SYS_ADMIN"])
    assert [r["names"] for r in admin["linux"]["seccomp"]["syscalls"]] == [
        ["sethostname"],
        ["mount"],
    ]
    privileged = spec_for(rootfs, seccomp="profile", seccomp_profile=block, privileged=True)
    assert "seccomp" not in privileged["linux"]
    for bad in ({"seccomp": "profile"}, {"seccomp": "strict"}):
        with pytest.raises(InvalidArgument, match="seccomp mode"):
            spec_for(rootfs, **bad)


def test_host_ipc_has_no_ipc_namespace_and_binds_the_hosts_shm(rootfs: Path) -> None:
    spec = spec_for(rootfs, namespaces=NamespacePaths(uts="/p/uts", host_ipc=True))
    assert "ipc" not in [n["type"] for n in spec["linux"]["namespaces"]]
    shm = mount_at(spec, "/dev/shm")
    assert shm["type"] == "bind" and shm["source"] == "/dev/shm"
    # An mqueue filesystem of the host's IPC namespace cannot be mounted from ours.
    mqueue = [m for m in spec["mounts"] if m["destination"] == "/dev/mqueue"]
    assert all(m["type"] == "bind" and m["source"] == "/dev/mqueue" for m in mqueue)
    with pytest.raises(InvalidArgument, match="exclusive"):
        spec_for(rootfs, namespaces=NamespacePaths(ipc="/p/ipc", host_ipc=True))
    with pytest.raises(InvalidArgument, match="host IPC"):
        spec_for(
            rootfs,
            sysctls={"kernel.shmmax": "1"},
            namespaces=NamespacePaths(host_ipc=True),
        )
    # net.* still may be set: the network namespace is the container's own.
    net = spec_for(
        rootfs, sysctls={"net.ipv4.tcp_syncookies": "1"}, namespaces=NamespacePaths(host_ipc=True)
    )
    assert net["linux"]["sysctl"] == {"net.ipv4.tcp_syncookies": "1"}


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("kernel.shm_rmid_forced", "kernel/shm_rmid_forced"),
        ("kernel/msgmax", "kernel/msgmax"),
        ("net/ipv4/conf/eth0.100/rp_filter", "net/ipv4/conf/eth0.100/rp_filter"),
        ("net.ipv4.ip_local_port_range", "net/ipv4/ip_local_port_range"),
    ],
)
def test_sysctl_paths(name: str, path: str) -> None:
    assert sysctls.proc_path(sysctls.normalize(name)) == path


@pytest.mark.parametrize("name", ["net..ipv4", "net.ipv4.", "net/../kernel/panic", "net", ""])
def test_sysctl_names_that_are_no_path_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument, match="sysctl"):
        sysctls.check({name: "1"}, host_network=False)

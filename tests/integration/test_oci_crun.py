"""Generated specs run under real crun, as root of a user namespace like the
daemon's: who the process is, what it sees and what it is refused.

Each scenario unpacks a busybox rootfs inside the namespace (so its files
belong to mapped ids) and runs a few containers with
`crun --root DIR --cgroup-manager=disabled run`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from runtimed.oci.sandbox_ns import pin_namespaces, unpin_namespaces
from runtimed.oci.spec import BindMount, NamespacePaths, SpecRequest, build_exec_process, build_spec
from tests.unit._userns import run_scenario

pytestmark = pytest.mark.integration

_REPO = Path(__file__).resolve().parents[2]
DOCKER_CAP_EFF = "00000000a80425fb"  # Docker's default set, as /proc/self/status shows it
# The default set minus CAP_CHOWN (bit 0) plus CAP_NET_ADMIN (bit 12).
ADJUSTED_CAP_EFF = f"{0xA80425FB - 1 + (1 << 12):016x}"


@pytest.fixture(scope="module")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("crun") is None:
        pytest.skip("crun is not installed (apt-get install crun)")
    if not Path("/bin/busybox").exists():
        pytest.skip("busybox-static is not installed")
    out = tmp_path_factory.mktemp("busybox") / "rootfs.tar"
    subprocess.run(["bash", str(_REPO / "deploy/make-busybox-rootfs.sh"), str(out)], check=True)
    return out


# --- helpers that run inside the namespace ------------------------------------------


class Box:
    """A busybox rootfs and a crun state dir under the scenario's scratch dir."""

    def __init__(self, scratch: str, tar: str) -> None:
        self.base = Path(scratch)
        self.rootfs = self.base / "rootfs"
        self.rootfs.mkdir()
        subprocess.run(["tar", "-C", str(self.rootfs), "-xpf", tar], check=True)
        self.state = self.base / "crun"

    def crun(self, *args: str, timeout: float = 20, **kw: Any) -> subprocess.CompletedProcess:
        cmd = ["crun", "--root", str(self.state), "--cgroup-manager=disabled", *args]
        return subprocess.run(cmd, text=True, timeout=timeout, check=False, **kw)

    def bundle(self, name: str, spec: dict[str, Any]) -> Path:
        bundle = self.base / "bundles" / name
        bundle.mkdir(parents=True)
        (bundle / "config.json").write_text(json.dumps(spec))
        return bundle

    def run_spec(self, name: str, spec: dict[str, Any]) -> tuple[int, str]:
        bundle = self.bundle(name, spec)
        try:
            proc = self.crun("run", "--bundle", str(bundle), name, capture_output=True)
        except subprocess.TimeoutExpired:
            self.crun("delete", "--force", name, capture_output=True)
            raise
        return proc.returncode, proc.stdout + proc.stderr

    def run(self, name: str, script: str, **kw: Any) -> tuple[int, str]:
        req = SpecRequest(image_config={"Cmd": ["sh", "-c", script]}, **kw)
        return self.run_spec(name, build_spec(req, self.rootfs))

    def ok(self, name: str, script: str, **kw: Any) -> str:
        code, out = self.run(name, script, **kw)
        assert code == 0, f"{name} exited {code}:\n{out}"
        return out


def _ids(id_output: str) -> tuple[str, str, set[str]]:
    fields = dict(part.split("=", 1) for part in id_output.split())
    return fields["uid"], fields["gid"], set(fields.get("groups", "").split(","))


def _lines(out: str, prefix: str) -> list[str]:
    return [line[len(prefix) :] for line in out.splitlines() if line.startswith(prefix)]


# --- scenarios ------------------------------------------------------------------------


def scenario_process(scratch: str, tar: str) -> None:
    box = Box(scratch, tar)
    (box.rootfs / "etc/group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:app\n")
    script = "echo ID=$(id); echo PWD=$(pwd); env | sed s/^/ENV:/; grep Cap /proc/self/status"

    out = box.ok("as-app", script, user="app", env=["FOO=bar baz"], working_dir="/work/dir")
    uid, gid, groups = _ids(_lines(out, "ID=")[0])
    assert (uid, gid, groups) == ("1000(app)", "1000(app)", {"50(staff)", "1000(app)"}), out
    assert _lines(out, "PWD=") == ["/work/dir"]  # created, as Docker does
    env = dict(line.split("=", 1) for line in _lines(out, "ENV:"))
    assert env["FOO"] == "bar baz" and env["HOME"] == "/home/app", env
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert "CapEff:\t0000000000000000" in out  # a non-root user keeps no capability

    out = box.ok("as-root", script, hostname="web-1")
    assert _ids(_lines(out, "ID=")[0])[0] == "0(root)"
    assert "HOSTNAME=web-1" in _lines(out, "ENV:")
    assert f"CapEff:\t{DOCKER_CAP_EFF}" in out and f"CapBnd:\t{DOCKER_CAP_EFF}" in out

    out = box.ok(
        "adjusted", "grep CapEff /proc/self/status", cap_drop=["CHOWN"], cap_add=["NET_ADMIN"]
    )
    assert f"CapEff:\t{ADJUSTED_CAP_EFF}" in out

    out = box.ok(
        "limits",
        "ulimit -n; ulimit -Hn; cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward",
        rlimits=[("nofile", 1000, 2000)],
        sysctls={"kernel.shmmax": "123456789", "net.ipv4.ip_forward": "1"},
    )
    assert out.split() == ["1000", "2000", "123456789", "1"], out

    # exec into a running container with another user, env and working dir.
    req = SpecRequest(image_config={"Cmd": ["sleep", "60"]}, env=["A=1"])
    spec = build_spec(req, box.rootfs)
    bundle = box.bundle("long", spec)
    started = box.crun(
        "run", "--detach", "--bundle", str(bundle), "long", stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert started.returncode == 0
    try:
        proc = build_exec_process(
            spec, ["sh", "-c", script], ["B=2"], "app", "/tmp", False, box.rootfs
        )
        (box.base / "exec.json").write_text(json.dumps(proc))
        done = box.crun(
            "exec", "--process", str(box.base / "exec.json"), "long", capture_output=True
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        assert _ids(_lines(out, "ID=")[0])[:2] == ("1000(app)", "1000(app)")
        assert _lines(out, "PWD=") == ["/tmp"]
        assert {"ENV:A=1", "ENV:B=2", "ENV:HOME=/home/app"} <= set(out.splitlines())
    finally:
        box.crun("delete", "--force", "long", capture_output=True)


def scenario_filesystem(scratch: str, tar: str) -> None:
    box = Box(scratch, tar)
    host = box.base / "host"
    (host / "ro").mkdir(parents=True)
    (host / "rw").mkdir()
    (host / "ro/data").write_text("from the host\n")
    (host / "hostname").write_text("files-box\n")
    (host / "hosts").write_text("127.0.0.1\tlocalhost\n10.1.2.3\tfiles-box\n")
    (host / "resolv.conf").write_text("nameserver 10.9.9.9\n")
    files = {
        "hostname_file": str(host / "hostname"),
        "hosts_file": str(host / "hosts"),
        "resolv_conf": str(host / "resolv.conf"),
    }
    mounts = [
        BindMount(str(host / "ro"), "/in", readonly=True),
        BindMount(str(host / "rw"), "/out"),
    ]

    script = """
        cat /in/data /etc/hostname /etc/hosts /etc/resolv.conf; hostname
        echo written > /out/file && echo OUT-OK
        echo x > /in/new || echo IN-REFUSED
        touch /newfile || echo ROOT-REFUSED
        touch /dev/shm/s && echo SHM-OK
        echo 1 > /proc/sys/kernel/shmmax || echo PROCSYS-REFUSED
        echo KEYS=$(stat -c %F /proc/keys) TIMER=$(stat -c %F /proc/timer_list)
        awk '{print "MNT", $5, $(NF-2)}' /proc/self/mountinfo
        ls /dev/pts/ptmx /dev/null /dev/mqueue >/dev/null && echo DEV-OK
    """
    code, out = box.run(
        "fs", script, hostname="files-box", readonly_rootfs=True, mounts=mounts, **files
    )
    assert code == 0, out
    assert "from the host\nfiles-box\n127.0.0.1\tlocalhost\n10.1.2.3\tfiles-box\n" in out
    assert "nameserver 10.9.9.9\nfiles-box\n" in out
    assert "OUT-OK" in out and (host / "rw/file").read_text() == "written\n"
    assert "IN-REFUSED" in out and not (host / "ro/new").exists()
    assert "ROOT-REFUSED" in out and not (box.rootfs / "newfile").exists()
    assert "SHM-OK" in out  # /dev/shm stays writable on a read-only root
    assert "PROCSYS-REFUSED" in out
    assert "KEYS=character special file TIMER=character special file" in out  # /dev/null
    fstypes = dict(line.split()[1:] for line in out.splitlines() if line.startswith("MNT "))
    assert {
        "/proc": "proc",
        "/dev": "tmpfs",
        "/dev/pts": "devpts",
        "/sys": "sysfs",
        "/dev/shm": "tmpfs",
        "/dev/mqueue": "mqueue",
    }.items() <= fstypes.items(), out
    assert "DEV-OK" in out

    # Host network: /sys is the host's, bound read-only all the way down.
    out = box.ok(
        "hostnet",
        'awk \'$5 ~ "^/sys" {print "SYS", $5, $6}\' /proc/self/mountinfo',
        namespaces=NamespacePaths(host_network=True),
    )
    sys_mounts = _lines(out, "SYS ")
    assert len(sys_mounts) > 1, out  # the host's submounts came along
    assert all(line.split()[1].split(",")[0] == "ro" for line in sys_mounts), out


def scenario_seccomp(scratch: str, tar: str) -> None:
    box = Box(scratch, tar)
    # unshare(CLONE_NEWUSER) needs no capability, so only the profile stops it.
    script = "unshare -U true && echo ALLOWED"
    code, out = box.run("default", script)
    assert code != 0 and "Operation not permitted" in out and "ALLOWED" not in out, out

    req = SpecRequest(image_config={"Cmd": ["sh", "-c", script]})
    spec = build_spec(req, box.rootfs)
    del spec["linux"]["seccomp"]
    code, out = box.run_spec("unfiltered", spec)
    assert code == 0 and "ALLOWED" in out, out

    # With CAP_SYS_ADMIN the profile lets it through, as Docker's does.
    assert "ALLOWED" in box.ok("admin", script, cap_add=["SYS_ADMIN"])


def scenario_pod_namespaces(scratch: str, tar: str) -> None:
    box = Box(scratch, tar)
    pod = box.base / "pod"
    ns = pin_namespaces(pod, "pod-host")
    assert str(pod / "net") in Path("/proc/self/mountinfo").read_text()
    try:
        results: dict[str, tuple[int, str]] = {}

        def server() -> None:
            # -e: busybox nc reading an empty stdin may quit before the data arrives.
            script = "hostname; nc -l -p 8080 -e sh -c 'read line; echo \"$line\" >&2'"
            results["srv"] = box.run("srv", script, namespaces=ns)

        thread = threading.Thread(target=server)
        thread.start()
        client = (
            "hostname; for i in $(seq 100); do "
            "echo over-loopback | nc 127.0.0.1 8080 2>/dev/null && exit 0; sleep 0.05; done; exit 1"
        )
        code, out = box.run("cli", client, hostname="ignored-when-joined", namespaces=ns)
        thread.join(timeout=20)
        assert code == 0, out
        assert out.split() == ["pod-host"], out
        srv_code, srv_out = results["srv"]
        assert srv_code == 0 and srv_out.split() == ["pod-host", "over-loopback"], srv_out

        own = NamespacePaths(network=ns.network, ipc=ns.ipc)  # private uts
        assert box.ok("own", "hostname", hostname="own-name", namespaces=own).split() == [
            "own-name"
        ]
        # ... and the pod's name is untouched by it.
        assert box.ok("again", "hostname", namespaces=ns).split() == ["pod-host"]
    finally:
        unpin_namespaces(pod)
    unpin_namespaces(pod)
    assert not pod.exists()
    assert str(pod) not in Path("/proc/self/mountinfo").read_text()


# --- tests ------------------------------------------------------------------------------


def test_user_groups_env_cwd_caps_limits_and_exec(tmp_path: Path, rootfs_tar: Path) -> None:
    run_scenario(__file__, "scenario_process", str(tmp_path), str(rootfs_tar))


def test_mounts_readonly_masks_and_etc_files(tmp_path: Path, rootfs_tar: Path) -> None:
    run_scenario(__file__, "scenario_filesystem", str(tmp_path), str(rootfs_tar))


def test_seccomp_profile_blocks_what_it_denies(tmp_path: Path, rootfs_tar: Path) -> None:
    run_scenario(__file__, "scenario_seccomp", str(tmp_path), str(rootfs_tar))


def test_pinned_pod_namespaces_are_shared(tmp_path: Path, rootfs_tar: Path) -> None:
    run_scenario(__file__, "scenario_pod_namespaces", str(tmp_path), str(rootfs_tar))

"""Resource limits through runtimectl on a delegated cgroup v1 subtree (deploy/cgroups.sh):
each flag read back from the container's own cgroup files and from what the container
can do; update, pause, the OOM killer, and cgroups gone after rm (also after kill -9)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.support.containers import inspect
from tests.support.daemon import Daemon

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def image(daemon: Daemon) -> str:
    return daemon.import_busybox("bb:cgroups")


def cgroup_dirs(pid: int) -> dict[str, Path]:
    """The cgroup directory of process `pid` in every v1 controller we delegate."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(","):
            mount = Path("/sys/fs/cgroup") / name
            if name and mount.is_dir():
                out[name] = mount / path.lstrip("/")
    return out


def read(directory: Path, name: str) -> str:
    return (directory / name).read_text().strip()


def running_dirs(daemon: Daemon, name: str) -> dict[str, Path]:
    pid = inspect(daemon, name)["State"]["Pid"]
    assert pid > 0
    return cgroup_dirs(pid)


def test_info_names_the_cgroups(daemon: Daemon) -> None:
    out = daemon.ok("info").stdout
    assert " Cgroup Driver: cgroupfs" in out
    assert " Cgroup Version: 1" in out
    controllers = re.search(r"Cgroup Controllers: (.*)", out).group(1).split()
    assert {"cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio"} <= set(controllers)


def test_limits_reach_the_cgroup_files(daemon: Daemon, image: str, cleanup: list[str]) -> None:
    cleanup.append("limits")
    daemon.ok(
        "run", "-d", "--name", "limits",
        "-m", "64m", "--memory-reservation", "32m", "--memory-swap", "96m",
        "--cpus", "0.5", "-c", "512", "--cpuset-cpus", "0", "--cpuset-mems", "0",
        "--pids-limit", "50", "--oom-kill-disable",
        image, "sleep", "600",
    )  # fmt: skip
    dirs = running_dirs(daemon, "limits")
    memory, cpu = dirs["memory"], dirs["cpu"]
    # Below the delegated subtree, in a directory named after the container.
    container_id = inspect(daemon, "limits")["Id"]
    assert memory.name == container_id and f"runtimed-{os.environ['USER']}" in str(memory)
    assert read(memory, "memory.limit_in_bytes") == str(64 * MiB)
    assert read(memory, "memory.memsw.limit_in_bytes") == str(96 * MiB)
    assert read(memory, "memory.soft_limit_in_bytes") == str(32 * MiB)
    assert "oom_kill_disable 1" in read(memory, "memory.oom_control")
    assert read(cpu, "cpu.cfs_quota_us") == "50000"
    assert read(cpu, "cpu.cfs_period_us") == "100000"
    assert read(cpu, "cpu.shares") == "512"
    assert read(dirs["cpuset"], "cpuset.cpus") == "0"
    assert read(dirs["pids"], "pids.max") == "50"
    # The shell's own tasks: what the container's processes see of their cgroups.
    inside = daemon.ok("exec", "limits", "cat", "/proc/self/cgroup").stdout
    assert f"memory:{str(memory).split('/sys/fs/cgroup/memory', 1)[1]}" in inside

    host = inspect(daemon, "limits")["HostConfig"]
    assert host["Memory"] == 64 * MiB and host["MemorySwap"] == 96 * MiB
    assert host["MemoryReservation"] == 32 * MiB and host["OomKillDisable"] is True
    assert host["NanoCpus"] == 500_000_000 and host["CpuShares"] == 512
    assert host["CpusetCpus"] == "0" and host["CpusetMems"] == "0"
    assert host["PidsLimit"] == 50


def test_memory_swap_defaults_to_twice_the_memory(
    daemon: Daemon, image: str, cleanup: list[str]
) -> None:
    cleanup.append("swapdefault")
    daemon.ok("run", "-d", "--name", "swapdefault", "-m", "32m", image, "sleep", "600")
    memory = running_dirs(daemon, "swapdefault")["memory"]
    assert read(memory, "memory.memsw.limit_in_bytes") == str(64 * MiB)
    assert inspect(daemon, "swapdefault")["HostConfig"]["MemorySwap"] == 64 * MiB


def test_ulimit_and_shm_size_inside(daemon: Daemon, image: str) -> None:
    out = daemon.ok(
        "run", "--rm", "--ulimit", "nofile=1024:2048", "--ulimit", "core=0",
        "--shm-size", "16m", image,
        "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c; df -k /dev/shm | tail -1",
    ).stdout.split("\n")  # fmt: skip
    assert out[:3] == ["1024", "2048", "0"]
    assert out[3].split()[1] == "16384"


def test_ulimit_above_the_daemons_own_hard_limit_is_refused(daemon: Daemon, image: str) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    result = daemon.ctl("run", "--rm", "--ulimit", f"nofile={hard + 1}", image, "true")
    assert result.returncode == 125
    assert f"above this daemon's own hard limit ({hard})" in result.stderr


def test_pids_limit_refuses_fork(daemon: Daemon, image: str) -> None:
    result = daemon.ctl(
        "run", "--rm", "--pids-limit", "4", image,
        "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 30 & done; echo started",
    )  # fmt: skip
    assert "can't fork" in result.stderr


def test_oom_kill_is_137_and_oomkilled(daemon: Daemon, image: str, cleanup: list[str]) -> None:
    cleanup.append("hog")
    # dd's 300 MB buffer, filled from /dev/zero, under a 200 MB limit (no swap here).
    result = daemon.ctl(
        "run", "--name", "hog", "--memory", "200m", image,
        "dd", "if=/dev/zero", "of=/dev/null", "bs=300M", "count=1",
    )  # fmt: skip
    assert result.returncode == 137
    state = inspect(daemon, "hog")["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137
    ps = daemon.ok("ps", "-a", "--filter", "name=hog").stdout
    assert "Exited (137)" in ps


def test_update_changes_a_running_container(daemon: Daemon, image: str, cleanup: list[str]) -> None:
    cleanup.append("upd")
    daemon.ok("run", "-d", "--name", "upd", "-m", "64m", image, "sleep", "600")
    dirs = running_dirs(daemon, "upd")
    result = daemon.ok(
        "update", "-m", "100m", "--memory-swap", "200m", "--cpus", "1.5", "--pids-limit", "20",
        "-c", "300", "upd",
    )  # fmt: skip
    assert result.stdout == "upd\n"
    assert read(dirs["memory"], "memory.limit_in_bytes") == str(100 * MiB)
    assert read(dirs["memory"], "memory.memsw.limit_in_bytes") == str(200 * MiB)
    assert read(dirs["cpu"], "cpu.cfs_quota_us") == "150000"
    assert read(dirs["cpu"], "cpu.shares") == "300"
    assert read(dirs["pids"], "pids.max") == "20"
    host = inspect(daemon, "upd")["HostConfig"]
    assert host["Memory"] == 100 * MiB and host["NanoCpus"] == 1_500_000_000
    assert host["PidsLimit"] == 20
    # A restart keeps what update stored.
    daemon.ok("restart", "-t", "0", "upd")
    assert read(running_dirs(daemon, "upd")["memory"], "memory.limit_in_bytes") == str(100 * MiB)
    bad = daemon.ctl("update", "-m", "4m", "upd")
    assert bad.returncode == 1 and "Minimum memory limit allowed is 6MB" in bad.stderr


def test_pause_and_unpause_freeze_the_container(
    daemon: Daemon, image: str, cleanup: list[str]
) -> None:
    cleanup.append("frozen")
    daemon.ok("run", "-d", "--name", "frozen", image, "sh", "-c", "while :; do sleep 0.1; done")
    freezer = running_dirs(daemon, "frozen")["freezer"]
    assert daemon.ok("pause", "frozen").stdout == "frozen\n"
    assert read(freezer, "freezer.state") == "FROZEN"
    state = inspect(daemon, "frozen")["State"]
    assert state["Paused"] is True and state["Status"] == "paused"
    assert "(Paused)" in daemon.ok("ps", "--filter", "name=frozen").stdout
    names = ["ps", "--format", "{{.Names}}", "--filter", "name=frozen", "--filter"]
    assert daemon.ok(*names, "status=paused").stdout == "frozen\n"
    assert daemon.ok(*names, "status=running").stdout == ""
    # Its processes cannot run: exec is refused, as docker's is.
    refused = daemon.ctl("exec", "frozen", "true")
    assert refused.returncode == 1, refused
    assert "is paused, unpause the container before exec" in refused.stderr
    again = daemon.ctl("pause", "frozen")
    assert again.returncode == 1 and "is already paused" in again.stderr
    daemon.ok("unpause", "frozen")
    assert read(freezer, "freezer.state") == "THAWED"
    assert inspect(daemon, "frozen")["State"]["Status"] == "running"
    # A paused container still stops (it is thawed for its signal).
    daemon.ok("pause", "frozen")
    daemon.ok("stop", "-t", "1", "frozen")
    assert inspect(daemon, "frozen")["State"]["Status"] == "exited"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-m", "4m"], "Minimum memory limit allowed is 6MB"),
        (["-m", "20x"], "invalid argument \"20x\" for \"-m, --memory\" flag: invalid size: '20x'"),
        (["--cpus", "abc"], 'invalid argument "abc" for "--cpus" flag'),
        (["--cpus", "1", "--cpu-quota", "5000"],
         "Conflicting options: Nano CPUs and CPU Quota cannot both be set"),
        (["-m", "64m", "--memory-swap", "32m"],
         "Minimum memoryswap limit should be larger than memory limit, see usage"),
        (["--cpuset-cpus", "64"], "Requested CPUs are not available - requested 64, available: "),
        (["--cpu-period", "100"], "CPU cfs period can not be less than 1ms (i.e. 1000)"),
        (["--ulimit", "bogus=1"], "invalid ulimit type: bogus"),
        (["--device-write-bps", "/dev/null:1mb"], "/dev/null is not a block device"),
    ],
)  # fmt: skip
def test_bad_values_get_dockers_errors(
    daemon: Daemon, image: str, flags: list[str], message: str
) -> None:
    result = daemon.ctl("run", "--rm", *flags, image, "true")
    assert result.returncode == 125
    assert message in result.stderr
    assert daemon.ok("ps", "-a", "-q").stdout == ""


def test_kernel_memory_is_accepted_with_dockers_warning(daemon: Daemon, image: str) -> None:
    result = daemon.ctl("run", "--rm", "--kernel-memory", "50m", image, "echo", "ran")
    assert result.returncode == 0 and result.stdout == "ran\n"
    assert "WARNING: Specifying a kernel memory limit is deprecated" in result.stderr


def test_cgroup_parent_is_below_the_delegated_subtree(
    daemon: Daemon, image: str, cleanup: list[str]
) -> None:
    cleanup.append("parented")
    daemon.ok("run", "-d", "--name", "parented", "--cgroup-parent", "/team/a", image, "sleep", "60")
    memory = running_dirs(daemon, "parented")["memory"]
    assert memory.parent.name == "a" and memory.parent.parent.name == "team"
    assert inspect(daemon, "parented")["HostConfig"]["CgroupParent"] == "/team/a"
    daemon.ok("rm", "-f", "parented")
    assert not memory.exists() and not memory.parent.exists()  # ours, and empty


def test_cgroups_go_with_the_container(daemon: Daemon, image: str) -> None:
    daemon.ok("run", "-d", "--name", "gone", "-m", "32m", image, "sleep", "600")
    container_id = inspect(daemon, "gone")["Id"]
    ours = [d for d in running_dirs(daemon, "gone").values() if d.name == container_id]
    assert len(ours) >= 7 and all(d.is_dir() for d in ours)
    daemon.ok("rm", "-f", "gone")
    assert not any(d.exists() for d in ours)


def test_cgroups_go_after_a_daemon_kill9_and_restart() -> None:
    with Daemon() as d:
        bb = d.import_busybox("bb:k9")
        d.ok("run", "-d", "--name", "survivor", "-m", "48m", bb, "sleep", "600")
        dirs = running_dirs(d, "survivor")
        ours = [p for p in dirs.values() if p.name == dirs["memory"].name]
        d.kill9()
        d.start()
        # Re-adopted: the limit still holds the running container.
        assert read(dirs["memory"], "memory.limit_in_bytes") == str(48 * MiB)
        d.ok("rm", "-f", "survivor")
        assert not any(p.exists() for p in ours)


def test_cpu_shares_split_one_cpu_one_to_two(
    daemon: Daemon, image: str, cleanup: list[str]
) -> None:
    cleanup += ["light", "heavy"]
    busy = ["sh", "-c", "while :; do :; done"]
    for name, shares in (("light", "512"), ("heavy", "1024")):
        daemon.ok("run", "-d", "--name", name, "--cpuset-cpus", "0", "-c", shares, image, *busy)
    light = running_dirs(daemon, "light")["cpuacct"]
    heavy = running_dirs(daemon, "heavy")["cpuacct"]

    def usage() -> tuple[int, int]:
        return int(read(light, "cpuacct.usage")), int(read(heavy, "cpuacct.usage"))

    time.sleep(0.5)  # both running
    start = usage()
    time.sleep(4)
    end = usage()
    ratio = (end[0] - start[0]) / (end[1] - start[1])
    assert 0.4 <= ratio <= 0.6, ratio  # 1:2 within 20%


def test_device_write_bps_caps_direct_writes(
    daemon: Daemon, image: str, cleanup: list[str]
) -> None:
    """3 MiB written with O_DIRECT at 1 MiB/s cannot take less than 2.4 s (20% under),
    by an exec'd process too (born in the container's cgroups). Only a lower bound: a
    throttle makes writes slower, a busy machine only more so."""
    block = os.environ.get("RUNTIMED_TEST_BLOCK", "")
    # deploy/test.sh (root) makes the loop device and mounts an ext4 on it for us.
    assert block, "RUNTIMED_TEST_BLOCK is unset: run the integration tests with deploy/test.sh"
    device, mount = block.split(":", 1)
    cleanup.append("throttled")
    daemon.ok(
        "run", "-d", "--name", "throttled", "-v", f"{mount}:/blk",
        "--device-write-bps", f"{device}:1mb", image, "sleep", "600",
    )  # fmt: skip
    rdev = os.stat(device).st_rdev
    blkio = running_dirs(daemon, "throttled")["blkio"]
    assert read(blkio, "blkio.throttle.write_bps_device") == (
        f"{os.major(rdev)}:{os.minor(rdev)} {MiB}"
    )
    # Timed inside (busybox's dd prints no rate): /proc/uptime before and after.
    out = daemon.ok(
        "exec", "throttled", "sh", "-c",
        "read a _ </proc/uptime; dd if=/dev/zero of=/blk/f bs=64k count=48 oflag=direct"
        " 2>/dev/null; read b _ </proc/uptime; ls -l /blk/f; rm -f /blk/f; echo $a $b",
    ).stdout.splitlines()  # fmt: skip
    assert str(3 * MiB) in out[0]  # all of it written
    start, end = (float(x) for x in out[-1].split())
    assert end - start >= 2.4, out
    host = inspect(daemon, "throttled")["HostConfig"]
    assert host["BlkioDeviceWriteBps"] == [{"Path": device, "Rate": MiB}]

"""Cgroups without a kernel: Docker's flag syntax and checks, the v1 and v2 writers and
readers on fake cgroupfs trees, delegation detection, the manager's layout and sweep,
and the shim's side (starting crun inside the cgroups, freezing)."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest
from runtimed_shim import cgroups as shim_cgroups

from runtimed.cgroups import hierarchy, units, v1, v2
from runtimed.cgroups.hierarchy import Hierarchy
from runtimed.cgroups.manager import CgroupManager, base_name
from runtimed.cgroups.resources import DeviceLimit, Resources, check, merge_update
from runtimed.cli.client import CliError
from runtimed.cli.resourceflags import add_resource_flags, resources_from_args
from runtimed.errors import FailedPrecondition, InvalidArgument

MiB = 1 << 20

# --- Docker's syntax ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("1024", 1024), ("200m", 200 * MiB), ("1g", 1 << 30), ("1.5g", 3 << 29), ("512KiB", 512 << 10),
     ("6MB", 6 * MiB), ("2 k", 2048)],
)  # fmt: skip
def test_sizes(text: str, size: int) -> None:
    assert units.ram_in_bytes(text) == size


@pytest.mark.parametrize("text", ["", "m", "20x", "-1", "1.2.3g"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        units.ram_in_bytes(text)


def test_cpus_swap_ulimits_and_devices() -> None:
    assert units.nano_cpus("0.5") == 500_000_000 and units.nano_cpus("2") == 2_000_000_000
    with pytest.raises(ValueError, match="too precise"):
        units.nano_cpus("0.0000000001")
    with pytest.raises(ValueError, match="rational number"):
        units.nano_cpus("half")
    assert units.memory_swap_bytes("-1") == -1 and units.memory_swap_bytes("1g") == 1 << 30
    assert units.parse_ulimit("nofile=1024:2048") == ("nofile", 1024, 2048)
    assert units.parse_ulimit("core=-1") == ("core", -1, -1)
    for bad, message in (
        ("nofile", "invalid ulimit argument"),
        ("files=1", "invalid ulimit type: files"),
        ("nofile=1:2:3", "too many limit value arguments"),
        ("nofile=20:10", "soft limit must be less than or equal to hard limit: 20 > 10"),
    ):
        with pytest.raises(ValueError, match=message):
            units.parse_ulimit(bad)
    assert units.parse_bps_device("/dev/sda:1mb") == ("/dev/sda", MiB)
    assert units.parse_iops_device("/dev/sda:300") == ("/dev/sda", 300)
    assert units.parse_weight_device("/dev/sda:200") == ("/dev/sda", 200)
    with pytest.raises(ValueError, match="invalid rate for device: /dev/sda:fast"):
        units.parse_bps_device("/dev/sda:fast")
    with pytest.raises(ValueError, match="invalid weight for device"):
        units.parse_weight_device("/dev/sda:5")
    with pytest.raises(ValueError, match="sda is not an absolute path"):
        units.parse_iops_device("sda:5")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_resource_flags(parser)
    return parser.parse_args(list(argv))


def test_cli_flags_become_the_resources_message() -> None:
    res, pids_set = resources_from_args(
        _args("-m", "200m", "--memory-swap", "-1", "--cpus", "1.5", "-c", "512",
              "--cpuset-cpus", "0-1", "--pids-limit", "-1", "--ulimit", "nofile=10:20",
              "--device-write-bps", "/dev/sda:2mb", "--shm-size", "1g", "--oom-kill-disable",
              "--cgroup-parent", "team")
    )  # fmt: skip
    assert (res.memory, res.memory_swap, res.nano_cpus) == (200 * MiB, -1, 1_500_000_000)
    assert (res.cpu_shares, res.cpuset_cpus, res.pids_limit) == (512, "0-1", -1) and pids_set
    assert [(u.name, u.soft, u.hard) for u in res.ulimits] == [("nofile", 10, 20)]
    assert [(d.path, d.value) for d in res.device_write_bps] == [("/dev/sda", 2 * MiB)]
    assert res.shm_size == 1 << 30 and res.oom_kill_disable and res.cgroup_parent == "team"
    with pytest.raises(CliError) as err:
        resources_from_args(_args("-c", "many"))
    assert err.value.message == (
        'invalid argument "many" for "-c, --cpu-shares" flag: '
        'strconv.ParseInt: parsing "many": invalid syntax'
    )


# --- Docker's checks ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("res", "message"),
    [
        (Resources(memory=5 * MiB), "Minimum memory limit allowed is 6MB"),
        (Resources(memory_swap=100 * MiB), "You should always set the Memory limit"),
        (Resources(memory=64 * MiB, memory_swap=32 * MiB), "Minimum memoryswap limit"),
        (Resources(memory=64 * MiB, memory_reservation=128 * MiB), "memory reservation limit"),
        (Resources(memory_reservation=MiB), "Minimum memory reservation allowed is 6MB"),
        (Resources(nano_cpus=10**9, cpu_period=10_000), "Nano CPUs and CPU Period"),
        (Resources(nano_cpus=3 * 10**9), "Range of CPUs is from 0.01 to 2.00"),
        (Resources(cpu_quota=500), "CPU cfs quota can not be less than 1ms"),
        (Resources(blkio_weight=5), "Range of blkio weight is from 10 to 1000"),
        (Resources(cgroup_parent="../escape"), "invalid cgroup parent"),
    ],
)
def test_checks_refuse_with_dockers_texts(res: Resources, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(res, ncpu=2)


def test_checks_warn_and_normalise() -> None:
    res = Resources(cpu_shares=1, oom_kill_disable=True)
    warnings = check(res, ncpu=2)
    assert res.cpu_shares == 2
    assert any("minimum allowed of 2" in w for w in warnings)
    assert any("OOM killer is disabled" in w for w in warnings)
    assert Resources(memory=64 * MiB).swap_limit() == 128 * MiB
    assert not Resources(ulimits=[("nofile", 1, 2)], shm_size=MiB).limits_cgroups()
    assert Resources(pids_limit=10).limits_cgroups()


def test_update_merges_over_the_stored_limits() -> None:
    current = Resources(memory=64 * MiB, nano_cpus=10**9, pids_limit=30, cpuset_cpus="0")
    merged = merge_update(current, Resources(cpu_quota=20_000, memory=128 * MiB), pids_set=False)
    assert (merged.memory, merged.cpu_quota, merged.nano_cpus) == (128 * MiB, 20_000, 0)
    assert merged.pids_limit == 30 and merged.cpuset_cpus == "0"
    lifted = merge_update(current, Resources(pids_limit=-1), pids_set=True)
    assert lifted.pids_limit == -1
    with pytest.raises(InvalidArgument, match="already set memoryswap limit"):
        merge_update(Resources(memory=64 * MiB, memory_swap=96 * MiB), Resources(memory=200 * MiB),
                     pids_set=False)  # fmt: skip


# --- fake cgroupfs trees --------------------------------------------------------------

V1_FILES = {
    "memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
               "memory.oom_control", "cgroup.procs"],
    "cpu": ["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cgroup.procs"],
    "cpuset": ["cpuset.cpus", "cpuset.mems", "cgroup.procs"],
    "blkio": ["blkio.throttle.write_bps_device", "blkio.throttle.read_iops_device", "cgroup.procs"],
    "pids": ["pids.max", "cgroup.procs"],
}  # fmt: skip


def fake_v1(root: Path, rel: str) -> dict[str, Path]:
    dirs = {}
    for name, names in V1_FILES.items():
        directory = root / name / rel
        directory.mkdir(parents=True, exist_ok=True)
        for file in names:
            (directory / file).touch()
        dirs[name] = directory
    return dirs


def test_v1_writes_limits_in_v1_names(tmp_path: Path) -> None:
    dirs = fake_v1(tmp_path, "c1")
    res = Resources(
        memory=64 * MiB, memory_reservation=32 * MiB, oom_kill_disable=True, nano_cpus=250_000_000,
        cpu_shares=256, cpuset_cpus="1", pids_limit=-1,
        device_write_bps=[DeviceLimit("/dev/loop0", MiB, 7, 0)],
        device_read_iops=[DeviceLimit("/dev/loop0", 50, 7, 0)],
    )  # fmt: skip
    v1.apply(dirs, res)

    def text(name: str, file: str) -> str:
        return (dirs[name] / file).read_text()

    assert text("memory", "memory.limit_in_bytes") == str(64 * MiB)
    assert text("memory", "memory.memsw.limit_in_bytes") == str(128 * MiB)
    assert text("memory", "memory.soft_limit_in_bytes") == str(32 * MiB)
    assert text("memory", "memory.oom_control") == "1"
    assert (
        text("cpu", "cpu.cfs_quota_us") == "25000" and text("cpu", "cpu.cfs_period_us") == "100000"
    )
    assert text("cpu", "cpu.shares") == "256" and text("cpuset", "cpuset.cpus") == "1"
    assert text("pids", "pids.max") == "max"
    assert text("blkio", "blkio.throttle.write_bps_device") == f"7:0 {MiB}"
    assert text("blkio", "blkio.throttle.read_iops_device") == "7:0 50"


def test_v1_usage_reads_the_counters(tmp_path: Path) -> None:
    dirs = fake_v1(tmp_path, "c1")
    dirs["cpuacct"] = tmp_path / "cpuacct" / "c1"
    dirs["cpuacct"].mkdir(parents=True)
    (dirs["cpuacct"] / "cpuacct.usage").write_text("123456789\n")
    (dirs["memory"] / "memory.usage_in_bytes").write_text(f"{50 * MiB}\n")
    (dirs["memory"] / "memory.limit_in_bytes").write_text(f"{64 * MiB}\n")
    (dirs["memory"] / "memory.stat").write_text(
        f"cache 1\ntotal_inactive_file {10 * MiB}\ntotal_rss {30 * MiB}\ntotal_pgfault 7\n"
        "total_pgmajfault 2\n"
    )
    (dirs["memory"] / "cgroup.procs").write_text("10\n11\n")
    (dirs["pids"] / "pids.current").write_text("3\n")
    (dirs["blkio"] / "blkio.throttle.io_service_bytes_recursive").write_text(
        "7:0 Read 100\n7:0 Write 4096\n7:0 Total 4196\nTotal 4196\n"
    )
    usage = v1.usage(dirs)
    assert usage is not None
    assert (usage.cpu_ns, usage.memory_usage, usage.working_set) == (123456789, 50 * MiB, 40 * MiB)
    assert (usage.rss, usage.page_faults, usage.major_page_faults) == (30 * MiB, 7, 2)
    assert (usage.memory_limit, usage.processes, usage.pids) == (64 * MiB, 2, 3)
    assert (usage.blkio_read, usage.blkio_write) == (100, 4096)
    (dirs["memory"] / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert v1.usage(dirs).memory_limit is None  # type: ignore[union-attr]


def test_v1_detection_from_the_delegation_file(tmp_path: Path) -> None:
    mounts = hierarchy.v1_mounts(
        "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    )
    assert mounts == {
        "memory": Path("/sys/fs/cgroup/memory"),
        "cpu": Path("/sys/fs/cgroup/cpu,cpuacct"),
        "cpuacct": Path("/sys/fs/cgroup/cpu,cpuacct"),
    }
    own = hierarchy.own_cgroups("4:memory:/job/1\n2:cpu,cpuacct:/\n0::/\n")
    assert own == {"memory": "/job/1", "cpu": "/", "cpuacct": "/", "": "/"}
    for name in ("memory", "cpu", "pids"):
        (tmp_path / name / "runtimed-u").mkdir(parents=True)
        (tmp_path / name / "runtimed-u" / "cgroup.procs").touch()
    listing = tmp_path / "u"
    listing.write_text(
        "# made by deploy/cgroups.sh\n"
        + "".join(f"{n} {tmp_path / n / 'runtimed-u'}\n" for n in ("memory", "cpu", "pids"))
    )
    found = hierarchy.detect_v1("u", delegation_file=listing, own={}, mounts={})
    assert found.usable and found.controllers == ["cpu", "memory", "pids"]
    none = hierarchy.detect_v1("u", delegation_file=tmp_path / "missing", own={}, mounts={})
    assert not none.usable and "deploy/cgroups.sh delegate USER" in none.reason
    # Without the file: <own cgroup>/runtimed-USER where it is writable.
    probed = hierarchy.detect_v1(
        "u",
        delegation_file=tmp_path / "missing",
        own={"memory": "/", "cpu": "/"},
        mounts={"memory": tmp_path / "memory", "cpu": tmp_path / "cpu"},
    )
    assert probed.roots == {"memory": tmp_path / "memory" / "runtimed-u",
                            "cpu": tmp_path / "cpu" / "runtimed-u"}  # fmt: skip


def fake_v2(tmp_path: Path, own: str) -> Path:
    """A unified hierarchy with the user's systemd delegation above our cgroup."""
    mount = tmp_path / "cgroup"
    leaf = mount / own.lstrip("/")
    leaf.mkdir(parents=True)
    delegated = mount / "user.slice/user-1000.slice/user@1000.service"
    for directory in (delegated, leaf):
        for name in ("cgroup.procs", "cgroup.subtree_control"):
            (directory / name).touch()
    (delegated / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    return mount


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Every cgroup file write, by file name (a fake tree keeps no kernel semantics)."""
    seen: dict[str, list[str]] = {}
    real_write = v2.files.write

    def record(path: Path, value: object) -> None:
        seen.setdefault(path.name, []).append(str(value))
        real_write(path, value)

    monkeypatch.setattr(v2.files, "write", record)
    return seen


def test_v2_detects_the_user_service_and_moves_into_a_leaf(
    tmp_path: Path, written: dict[str, list[str]]
) -> None:
    own = "/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope"
    mount = fake_v2(tmp_path, own)
    found = v2.detect(mount, own, 1000)
    delegated = mount / "user.slice/user-1000.slice/user@1000.service"
    assert found.version == 2 and set(found.roots.values()) == {delegated}
    assert found.controllers == ["cpu", "cpuset", "freezer", "io", "memory", "pids"]
    # Someone else's service is not ours: our own cgroup (writable) instead.
    assert set(v2.detect(mount, own, 1001).roots.values()) == {mount / own.lstrip("/")}

    manager = CgroupManager(found, "runtimed")
    (delegated / "runtimed").mkdir()
    (delegated / "runtimed" / "cgroup.subtree_control").touch()
    (delegated / "runtimed" / "daemon").mkdir()
    (delegated / "runtimed" / "daemon" / "cgroup.procs").touch()
    manager.start()
    assert (delegated / "runtimed" / "daemon" / "cgroup.procs").read_text() == str(os.getpid())
    # Controllers on for the children of the delegated root and of runtimed/.
    assert written["cgroup.subtree_control"] == [
        f"+{name}" for name in ("cpu", "cpuset", "memory", "io", "pids") for _ in (1, 2)
    ]
    assert manager.controllers == ["cpu", "cpuset", "freezer", "io", "memory", "pids"]


def test_v2_not_writable_says_how_to_delegate(tmp_path: Path) -> None:
    found = v2.detect(tmp_path / "nothing", "/elsewhere", 1000)
    assert not found.usable and "Delegate=yes" in found.reason
    manager = CgroupManager(found, "runtimed")
    with pytest.raises(FailedPrecondition, match="delegate a cgroup to this user"):
        manager.require("--memory")


V2_FILES = ["memory.max", "memory.swap.max", "memory.low", "cpu.weight", "cpu.max",
            "cpuset.cpus", "cpuset.mems", "io.max", "io.weight", "pids.max", "hugetlb.2MB.max",
            "memory.high", "cgroup.procs", "cgroup.freeze", "cgroup.subtree_control"]  # fmt: skip


def test_v2_writes_limits_in_v2_names(tmp_path: Path, written: dict[str, list[str]]) -> None:
    directory = tmp_path / "c"
    directory.mkdir()
    for name in V2_FILES:
        (directory / name).touch()
    res = Resources(
        memory=64 * MiB, memory_swap=96 * MiB, memory_reservation=16 * MiB, cpu_shares=1024,
        cpu_quota=50_000, cpu_period=100_000, cpuset_cpus="0", pids_limit=12,
        blkio_weight=300,
        device_write_bps=[DeviceLimit("/dev/sda", MiB, 8, 0)],
        device_read_iops=[DeviceLimit("/dev/sda", 40, 8, 0)],
        hugepage_limits={"2MB": 0}, unified={"memory.high": "50000000"},
    )  # fmt: skip
    v2.apply(directory, res, ["cpu", "cpuset", "io", "memory", "pids", "hugetlb"])
    assert written["memory.max"] == [str(64 * MiB)]
    assert written["memory.swap.max"] == [str(32 * MiB)]  # v2 counts swap alone
    assert written["memory.low"] == [str(16 * MiB)]
    assert written["cpu.weight"] == ["39"]  # 1024 shares
    assert written["cpu.max"] == ["50000 100000"]
    assert written["cpuset.cpus"] == ["0"] and written["pids.max"] == ["12"]
    assert written["io.weight"] == ["default 300"]
    assert written["io.max"] == [f"8:0 wbps={MiB} riops=40"]
    assert written["hugetlb.2MB.max"] == ["0"] and written["memory.high"] == ["50000000"]
    assert v2.cpu_weight(2) == 1 and v2.cpu_weight(262144) == 10000
    with pytest.raises(FailedPrecondition, match="not a file name"):
        v2.apply(directory, Resources(unified={"../x": "1"}), [])


def test_v2_usage(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    directory.mkdir()
    (directory / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\n")
    (directory / "memory.current").write_text(f"{20 * MiB}\n")
    (directory / "memory.max").write_text("max\n")
    (directory / "memory.stat").write_text(f"anon {8 * MiB}\ninactive_file {4 * MiB}\npgfault 9\n")
    (directory / "cgroup.procs").write_text("5\n")
    (directory / "io.stat").write_text("8:0 rbytes=10 wbytes=20 rios=1 wios=2\n")
    usage = v2.usage(directory)
    assert usage is not None
    assert (usage.cpu_ns, usage.working_set, usage.rss) == (1_500_000, 16 * MiB, 8 * MiB)
    assert (usage.memory_limit, usage.processes) == (None, 1)
    assert (usage.blkio_read, usage.blkio_write) == (10, 20)


def test_manager_layout_cleanup_and_sweep(tmp_path: Path) -> None:
    roots = {name: tmp_path / name / "deleg" for name in ("memory", "cpu", "freezer")}
    for root in roots.values():
        root.mkdir(parents=True)
    manager = CgroupManager(Hierarchy(1, roots), "runtimed-x")
    assert manager.dirs("pod-1/c1")["cpu"] == tmp_path / "cpu/deleg/runtimed-x/pod-1/c1"
    options = manager.shim_options("c1")
    assert options["cgroup_path"] == str(tmp_path / "memory/deleg/runtimed-x/c1")
    assert options["freezer"] == str(tmp_path / "freezer/deleg/runtimed-x/c1/freezer.state")
    assert len(options["cgroup_procs"]) == 3
    for rel in ("pod-1/c1", "pod-1/c2", "stale"):
        for directory in manager.dirs(rel).values():
            directory.mkdir(parents=True)
    assert manager.remove("pod-1/c1")
    assert (tmp_path / "cpu/deleg/runtimed-x/pod-1").is_dir()  # c2 is still in it
    assert manager.sweep({"pod-1/c2"}) == 3  # the stale one, in three controllers
    assert manager.dirs("pod-1/c2")["memory"].is_dir()
    assert manager.remove("pod-1/c2")
    assert not (tmp_path / "cpu/deleg/runtimed-x/pod-1").exists()  # empty parents go too
    assert (tmp_path / "cpu/deleg/runtimed-x").is_dir()  # the base stays
    assert base_name(Path("/a"), Path("/a")) == "runtimed"
    assert base_name(Path("/b"), Path("/a")).startswith("runtimed-")


# --- the shim's side ------------------------------------------------------------------


def test_shim_starts_commands_inside_the_cgroups(tmp_path: Path) -> None:
    procs = [tmp_path / "a.procs", tmp_path / "b.procs"]
    for p in procs:
        p.touch()
    argv = shim_cgroups.joined(["sh", "-c", "echo $$"], [str(p) for p in procs])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    assert [p.read_text().strip() for p in procs] == [out, out]  # the same process, first
    assert shim_cgroups.joined(["true"], []) == ["true"]
    failed = subprocess.run(
        shim_cgroups.joined(["true"], [str(tmp_path / "missing" / "cgroup.procs")]),
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 125 and "missing" in failed.stderr


def test_shim_freezes_v2_and_reads_state(tmp_path: Path) -> None:
    freeze = tmp_path / "cgroup.freeze"
    freeze.write_text("0")
    shim_cgroups.freeze(str(freeze), True)
    assert freeze.read_text() == "1" and shim_cgroups.frozen(str(freeze))
    shim_cgroups.freeze(str(freeze), False)
    assert not shim_cgroups.frozen(str(freeze))
    assert not shim_cgroups.frozen(str(tmp_path / "absent"))

"""Re-executing the daemon inside a user namespace and a private mount namespace.

The split is RootlessKit's and Podman's: the process the user started (the
parent) stays outside and holds nothing but the state-directory lock; the
child calls unshare(CLONE_NEWUSER | CLONE_NEWNS) while it is still
single-threaded, the parent maps it with newuidmap/newgidmap (the only tools
allowed to grant a subordinate range), and the child then runs the daemon as
root of that namespace. Overlay mounts made by the child live in its private
mount namespace and vanish with it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import getpass
import os
import pwd
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from runtimed.errors import FailedPrecondition, PermissionDenied
from runtimed.rootless import nsenter
from runtimed.rootless.nsenter import CLONE_NEWNS, CLONE_NEWUSER

MS_REC = 0x4000
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1

# Environment variable through which the parent hands the child its pipe ends.
CHILD_ENV = "_RUNTIMED_USERNS_PIPES"
# The process that keeps our namespaces alive between daemon runs (the shim
# launcher: it lives as long as any container might) records its pid here.
HOLDER_PID_FILE = "ns-holder.pid"
HOLDER_MARKER = b"runtimed_shim.launcher"

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


@dataclass(frozen=True)
class IdRange:
    start: int
    count: int


def read_subid_range(path: Path, user: str, uid: int) -> IdRange | None:
    """First range for `user` (by name or numeric id) in an /etc/subuid-style file."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (user, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0:
            return IdRange(start, count)
    return None


def is_rootless() -> bool:
    """True when we are not root of the initial user namespace."""
    try:
        first = Path("/proc/self/uid_map").read_text().split()
    except OSError:
        return os.geteuid() != 0
    # The initial namespace maps 0 -> 0 for the whole 32-bit range.
    return not (first[:3] == ["0", "0", "4294967295"] and os.geteuid() == 0)


def host_uid() -> int:
    """Our uid as the host sees it: the outside id that our uid 0 is mapped to."""
    try:
        for line in Path("/proc/self/uid_map").read_text().splitlines():
            inside, outside, _count = line.split()
            if inside == "0":
                return int(outside)
    except (OSError, ValueError):
        pass
    return os.getuid()


def unreachable_path(path: str, what: str) -> PermissionDenied:
    """The error for a host path the daemon's user may not reach (a root-owned 0750
    directory of a kubelet running as real root, say), in terms a person can act on."""
    uid = host_uid()
    return PermissionDenied(
        f"{what} {path}: permission denied: runtimed runs rootless as uid {uid} and cannot "
        f"reach it; make it accessible to uid {uid}, or run kubelet inside "
        "`runtimectl unshare --rootless-netns` so that the directories it makes are runtimed's"
    )


def current_user() -> tuple[str, int, int]:
    uid, gid = os.getuid(), os.getgid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = getpass.getuser()
    return name, uid, gid


@dataclass(frozen=True)
class Mapping:
    uid: int
    gid: int
    subuid: IdRange
    subgid: IdRange
    newuidmap: str
    newgidmap: str


def plan_mapping(
    subuid_file: Path = Path("/etc/subuid"), subgid_file: Path = Path("/etc/subgid")
) -> Mapping:
    """Check every rootless prerequisite and say how to fix the first one missing."""
    user, uid, gid = current_user()
    newuidmap, newgidmap = shutil.which("newuidmap"), shutil.which("newgidmap")
    if not newuidmap or not newgidmap:
        raise FailedPrecondition(
            "newuidmap/newgidmap not found: install them (Debian: apt-get install uidmap)"
        )
    subuid = read_subid_range(subuid_file, user, uid)
    subgid = read_subid_range(subgid_file, user, uid)
    for kind, found, path in (("uid", subuid, subuid_file), ("gid", subgid, subgid_file)):
        if found is None:
            raise FailedPrecondition(
                f"no subordinate {kind} range for user {user!r} in {path}: "
                f"add one as root, e.g. usermod --add-sub{kind}s 200000-265535 {user}"
            )
    assert subuid is not None and subgid is not None
    return Mapping(uid, gid, subuid, subgid, newuidmap, newgidmap)


def run_parent(mapping: Mapping, argv: list[str], pass_fds: tuple[int, ...] = ()) -> int:
    """Start the daemon child in new namespaces, map it, then wait for it.

    Signals that should stop the daemon are forwarded; the parent exits with
    the child's status.
    """
    to_parent_r, to_parent_w = os.pipe()
    to_child_r, to_child_w = os.pipe()
    env = dict(os.environ, **{CHILD_ENV: f"{to_child_r},{to_parent_w}"})
    child = subprocess.Popen(
        [sys.executable, *argv],
        env=env,
        pass_fds=(to_child_r, to_parent_w, *pass_fds),
    )
    os.close(to_child_r)
    os.close(to_parent_w)
    try:
        ready = os.read(to_parent_r, 1)
        if ready == b"1":  # a fresh namespace: map it
            _write_maps(mapping, child.pid)
            os.write(to_child_w, b"1")
        elif ready != b"J":  # b"J": it joined the existing namespaces, nothing to map
            return child.wait()
    except BaseException:
        child.kill()
        child.wait()
        raise
    finally:
        os.close(to_parent_r)
        os.close(to_child_w)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, forward)
    while True:
        try:
            return child.wait()
        except InterruptedError:
            continue


def _write_maps(mapping: Mapping, pid: int) -> None:
    # Root of the namespace is the user; 1..N come from the subordinate range.
    for tool, own, sub in (
        (mapping.newuidmap, mapping.uid, mapping.subuid),
        (mapping.newgidmap, mapping.gid, mapping.subgid),
    ):
        cmd = [tool, str(pid), "0", str(own), "1", "1", str(sub.start), str(sub.count)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise FailedPrecondition(
                f"{' '.join(cmd)} failed: {result.stderr.strip() or result.returncode}"
            )


def namespace_holder(run_dir: Path) -> int | None:
    """The live process holding our namespaces from an earlier run, if there is one."""
    try:
        pid = int((run_dir / HOLDER_PID_FILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        owner = os.stat(f"/proc/{pid}").st_uid
    except (OSError, ValueError):
        return None
    # A recycled pid would not carry our marker and our run dir, or be someone else's.
    if HOLDER_MARKER not in cmdline or str(run_dir).encode() not in cmdline:
        return None
    return pid if owner == os.getuid() else None


def _setns(pid: int, kind: str, flag: int) -> None:
    nsenter.join_path(f"/proc/{pid}/ns/{kind}", flag, f"the {kind} namespace of pid {pid}")


def become_child(run_dir: Path) -> bool:
    """In the re-executed child: enter the namespaces; False if we are not that child.

    When containers from an earlier run are alive, their namespaces are joined
    (containers, their overlay mounts and our new run see the same world);
    otherwise new ones are made.
    """
    pipes = os.environ.pop(CHILD_ENV, None)
    if not pipes:
        return False
    from_parent, to_parent = (int(fd) for fd in pipes.split(","))
    # Die with the parent: the user's process is the daemon's handle.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    holder = namespace_holder(run_dir)
    if holder is not None:
        try:
            _setns(holder, "user", CLONE_NEWUSER)
            _setns(holder, "mnt", CLONE_NEWNS)
        except FailedPrecondition:
            os.write(to_parent, b"0")
            raise
        os.write(to_parent, b"J")
        os.close(to_parent)
        os.close(from_parent)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        return True
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        os.write(to_parent, b"0")
        raise FailedPrecondition(
            f"cannot create a user namespace: {os.strerror(err)} "
            "(check sysctl user.max_user_namespaces and kernel.unprivileged_userns_clone)"
        )
    os.write(to_parent, b"1")
    os.close(to_parent)
    mapped = os.read(from_parent, 1)
    os.close(from_parent)
    if mapped != b"1":
        raise FailedPrecondition("the parent could not map the user namespace (see its error)")
    # Our own mounts must not propagate back to the host's namespace.
    if _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        err = ctypes.get_errno()
        raise FailedPrecondition(f"cannot make / private in our mount ns: {os.strerror(err)}")
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    return True

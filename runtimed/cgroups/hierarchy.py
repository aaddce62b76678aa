"""Which cgroups this daemon may use: found once at start.

cgroup v1 (these machines; no systemd): root delegates a subtree per controller
once (deploy/cgroups.sh) and lists it in /etc/runtimed/cgroups/USER; without that
file, `<our cgroup>/runtimed-USER` or our own cgroup is used when we may write it.
cgroup v2: the subtree systemd delegates to the user (user@UID.service), or any
cgroup we start in that we may write (see v2.py for the daemon's own leaf).
No writable cgroup: nothing is limited, and resource requests are refused with
`reason`, which says how to delegate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
DELEGATION_DIR = Path("/etc/runtimed/cgroups")
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "blkio", "pids", "freezer", "hugetlb")
HOW_TO_DELEGATE = (
    "delegate a cgroup to this user once, as root: `deploy/cgroups.sh delegate USER` "
    "(cgroup v1), or run runtimed in a systemd user session with Delegate=yes (cgroup v2)"
)


@dataclass(frozen=True)
class Hierarchy:
    """Delegated directories by controller (v2: every controller names the same one)."""

    version: int  # 1 or 2
    roots: dict[str, Path] = field(default_factory=dict)
    reason: str = ""  # why nothing is usable, and how to fix it

    driver = "cgroupfs"  # no systemd here: runtimed manages the files itself

    @property
    def usable(self) -> bool:
        return bool(self.roots)

    @property
    def controllers(self) -> list[str]:
        return sorted(self.roots)


def cgroup_version(root: Path = CGROUP_ROOT) -> int:
    """2 on a unified hierarchy; 1 on v1 and hybrid layouts (v2 holds no controller we use)."""
    return 2 if (root / "cgroup.controllers").exists() else 1


def own_cgroups(text: str) -> dict[str, str]:
    """/proc/self/cgroup as {controller: path}; the v2 entry is under ""."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            out[name] = path
    return out


def v1_mounts(mountinfo: str) -> dict[str, Path]:
    """Mount points of the v1 hierarchies, by controller (co-mounted ones share one)."""
    out: dict[str, Path] = {}
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(rest) < 3 or rest[0] != "cgroup":
            continue
        for option in rest[2].split(","):
            if option in V1_CONTROLLERS:
                out.setdefault(option, Path(fields[4]))
    return out


def writable(path: Path) -> bool:
    """A cgroup we may make children in and move processes into."""
    return os.access(path, os.W_OK | os.X_OK) and os.access(path / "cgroup.procs", os.W_OK)


def read_delegation(path: Path) -> dict[str, Path]:
    """`controller directory` lines (deploy/cgroups.sh writes them); absent file: {}."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    out: dict[str, Path] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, directory = line.partition(" ")
        out[name] = Path(directory.strip())
    return out


def detect_v1(
    user: str,
    *,
    delegation_file: Path,
    own: dict[str, str],
    mounts: dict[str, Path],
) -> Hierarchy:
    listed = read_delegation(delegation_file)
    roots: dict[str, Path] = {}
    for name in V1_CONTROLLERS:
        candidates = [listed[name]] if name in listed else []
        if name in mounts and name in own:
            base = mounts[name] / own[name].lstrip("/")
            candidates += [base / f"runtimed-{user}", base]
        found = next((c for c in candidates if c.is_dir() and writable(c)), None)
        if found is not None:
            roots[name] = found
    if "memory" not in roots or "cpu" not in roots:
        # Half a set is a trap (limits that silently do not apply): use none.
        return Hierarchy(1, {}, f"no cgroup v1 subtree is delegated to {user}: {HOW_TO_DELEGATE}")
    return Hierarchy(1, roots)


def detect(user: str, uid: int, *, delegation_dir: Path = DELEGATION_DIR) -> Hierarchy:
    """What this process may use, on this machine (`uid`: ours as the host sees it)."""
    from runtimed.cgroups import v2

    try:
        own = own_cgroups(Path("/proc/self/cgroup").read_text())
    except OSError:
        own = {}
    if cgroup_version() == 2:
        return v2.detect(CGROUP_ROOT, own.get("", "/"), uid)
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        mountinfo = ""
    return detect_v1(
        user, delegation_file=delegation_dir / user, own=own, mounts=v1_mounts(mountinfo)
    )

"""One cgroup per container, below the delegated subtree, made and removed by us.

Layout, in every controller's delegated directory (v2: the one directory):

    <delegated>/<base>/[<parent>/]<container id>

`<base>` is `runtimed` (or `runtimed-<hash of the data dir>` for a daemon on another
data dir, so two daemons of one user never sweep each other's), `<parent>` a pod's
directory (`pod-<sandbox id>`), or Docker's `--cgroup-parent` / the CRI's
`cgroup_parent`, always relative to `<base>`. crun runs with its cgroup manager
disabled: a single `linux.cgroupsPath` cannot name v1 directories that sit at
different depths per controller (on these hosts memory is below the workplace's
cgroup, the others at the root). Instead the shim starts `crun create` and
`crun exec` inside the container's cgroups (see runtimed_shim.cgroups), so the
container's processes are born there, and freezes through the freezer files.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import structlog

from runtimed.cgroups import files, v1, v2
from runtimed.cgroups.hierarchy import Hierarchy
from runtimed.cgroups.resources import Resources
from runtimed.cgroups.usage import Usage
from runtimed.errors import FailedPrecondition

log = structlog.get_logger(__name__)


def base_name(data_dir: Path, default_data_dir: Path) -> str:
    if data_dir == default_data_dir:
        return "runtimed"
    return "runtimed-" + hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]


class CgroupManager:
    def __init__(self, hierarchy: Hierarchy, base: str) -> None:
        self.hierarchy = hierarchy
        self.base = base

    # -- what we have ----------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.hierarchy.usable

    @property
    def version(self) -> int:
        return self.hierarchy.version

    @property
    def controllers(self) -> list[str]:
        return self.hierarchy.controllers

    def require(self, what: str) -> None:
        if not self.usable:
            raise FailedPrecondition(f"{what} needs cgroups, and {self.hierarchy.reason}")

    def start(self) -> None:
        """v2: the daemon into its leaf, controllers on (see v2.py). v1 needs nothing."""
        if self.version != 2 or not self.usable:
            return
        root = next(iter(self.hierarchy.roots.values()))
        try:
            v2.enter_leaf(root, self.base, os.getpid())
        except (OSError, FailedPrecondition) as exc:
            log.warning("cgroup_leaf_failed", error=str(exc))
        self.hierarchy = v2.enable_controllers(self.hierarchy, self.base)

    def dirs(self, rel: str) -> dict[str, Path]:
        """The container's (or pod's) directory in every controller."""
        return {name: root / self.base / rel for name, root in self.hierarchy.roots.items()}

    # -- lifecycle -------------------------------------------------------------

    def create(self, rel: str, res: Resources) -> dict[str, Path]:
        """Make the directories (and the parents between) and write the limits."""
        self.require("a container cgroup")
        dirs = self.dirs(rel)
        for name, directory in dirs.items():
            top = self.hierarchy.roots[name]
            made = _mkdirs(directory, top)
            if self.version == 1 and name == "cpuset":
                for level in made:
                    v1.init_cpuset(level)
        if self.version == 2:
            directory = next(iter(dirs.values()))
            v2.enable_below(directory, next(iter(self.hierarchy.roots.values())) / self.base,
                            self.controllers)  # fmt: skip
        self.apply(rel, res)
        return dirs

    def apply(self, rel: str, res: Resources) -> None:
        dirs = self.dirs(rel)
        if self.version == 1:
            if res.unified:
                raise FailedPrecondition(
                    "unified (cgroup v2) resources were given, and this host's cgroups are v1"
                )
            v1.apply(dirs, res)
        else:
            v2.apply(next(iter(dirs.values())), res, self.controllers)

    def remove(self, rel: str) -> bool:
        """rmdir the directory and the parents it leaves empty (up to <base>); False
        when a process still holds it."""
        gone = True
        for name, directory in self.dirs(rel).items():
            stop = self.hierarchy.roots[name] / self.base
            if not _rmdir(directory):
                gone = False
                continue
            parent = directory.parent
            while parent != stop and stop in parent.parents and _rmdir(parent):
                parent = parent.parent
        return gone

    def sweep(self, keep: set[str]) -> int:
        """At start: remove what a crash left (directories no known container owns and no
        process holds), deepest first; keeps the parents of what is kept."""
        removed = 0
        kept_parents = {str(Path(k).parent) for k in keep} | keep
        for root in {r / self.base for r in self.hierarchy.roots.values()}:
            if not root.is_dir():
                continue
            for directory, _subdirs, _ in os.walk(root, topdown=False):
                path = Path(directory)
                rel = str(path.relative_to(root))
                if path == root or rel == v2.DAEMON_LEAF or rel in kept_parents:
                    continue
                if any(k.startswith(rel + "/") for k in keep):
                    continue
                if _rmdir(path):
                    removed += 1
        return removed

    # -- running containers ----------------------------------------------------

    def shim_options(self, rel: str) -> dict[str, Any]:
        """What the shim needs: where to start crun, OOM counters, the freezer."""
        dirs = self.dirs(rel)
        procs = sorted({str(d / "cgroup.procs") for d in dirs.values()})
        memory = dirs.get("memory")
        freezer = dirs.get("freezer")
        make = v1.freezer_file if self.version == 1 else v2.freezer_file
        return {
            "cgroup_procs": procs,
            "cgroup_path": str(memory) if memory else None,
            "freezer": str(make(freezer)) if freezer else None,
        }

    def usage(self, rel: str) -> Usage | None:
        dirs = self.dirs(rel)
        if self.version == 1:
            return v1.usage(dirs)
        return v2.usage(next(iter(dirs.values())))

    def blkio_weight_supported(self) -> bool:
        """Whether an I/O scheduler here weighs cgroups (neither CFQ nor BFQ: no)."""
        if self.version == 1:
            root = self.hierarchy.roots.get("blkio")
            return root is not None and v1.blkio_weight_file(root) is not None
        root = self.hierarchy.roots.get("io")
        return root is not None and (root / "io.weight").exists()

    def parent_value(self, controller: str, name: str) -> str:
        """A value of the delegated directory (e.g. the CPUs a cpuset may take)."""
        root = self.hierarchy.roots.get(controller)
        return (files.read(root / name) or "") if root else ""


def _mkdirs(directory: Path, top: Path) -> list[Path]:
    """mkdir -p below `top`; the directories made, outermost first."""
    made: list[Path] = []
    missing = [directory, *[p for p in directory.parents if top in p.parents]]
    for level in reversed(missing):
        try:
            level.mkdir()
            made.append(level)
        except FileExistsError:
            continue
        except OSError as exc:
            raise FailedPrecondition(f"cannot make cgroup {level}: {exc.strerror or exc}") from None
    return made


def _rmdir(directory: Path) -> bool:
    try:
        directory.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True

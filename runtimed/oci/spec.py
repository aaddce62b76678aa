"""OCI runtime spec (config.json) generation from an image config and a run request.

Defaults follow Docker's: its capability set, masked and read-only /proc
paths, a seccomp allow-list, /dev on tmpfs with devpts, shm and mqueue. There
is no user namespace entry: the container inherits the daemon's mapping, and
cgroups are not managed here (no cgroupsPath, no resources).
"""

from __future__ import annotations

import copy
import os
import posixpath
import resource
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from runtimed.errors import InvalidArgument
from runtimed.oci.seccomp import default_profile
from runtimed.oci.seccomp_file import profile_to_oci
from runtimed.oci.signals import parse_signal
from runtimed.oci.sysctls import check as check_sysctls
from runtimed.oci.user import ResolvedUser, check_id, resolve_user_full

log = structlog.get_logger(__name__)

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Kernel capability numbers, in order: the index is the bit in CapEff.
# fmt: off
ALL_CAPS = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]

DEFAULT_CAPS = [
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
    "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
]
# fmt: on

MASKED_PATHS = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# Seccomp: our default profile, none at all, or the profile in SpecRequest.seccomp_profile.
SECCOMP_DEFAULT, SECCOMP_UNCONFINED, SECCOMP_PROFILE = "default", "unconfined", "profile"
SECCOMP_MODES = (SECCOMP_DEFAULT, SECCOMP_UNCONFINED, SECCOMP_PROFILE)

PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared")
# fmt: off
RLIMITS = [
    "AS", "CORE", "CPU", "DATA", "FSIZE", "LOCKS", "MEMLOCK", "MSGQUEUE", "NICE", "NOFILE",
    "NPROC", "RSS", "RTPRIO", "RTTIME", "SIGPENDING", "STACK",
]
# fmt: on
RLIM_INFINITY = 2**64 - 1
_MAX_HOSTNAME = 64  # HOST_NAME_MAX


@dataclass
class BindMount:
    source: str
    destination: str
    readonly: bool = False
    propagation: str = "rprivate"  # private|rprivate|slave|rslave|shared|rshared
    type: str = "bind"
    options: tuple[str, ...] = ()


@dataclass
class NamespacePaths:
    """None = a new private namespace; a path = join that namespace."""

    network: str | None = None
    ipc: str | None = None
    uts: str | None = None
    pid: str | None = None
    host_network: bool = False  # no network namespace at all
    # `network` is runtimed's own namespace, shared by host-network pods: not theirs to tune.
    shared_network: bool = False
    host_pid: bool = False  # no pid namespace: the host's, its /proc bind-mounted
    # No IPC namespace: the daemon's, which is the IPC namespace of the user who started
    # it (the daemon makes new user and mount namespaces only). /dev/shm is the host's.
    host_ipc: bool = False


@dataclass
class SpecRequest:
    image_config: dict[str, Any]  # the image config's "config" object (Env, Cmd, ...)
    entrypoint: list[str] | None = None  # override; [] clears the image's
    cmd: list[str] | None = None  # override
    env: list[str] = field(default_factory=list)  # KEY=VALUE, merged over the image's
    working_dir: str = ""  # "" = the image's
    user: str = ""  # "" = the image's; "name", "uid", "uid:gid", "name:group"
    hostname: str = ""
    tty: bool = False
    stdin: bool = False
    readonly_rootfs: bool = False
    mounts: list[BindMount] = field(default_factory=list)
    namespaces: NamespacePaths = field(default_factory=NamespacePaths)
    hostname_file: str = ""  # host paths bind-mounted at /etc/...; "" = none
    hosts_file: str = ""
    resolv_conf: str = ""
    sysctls: dict[str, str] = field(default_factory=dict)
    rlimits: list[tuple[str, int, int]] = field(default_factory=list)  # (name, soft, hard)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    no_new_privileges: bool = True
    stop_signal: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    supplemental_groups: list[int] = field(default_factory=list)  # added to the user's groups
    # True: the user's groups are its gid and supplemental_groups only, not those the
    # image's /etc/group gives it (CRI SupplementalGroupsPolicy Strict).
    groups_strict: bool = False
    # None = our defaults (MASKED_PATHS, READONLY_PATHS); a privileged container has none.
    masked_paths: list[str] | None = None
    readonly_paths: list[str] | None = None
    seccomp: str = SECCOMP_DEFAULT  # one of SECCOMP_MODES
    seccomp_profile: dict[str, Any] | None = None  # the profile document, for SECCOMP_PROFILE
    shm_size: int = 0  # bytes of /dev/shm; 0: 64 MiB (Docker's default)
    oom_score_adj: int | None = None


def build_spec(req: SpecRequest, rootfs: Path) -> dict[str, Any]:
    """The config.json document for `req`, with `rootfs` (absolute) as root.path.

    Raises InvalidArgument for anything the runtime would refuse or that
    makes no sense, before any state changes.
    """
    image = req.image_config or {}
    args = resolve_args(image, req.entrypoint, req.cmd)
    user = resolve_user_full(rootfs, req.user or str(image.get("User") or ""))
    cwd = _working_dir(req.working_dir or str(image.get("WorkingDir") or "") or "/")
    check_hostname(req.hostname)
    if req.stop_signal:
        parse_signal(req.stop_signal)
    ns = req.namespaces
    if ns.host_network and ns.network:
        raise InvalidArgument("host network and a network namespace path are exclusive")
    if ns.host_pid and ns.pid:
        raise InvalidArgument("host pid and a pid namespace path are exclusive")
    if ns.host_ipc and ns.ipc:
        raise InvalidArgument("host IPC and an IPC namespace path are exclusive")

    env = merge_env(_image_env(image), req.env)
    env = _with_defaults(env, hostname=req.hostname, tty=req.tty, home=user.home)
    caps = capabilities(req.cap_add, req.cap_drop, privileged=req.privileged)

    process: dict[str, Any] = {
        "terminal": req.tty,
        "user": _user_json(user, req.supplemental_groups, strict=req.groups_strict),
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        # Our default is on; a privileged container keeps Docker's default (off)
        # so setuid tools such as sudo work in it.
        "noNewPrivileges": req.no_new_privileges and not req.privileged,
    }
    rlimits = _rlimits(req.rlimits)
    if rlimits:
        process["rlimits"] = rlimits
    if req.oom_score_adj is not None:
        process["oomScoreAdj"] = req.oom_score_adj

    linux: dict[str, Any] = {"namespaces": _namespaces(ns)}
    sysctls = check_sysctls(
        req.sysctls, host_network=ns.host_network or ns.shared_network, host_ipc=ns.host_ipc
    )
    if sysctls:
        linux["sysctl"] = sysctls
    if not req.privileged:
        linux["maskedPaths"] = _paths(req.masked_paths, MASKED_PATHS, "masked")
        linux["readonlyPaths"] = _paths(req.readonly_paths, READONLY_PATHS, "read-only")
        seccomp = _seccomp(req, caps)
        if seccomp is not None:
            linux["seccomp"] = seccomp
    propagation = _rootfs_propagation(req.mounts)
    if propagation:
        linux["rootfsPropagation"] = propagation

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": str(rootfs), "readonly": req.readonly_rootfs},
        "mounts": _mounts(req),
        "linux": linux,
    }
    if req.hostname and ns.uts is None:
        spec["hostname"] = req.hostname  # a joined UTS namespace already has its name
    if req.annotations:
        spec["annotations"] = dict(req.annotations)
    return spec


def build_exec_process(
    base_spec: dict[str, Any],
    args: Sequence[str],
    env: Sequence[str],
    user: str,
    working_dir: str,
    tty: bool,
    rootfs: Path,
) -> dict[str, Any]:
    """The OCI process object for `crun exec`: the container's own, with overrides."""
    if not args:
        raise InvalidArgument("no command specified")
    _check_args(args)
    base = base_spec["process"]
    proc = copy.deepcopy(base)
    merged = merge_env(list(base.get("env", [])), env)
    proc["args"] = list(args)
    proc["terminal"] = tty
    proc.pop("consoleSize", None)
    if working_dir:
        proc["cwd"] = _working_dir(working_dir)
    if user:
        resolved = resolve_user_full(rootfs, user)
        proc["user"] = _user_json(resolved)
        if not any(e.startswith("HOME=") for e in env):
            merged = merge_env(merged, [f"HOME={resolved.home}"])
    if tty and not _has(merged, "TERM"):
        merged.append("TERM=xterm")
    proc["env"] = merged
    return proc


def stop_signal(req: SpecRequest) -> int:
    """The signal that asks this container to stop: request, then image, then SIGTERM."""
    name = req.stop_signal or str((req.image_config or {}).get("StopSignal") or "")
    return parse_signal(name) if name else 15


# --- process ---------------------------------------------------------------------


def resolve_args(
    image: dict[str, Any], entrypoint: list[str] | None, cmd: list[str] | None
) -> list[str]:
    """ENTRYPOINT + CMD as Docker and the CRI combine them with their overrides."""
    ep = list(entrypoint) if entrypoint is not None else list(image.get("Entrypoint") or [])
    if cmd is not None:
        args = list(cmd)
    elif entrypoint is not None:
        args = []  # a new entrypoint drops the image's CMD
    else:
        args = list(image.get("Cmd") or [])
    full = ep + args
    if not full:
        raise InvalidArgument("no command specified")
    _check_args(full)
    return full


def _check_args(args: Iterable[str]) -> None:
    for arg in args:
        if "\x00" in arg:
            raise InvalidArgument(f"command argument {arg!r} contains a NUL byte")


def _env_key(entry: str) -> str:
    return entry.partition("=")[0]


def _has(env: list[str], key: str) -> bool:
    return any(_env_key(e) == key for e in env)


def _image_env(image: dict[str, Any]) -> list[str]:
    # An image's own malformed entries are dropped, not fatal: the user cannot fix them.
    return [e for e in (image.get("Env") or []) if isinstance(e, str) and "=" in e and e[0] != "="]


def merge_env(base: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """`base` with each KEY=VALUE of `overrides` replacing the same key in place, or appended."""
    out = list(base)
    index = {_env_key(e): i for i, e in enumerate(out)}
    for entry in overrides:
        key, eq, _ = entry.partition("=")
        if not eq:
            raise InvalidArgument(f"environment variable {entry!r} has no value: use KEY=VALUE")
        if not key:
            raise InvalidArgument(f"environment variable {entry!r} has an empty name")
        if "\x00" in entry:
            raise InvalidArgument(f"environment variable {key!r} contains a NUL byte")
        if key in index:
            out[index[key]] = entry
        else:
            index[key] = len(out)
            out.append(entry)
    return out


def _with_defaults(env: list[str], *, hostname: str, tty: bool, home: str) -> list[str]:
    out = list(env)
    if not _has(out, "PATH"):
        out.insert(0, f"PATH={DEFAULT_PATH}")
    if hostname and not _has(out, "HOSTNAME"):
        out.append(f"HOSTNAME={hostname}")
    if tty and not _has(out, "TERM"):
        out.append("TERM=xterm")
    if not _has(out, "HOME"):
        out.append(f"HOME={home}")
    return out


def _working_dir(path: str) -> str:
    if not path.startswith("/"):
        raise InvalidArgument(f"working directory {path!r} must be an absolute path")
    if "\x00" in path:
        raise InvalidArgument("working directory contains a NUL byte")
    return posixpath.normpath(path).replace("//", "/")


def _user_json(
    user: ResolvedUser, supplemental: Sequence[int] = (), *, strict: bool = False
) -> dict[str, Any]:
    gids = [user.gid] if strict else list(user.additional_gids)
    for gid in supplemental:
        if check_id(gid, "supplemental group") not in gids:
            gids.append(gid)
    return {"uid": user.uid, "gid": user.gid, "additionalGids": gids}


def check_paths(paths: Sequence[str], what: str) -> list[str]:
    """`paths` if each is absolute (masked or read-only paths); InvalidArgument otherwise."""
    for path in paths:
        if not path.startswith("/") or "\x00" in path:
            raise InvalidArgument(f"{what} path {path!r} must be an absolute path")
    return list(paths)


def _paths(given: Sequence[str] | None, defaults: Sequence[str], what: str) -> list[str]:
    # As containerd: paths given replace the defaults; none given keeps them.
    return check_paths(given, what) if given else list(defaults)


def _seccomp(req: SpecRequest, caps: Sequence[str]) -> dict[str, Any] | None:
    if req.seccomp == SECCOMP_DEFAULT:
        return default_profile(caps)
    if req.seccomp == SECCOMP_UNCONFINED:
        return None
    if req.seccomp == SECCOMP_PROFILE and req.seccomp_profile is not None:
        return profile_to_oci(req.seccomp_profile, caps)
    raise InvalidArgument(
        f"seccomp mode {req.seccomp!r} is not one of {', '.join(SECCOMP_MODES)} "
        "(a profile mode needs its profile)"
    )


def check_hostname(name: str) -> None:
    if len(name) > _MAX_HOSTNAME:
        raise InvalidArgument(f"hostname {name[:20]!r}... is longer than {_MAX_HOSTNAME} bytes")
    if any(not (c.isascii() and (c.isalnum() or c in "-._")) for c in name):
        raise InvalidArgument(
            f"invalid hostname {name!r}: use letters, digits, '-', '.' and '_' only"
        )


def _cap_name(name: str) -> str:
    upper = name.strip().upper()
    return upper if upper == "ALL" else upper.removeprefix("CAP_")


def _supported_caps() -> list[str]:
    # Name a capability the kernel lacks and crun refuses to start the container.
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = len(ALL_CAPS) - 1
    return ALL_CAPS[: last + 1]


def capabilities(add: Sequence[str], drop: Sequence[str], *, privileged: bool = False) -> list[str]:
    """The CAP_* list: Docker's default set with `add` and `drop` applied ("ALL" allowed)."""
    adds, drops = [_cap_name(c) for c in add], [_cap_name(c) for c in drop]
    for name in adds + drops:
        if name != "ALL" and name not in ALL_CAPS:
            raise InvalidArgument(f"unknown capability {name!r} (e.g. NET_ADMIN or CAP_NET_ADMIN)")
    supported = _supported_caps()
    if privileged:
        return [f"CAP_{c}" for c in supported]
    caps = list(DEFAULT_CAPS)
    if "ALL" in drops:
        caps = []
    if "ALL" in adds:
        caps = list(supported)
    caps = [c for c in caps if c not in drops]
    caps += [c for c in adds if c != "ALL" and c not in caps]
    order = {name: i for i, name in enumerate(ALL_CAPS)}
    return [f"CAP_{c}" for c in sorted(caps, key=order.__getitem__)]


def _rlimits(limits: Sequence[tuple[str, int, int]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, soft, hard in limits:
        short = name.strip().upper().removeprefix("RLIMIT_")
        if short not in RLIMITS:
            raise InvalidArgument(f"unknown rlimit {name!r} (e.g. nofile or RLIMIT_NOFILE)")
        soft, hard = _rlim_value(soft, name), _rlim_value(hard, name)
        if soft > hard:
            raise InvalidArgument(f"rlimit {name}: soft limit {soft} is above hard limit {hard}")
        soft, hard = _clamp(short, soft, hard)
        out[short] = {"type": f"RLIMIT_{short}", "soft": soft, "hard": hard}
    return list(out.values())


def _rlim_value(value: int, name: str) -> int:
    if value == -1 or value >= RLIM_INFINITY:
        return RLIM_INFINITY
    if value < 0:
        raise InvalidArgument(f"rlimit {name}: {value} is negative (use -1 for unlimited)")
    return value


def _clamp(short: str, soft: int, hard: int) -> tuple[int, int]:
    # Without CAP_SYS_RESOURCE in the initial namespace nothing can go above our
    # own hard limit, and crun would fail the start; give the most we can instead.
    try:
        _, own_hard = resource.getrlimit(getattr(resource, f"RLIMIT_{short}"))
    except (AttributeError, ValueError, OSError):
        return soft, hard
    if own_hard == resource.RLIM_INFINITY or hard <= own_hard:
        return soft, hard
    log.warning("rlimit_clamped", rlimit=short, requested=hard, granted=own_hard)
    return min(soft, own_hard), own_hard


# --- namespaces, sysctls ----------------------------------------------------------


def _namespaces(ns: NamespacePaths) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for kind, path in (("pid", ns.pid), ("ipc", ns.ipc), ("uts", ns.uts)):
        if (kind == "pid" and ns.host_pid) or (kind == "ipc" and ns.host_ipc):
            continue
        out.append({"type": kind, "path": path} if path else {"type": kind})
    out.append({"type": "mount"})
    if not ns.host_network:
        out.append({"type": "network", "path": ns.network} if ns.network else {"type": "network"})
    return out


# --- mounts -----------------------------------------------------------------------


def _default_mounts(
    ns: NamespacePaths, privileged: bool, shm_size: int = 0
) -> list[dict[str, Any]]:
    sys_ro = [] if privileged else ["ro"]
    if ns.host_network:
        # sysfs may only be mounted by the owner of the network namespace; the
        # host's belongs to the initial user namespace, so bind it instead, and
        # read-only all the way down (rro) so the host's cgroup mounts are too.
        sysfs = {
            "destination": "/sys",
            "type": "bind",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", *(["rro"] if sys_ro else [])],
        }
    else:
        sysfs = {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", *sys_ro],
        }
    # A new procfs needs a pid namespace of our own user namespace: the host's pid
    # namespace belongs to the initial one, so its /proc is bound instead (as podman does).
    proc = (
        {"destination": "/proc", "type": "bind", "source": "/proc",
         "options": ["rbind", "nosuid", "noexec", "nodev"]}
        if ns.host_pid
        else {"destination": "/proc", "type": "proc", "source": "proc",
              "options": ["nosuid", "noexec", "nodev"]}
    )  # fmt: skip
    return [
        proc,
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        sysfs,
        *_ipc_mounts(ns, shm_size),
    ]  # fmt: skip


def _ipc_mounts(ns: NamespacePaths, shm_size: int = 0) -> list[dict[str, Any]]:
    if not ns.host_ipc:
        size = f"size={shm_size // 1024}k" if shm_size else "size=65536k"
        return [
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", size]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
        ]  # fmt: skip
    # The host's IPC namespace: its POSIX shared memory is the host's /dev/shm. An
    # mqueue filesystem may only be mounted by the namespace's owner (the initial
    # user namespace), so the host's is bound, when the host has one mounted.
    out = [{"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
            "options": ["rbind", "nosuid", "noexec", "nodev"]}]  # fmt: skip
    if os.path.ismount("/dev/mqueue"):
        out.append({"destination": "/dev/mqueue", "type": "bind", "source": "/dev/mqueue",
                    "options": ["rbind", "nosuid", "noexec", "nodev"]})  # fmt: skip
    return out


def _clean_destination(path: str) -> str:
    if not path.startswith("/"):
        raise InvalidArgument(f"mount destination {path!r} must be an absolute path")
    if "\x00" in path:
        raise InvalidArgument("mount destination contains a NUL byte")
    clean = posixpath.normpath(path).replace("//", "/")
    if clean == "/":
        raise InvalidArgument("mount destination cannot be '/'")
    return clean


def _mount_json(m: BindMount) -> dict[str, Any]:
    dest = _clean_destination(m.destination)
    if m.propagation not in PROPAGATIONS:
        raise InvalidArgument(
            f"mount {dest}: propagation {m.propagation!r} is not one of {', '.join(PROPAGATIONS)}"
        )
    options = list(m.options)
    if m.type == "bind":
        if not m.source.startswith("/"):
            raise InvalidArgument(
                f"mount {dest}: bind source {m.source!r} must be an absolute path"
            )
        if "bind" not in options and "rbind" not in options:
            options.insert(0, "rbind")
        options.append(m.propagation)
    if m.readonly and "ro" not in options:
        options.append("ro")
    return {"destination": dest, "type": m.type, "source": m.source, "options": options}


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _mounts(req: SpecRequest) -> list[dict[str, Any]]:
    user = [_mount_json(m) for m in req.mounts]
    dests = {m["destination"] for m in user}
    etc = [
        BindMount(src, dest, readonly=req.readonly_rootfs)
        for src, dest in (
            (req.hostname_file, "/etc/hostname"),
            (req.hosts_file, "/etc/hosts"),
            (req.resolv_conf, "/etc/resolv.conf"),
        )
        if src and dest not in dests  # the user's own file wins
    ]
    extra = user + [_mount_json(m) for m in etc]
    # Parents before children, so a mount at /a/b is not hidden by one at /a.
    extra.sort(key=lambda m: m["destination"].count("/"))
    defaults = [
        d
        for d in _default_mounts(req.namespaces, req.privileged, req.shm_size)
        if not any(_under(d["destination"], u) for u in dests)
    ]
    return defaults + extra


def _rootfs_propagation(mounts: Sequence[BindMount]) -> str | None:
    # A shared or slave bind only propagates if the root it sits on does too.
    props = {m.propagation for m in mounts if m.type == "bind"}
    if props & {"shared", "rshared"}:
        return "rshared"
    if props & {"slave", "rslave"}:
        return "rslave"
    return None

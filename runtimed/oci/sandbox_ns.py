"""Pod namespaces pinned to files, so a CRI sandbox needs no pause container.

util-linux `unshare --net=FILE --ipc=FILE --uts=FILE` creates the namespaces
and bind-mounts each onto its file; they then live as long as the mount does,
with no process inside. A short Python program run inside them names the host,
brings loopback up and sets the pod's sysctls (/proc/sys shows the namespaces
of the process that opens it), so they hold before any container starts and
for every container that joins. Containers join them through the paths returned.

The files must sit on a mount with private propagation (unshare refuses
otherwise); the daemon's own mount namespace is rprivate. Synchronous on
purpose: the daemon calls these through asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import structlog

from runtimed.errors import FailedPrecondition, Internal
from runtimed.oci.spec import NamespacePaths, check_hostname
from runtimed.oci.sysctls import check as check_sysctls
from runtimed.oci.sysctls import proc_path
from runtimed.oci.sysctls import refusal as sysctl_refusal
from runtimed.snapshots import _mount

log = structlog.get_logger(__name__)

_KINDS = ("net", "ipc", "uts")
_TIMEOUT = 30

_SYSCTL_FAILED = 3  # the exit status of _SETUP when the kernel refused a sysctl

# Runs inside the new namespaces: sethostname(2), SIOCSIFFLAGS IFF_UP on lo, then
# each sysctl; a refused one is reported as {"sysctl", "errno"} on stderr.
_SETUP = """
import fcntl, json, socket, struct, sys
socket.sethostname(sys.argv[1])
if sys.argv[2] == "1":
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))
for name, path, value in json.loads(sys.argv[3]):
    try:
        with open("/proc/sys/" + path, "w") as f:
            f.write(value)
    except OSError as exc:
        print(json.dumps({"sysctl": name, "errno": exc.errno}), file=sys.stderr)
        sys.exit(3)  # _SYSCTL_FAILED
"""


def pin_namespaces(
    dir: Path,
    hostname: str,
    *,
    network: bool = True,
    ipc: bool = True,
    sysctls: dict[str, str] | None = None,
) -> NamespacePaths:
    """New uts, ipc and net namespaces, pinned at dir/uts, dir/ipc, dir/net, with
    `sysctls` set in them; `network` or `ipc` False: the host's is used, none is made.

    A pid namespace cannot be pinned: a pod that shares one gets an infra
    process instead (runtimed_shim.podinfra).
    """
    check_hostname(hostname)
    wanted = check_sysctls(sysctls or {}, host_network=not network, host_ipc=not ipc)
    unshare = shutil.which("unshare")
    if unshare is None:
        raise FailedPrecondition("unshare not found: install util-linux")
    kinds = [k for k in _KINDS if (network or k != "net") and (ipc or k != "ipc")]
    dir.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        (dir / kind).touch(mode=0o600)
    writes = json.dumps([(name, proc_path(name), value) for name, value in wanted.items()])
    cmd = [unshare, *(f"--{k}={dir / k}" for k in kinds)]
    cmd += [sys.executable, "-I", "-c", _SETUP, hostname, "1" if network else "0", writes]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        unpin_namespaces(dir)
        raise Internal(f"could not pin pod namespaces in {dir}: {exc}") from exc
    if proc.returncode != 0:
        unpin_namespaces(dir)
        if proc.returncode == _SYSCTL_FAILED:
            refused = json.loads(proc.stderr.strip().splitlines()[-1])
            name = refused["sysctl"]
            raise sysctl_refusal(name, wanted[name], int(refused["errno"]))
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise Internal(
            f"could not pin pod namespaces in {dir}: {detail[-1] if detail else proc.returncode}"
        )
    log.info(
        "namespaces_pinned",
        dir=str(dir),
        hostname=hostname,
        network=network,
        ipc=ipc,
        sysctls=sorted(wanted),
    )
    return NamespacePaths(
        network=str(dir / "net") if network else None,
        ipc=str(dir / "ipc") if ipc else None,
        uts=str(dir / "uts"),
        pid=None,
        host_network=not network,
        host_ipc=not ipc,
    )


def unpin_namespaces(dir: Path) -> None:
    """Release the pinned namespaces and remove their files (and `dir` if then empty).

    Safe to call again, or on a half-made pin. A namespace still used by a
    running container lives on until that container exits.
    """
    for kind in _KINDS:
        path = dir / kind
        # Peel every mount: a retried pin may have stacked one on another.
        while _mount.is_mounted(path):
            try:
                _mount.umount(path, _mount.MNT_DETACH | _mount.UMOUNT_NOFOLLOW)
            except OSError as exc:
                raise Internal(f"could not release namespace {path}: {exc}") from exc
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with contextlib.suppress(OSError):
        os.rmdir(dir)  # only if empty: the caller may keep other files there
    log.info("namespaces_unpinned", dir=str(dir))

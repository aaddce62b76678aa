"""Which sysctls a container or pod may set, and where they live under /proc/sys.

Only namespaced sysctls are allowed: those of the network namespace (net.*)
and of the IPC namespace (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*),
the same groups kubelet and Docker accept. Anything else would change the
host for everyone. A namespace shared with the host (host network, host IPC)
is the host's, so its sysctls are refused too.

Names use '.' between parts; as in Kubernetes and runc, a name written with
'/' separators may hold a '.' inside a part ("net/ipv4/conf/eth0.100/rp_filter"),
which the dotted form carries as '/' ("net.ipv4.conf.eth0/100.rp_filter").
"""

from __future__ import annotations

import errno
import os

from runtimed.errors import InvalidArgument, PermissionDenied, RuntimedError

_IPC_PREFIXES = ("kernel.shm", "kernel.msg", "fs.mqueue.")


def normalize(name: str) -> str:
    """The dotted form of a sysctl name given with '.' or '/' separators."""
    name = name.strip()
    slash, dot = name.find("/"), name.find(".")
    if slash != -1 and (dot == -1 or slash < dot):
        return name.translate(str.maketrans("/.", "./"))
    return name


def _parts(name: str) -> list[str]:
    parts = [p.replace("/", ".") for p in name.split(".")]
    if len(parts) < 2 or any(p in ("", ".", "..") or "\x00" in p for p in parts):
        raise InvalidArgument(f"invalid sysctl name {name!r}")
    return parts


def proc_path(name: str) -> str:
    """The file of a (normalized) sysctl, relative to /proc/sys."""
    return "/".join(_parts(name))


def is_ipc(name: str) -> bool:
    return name.startswith(_IPC_PREFIXES) or name == "kernel.sem"


def check(sysctls: dict[str, str], *, host_network: bool, host_ipc: bool = False) -> dict[str, str]:
    """`sysctls` with normalized names; InvalidArgument names the first one refused."""
    out = {}
    for raw, value in sysctls.items():
        name = normalize(raw)
        _parts(name)
        if name.startswith("net."):
            if host_network:
                raise InvalidArgument(
                    f"sysctl {name} cannot be set with the host network: it is not namespaced there"
                )
        elif is_ipc(name):
            if host_ipc:
                raise InvalidArgument(
                    f"sysctl {name} cannot be set with the host IPC namespace: it would change "
                    "the host's"
                )
        else:
            raise InvalidArgument(
                f"sysctl {name} is not namespaced and would change the host: allowed are "
                "net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.*"
            )
        if "\n" in value or "\x00" in value:
            raise InvalidArgument(f"sysctl {name}: value {value!r} contains a newline or NUL")
        out[name] = value
    return out


def refusal(name: str, value: str, err: int) -> RuntimedError:
    """The error for the kernel refusing to set `name` to `value` with errno `err`."""
    reason = f"{errno.errorcode.get(err, err)}: {os.strerror(err)}"
    if err == errno.ENOENT:
        return InvalidArgument(f"sysctl {name} does not exist in this kernel")
    if err in (errno.EPERM, errno.EACCES):
        return PermissionDenied(
            f"the kernel refuses to set sysctl {name} from runtimed's user namespace ({reason}): "
            "a rootless runtime can set only what a namespace it owns allows"
        )
    if err == errno.EINVAL:
        return InvalidArgument(
            f"the kernel refused value {value!r} for sysctl {name} ({reason}); in a user "
            "namespace, values naming user or group ids must lie within its mapping"
        )
    return InvalidArgument(f"could not set sysctl {name} to {value!r}: {reason}")

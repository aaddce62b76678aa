"""The network content of a container's /etc/hosts and /etc/resolv.conf.

The files themselves live in DATA/containers/<id>/ (core/hostfiles.py makes
them at create, the spec bind-mounts them); this module rewrites them once
the container's addresses, links and DNS servers are known.
"""

from __future__ import annotations

from pathlib import Path

from runtimed.core.hostfiles import HOSTS_HEADER, resolv_conf
from runtimed.store.atomicfile import write_atomic

HOST_NAMES = ("host.containers.internal", "host.docker.internal")


def hosts(
    hostname: str,
    own_ips: list[str],
    *,
    links: list[tuple[str, list[str]]] = (),  # type: ignore[assignment]
    extra: list[tuple[str, str]] = (),  # type: ignore[assignment]
    host_address: str = "",
) -> str:
    """docker's layout: the header, each --add-host, each link, then our own name."""
    short = hostname.split(".", 1)[0]
    names = hostname if short == hostname else f"{hostname} {short}"
    lines = [HOSTS_HEADER.rstrip("\n")]
    lines += [f"{ip}\t{host}" for host, ip in extra]
    lines += [f"{ip}\t{' '.join(aliases)}" for ip, aliases in links]
    if host_address:
        lines.append(f"{host_address}\t{' '.join(HOST_NAMES)}")
    lines += [f"{ip}\t{names}" for ip in own_ips] or [f"127.0.1.1\t{names}"]
    return "\n".join(lines) + "\n"


def resolv(
    servers: list[str], searches: list[str], options: list[str], *, fallback: str = ""
) -> str:
    """`servers` if given, else the host's usable ones, else the uplink's forwarder."""
    text = resolv_conf(servers or None, searches or None, options or None)
    if "nameserver" not in text and fallback:
        text = resolv_conf([fallback], searches or None, options or None)
    return text


def host_resolv(host_file: Path = Path("/etc/resolv.conf")) -> str:
    """The host's file as it is (host network: its loopback resolvers work there)."""
    try:
        return host_file.read_text()
    except OSError:
        return ""


def write(path: Path, text: str) -> None:
    """Replace `path` whole (a reader never sees half a file), unless it already says
    `text`. No fsync: the files are checked again at every start, so a crash cannot
    leave a stale one in use."""
    data = text.encode()
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, durable=False)

"""The /etc/hostname, /etc/hosts and /etc/resolv.conf each container (or pod) gets."""

from __future__ import annotations

from pathlib import Path

from runtimed.store.atomicfile import write_atomic

HOSTS_HEADER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def resolv_conf(
    servers: list[str] | None = None,
    searches: list[str] | None = None,
    options: list[str] | None = None,
    host_file: Path = Path("/etc/resolv.conf"),
) -> str:
    """The host's resolver settings unless the request gives its own (as Docker does).

    Loopback nameservers of the host are useless inside the container's own
    network namespace, so they are dropped, as Docker drops them.
    """
    host_servers: list[str] = []
    host_search: list[str] = []
    host_options: list[str] = []
    try:
        for line in host_file.read_text().splitlines():
            words = line.split()
            if not words or words[0].startswith(("#", ";")):
                continue
            if words[0] == "nameserver" and len(words) > 1:
                if not words[1].startswith(("127.", "::1")):
                    host_servers.append(words[1])
            elif words[0] == "search":
                host_search = words[1:]
            elif words[0] == "options":
                host_options += words[1:]
    except OSError:
        pass
    lines = [f"nameserver {s}" for s in (servers or host_servers)]
    if searches or host_search:
        lines.append("search " + " ".join(searches or host_search))
    if options or host_options:
        lines.append("options " + " ".join(options or host_options))
    return "\n".join(lines) + "\n"


def write_host_files(
    directory: Path,
    hostname: str,
    *,
    dns_servers: list[str] | None = None,
    dns_searches: list[str] | None = None,
    dns_options: list[str] | None = None,
) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "hostname": directory / "hostname",
        "hosts": directory / "hosts",
        "resolv.conf": directory / "resolv.conf",
    }
    write_atomic(paths["hostname"], f"{hostname}\n".encode())
    short = hostname.split(".", 1)[0]
    names = hostname if short == hostname else f"{hostname} {short}"
    write_atomic(paths["hosts"], (HOSTS_HEADER + f"127.0.1.1\t{names}\n").encode())
    write_atomic(paths["resolv.conf"], resolv_conf(dns_servers, dns_searches, dns_options).encode())
    return paths

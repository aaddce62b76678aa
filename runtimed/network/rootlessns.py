"""The rootless network namespace: one per daemon, with pasta (or slirp4netns) as uplink.

It is pinned at RUN/network/netns in the daemon's mount namespace, which the
shim launcher keeps across daemon restarts; the uplink process's pid and
what it offers (the address that reaches the host, the DNS forwarder) are
kept in RUN/network/uplink.json. A restarted daemon finds both and changes
nothing; a namespace whose uplink died gets a new uplink.

pasta is preferred: it copies the host's address and routes, maps its
gateway address to the host's loopback (that is host.containers.internal),
and forwards DNS sent to 169.254.1.1 to the host's resolver. slirp4netns is
the fallback (or the configured choice): 10.0.2.2 is the host, 10.0.2.3 DNS.
`auto` skips a pasta build known to corrupt connections (see _check_pasta_build).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from runtimed.errors import FailedPrecondition
from runtimed.network import helperproc, links, networks
from runtimed.network.netns import NetnsWorker, is_pinned, unpin
from runtimed.store.atomicfile import write_atomic

log = structlog.get_logger(__name__)

UPLINK_IF = "tap0"
MTU = 65520
PASTA_DNS = "169.254.1.1"
SLIRP_HOST, SLIRP_DNS = "10.0.2.2", "10.0.2.3"
BACKENDS = ("auto", "pasta", "slirp4netns")

_SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    # Bridged frames need not visit the IP hooks; our rules allow them anyway.
    "net/bridge/bridge-nf-call-iptables": "0",
    # As docker does: ping works in containers without CAP_NET_RAW ...
    "net/ipv4/ping_group_range": "0 2147483647",
}


@dataclass
class Uplink:
    backend: str
    pid: int
    host_address: str  # what host.containers.internal resolves to
    dns: str  # a forwarder to the host's resolver, reachable from the namespace
    # TCP to host_address may reach the host's loopback (runtimed.toml host_loopback).
    host_loopback: bool = False


class RootlessNetns:
    def __init__(
        self, run_dir: Path, worker: NetnsWorker, backend: str = "auto", host_loopback: bool = False
    ) -> None:
        if backend not in BACKENDS:
            raise FailedPrecondition(
                f"unknown network backend {backend!r}: use {', '.join(BACKENDS)}"
            )
        self.dir = run_dir / "network"
        self.pin = self.dir / "netns"
        self.info_file = self.dir / "uplink.json"
        self.pasta_pid = self.dir / "pasta.pid"
        self.worker = worker
        self.backend = backend
        self.host_loopback = host_loopback
        self.uplink: Uplink | None = None

    # -- bring up ------------------------------------------------------------------------

    async def ensure(self) -> Uplink:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if is_pinned(self.pin):
            self.worker.home = self.pin
            await self.worker.run(self.worker.go_home)
            uplink = self._load()
            if uplink is not None and helperproc.alive(uplink.pid, str(self.pin)):
                if uplink.host_loopback == self.host_loopback:
                    self.uplink = uplink
                    log.info("rootless_netns_reused", backend=uplink.backend, pid=uplink.pid)
                    return uplink
                # Started with the other host_loopback setting: replaced.
                await asyncio.to_thread(helperproc.stop, uplink.pid, str(self.pin))
            await self.worker.run(links.delete_link, UPLINK_IF)
        else:
            self._stop_stale_uplink()
            await self.worker.run(self._create)
        self.uplink = await self._start_uplink()
        write_atomic(self.info_file, json.dumps(asdict(self.uplink)).encode(), mode=0o600)
        log.info(
            "rootless_netns_ready",
            backend=self.uplink.backend,
            pid=self.uplink.pid,
            host_address=self.uplink.host_address,
        )
        return self.uplink

    def _create(self) -> None:
        """Worker thread: a fresh namespace, pinned; the worker then lives in it."""
        self.worker.pin_new(self.pin)
        self.worker.home = self.pin
        links.loopback_up()
        for key, value in _SYSCTLS.items():
            with contextlib.suppress(OSError):
                Path("/proc/sys", key).write_text(value)
        if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "1":
            raise FailedPrecondition("cannot enable forwarding in the rootless network namespace")

    def _load(self) -> Uplink | None:
        try:
            return Uplink(**json.loads(self.info_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _stop_stale_uplink(self) -> None:
        """An uplink left by an earlier namespace (whose mount namespace is gone)."""
        old = self._load()
        if old is not None:
            helperproc.stop(old.pid, str(self.pin))
        with contextlib.suppress(FileNotFoundError):
            self.info_file.unlink()

    async def _start_uplink(self) -> Uplink:
        errors = []
        order = ["pasta", "slirp4netns"] if self.backend == "auto" else [self.backend]
        for backend in order:
            try:
                if backend == "pasta" and self.backend == "auto":
                    await _check_pasta_build()
                if backend == "pasta":
                    return await self._start_pasta()
                return await self._start_slirp()
            except (helperproc.HelperError, FailedPrecondition, OSError) as exc:
                errors.append(f"{backend}: {exc}")
                log.warning("uplink_failed", backend=backend, error=str(exc))
        raise FailedPrecondition(
            "no network uplink for the rootless network namespace ("
            + "; ".join(errors)
            + "). pasta (package passt) or slirp4netns must be installed and /dev/net/tun "
            "usable by this user (mode 0666; deploy/setup-host.sh sets it)"
        )

    async def _start_pasta(self) -> Uplink:
        pasta = shutil.which("pasta")
        if pasta is None:
            raise FailedPrecondition("pasta not found (Debian: apt-get install passt)")
        with contextlib.suppress(FileNotFoundError):
            self.pasta_pid.unlink()
        argv = [
            pasta, "--config-net", "--netns", str(self.pin), "-I", UPLINK_IF,
            "--mtu", str(MTU), "-t", "none", "-u", "none", "-T", "none", "-U", "none",
            "--dns-forward", PASTA_DNS, "--pid", str(self.pasta_pid), "--quiet",
        ]  # fmt: skip
        if not self.host_loopback:
            argv.append("--no-map-gw")
        proc = await _run(argv)
        pid = helperproc.read_pid(self.pasta_pid)
        if proc[0] != 0 or not pid:
            raise FailedPrecondition(f"pasta failed: {proc[1].strip() or proc[0]}")
        gateway = await self.worker.run(links.default_gateway)
        if not gateway:
            helperproc.stop(pid, str(self.pin))
            raise FailedPrecondition("pasta configured no default route (no host uplink?)")
        return Uplink("pasta", pid, gateway, PASTA_DNS, self.host_loopback)

    async def _start_slirp(self) -> Uplink:
        slirp = shutil.which("slirp4netns")
        if slirp is None:
            raise FailedPrecondition("slirp4netns not found (Debian: apt-get install slirp4netns)")
        # As podman runs it: its own mount namespace and a seccomp filter, since it parses
        # every packet containers send (measured: no clear cost, about 2.6 Gbit/s either way).
        argv = helperproc.python_module("runtimed.network.helperproc") + [
            slirp, "--configure", f"--mtu={MTU}", "--enable-sandbox", "--enable-seccomp",
            "--netns-type=path", "--ready-fd={ready_fd}", str(self.pin), UPLINK_IF,
        ]  # fmt: skip
        if not self.host_loopback:
            argv.insert(-2, "--disable-host-loopback")
        pid = await asyncio.to_thread(helperproc.spawn, argv)
        return Uplink("slirp4netns", pid, SLIRP_HOST, SLIRP_DNS, self.host_loopback)

    async def uplink_routes(self) -> list[str]:
        """The networks the uplink's interface reaches directly (slirp4netns's 10.0.2.0/24,
        the host's own that pasta copies): seen from inside the namespace."""
        if self.uplink is None:
            return []
        # /proc/thread-self: the worker thread's namespace, not the process's.
        return await self.worker.run(networks.host_routes, "/proc/thread-self/net/route", UPLINK_IF)

    # -- tear down -----------------------------------------------------------------------

    async def teardown(self) -> None:
        """Stop the uplink and release the namespace (nothing may be using it)."""
        uplink = self.uplink or self._load()
        if uplink is not None:
            helperproc.stop(uplink.pid, str(self.pin))
        with contextlib.suppress(FileNotFoundError):
            self.info_file.unlink()
        with contextlib.suppress(OSError):
            unpin(self.pin)
        self.uplink = None
        log.info("rootless_netns_released")


async def _check_pasta_build() -> None:
    """Refuse, for `auto`, the pasta snapshot Debian 12 ships (it reports no version).

    Measured with it: after a connection the namespace half-closed first, data
    sent by the host on later connections to the gateway address arrived on the
    wrong connection (replies of one client delivered to another), and the
    host's FIN was lost. Checked again later: 20 of 20 such connections had their
    reply repeated (up to 18 times) and never saw the FIN; slirp4netns, 0 of 200.
    TCP to the host's address no longer crosses the uplink (see portproxy), other
    TCP and UDP still do. `network_backend = "pasta"` still forces pasta.
    """
    pasta = shutil.which("pasta")
    if pasta is None:
        raise FailedPrecondition("pasta not found (Debian: apt-get install passt)")
    code, out = await _run([pasta, "--version"])
    if "unknown version" in out:
        raise FailedPrecondition(
            "this pasta build (no version: Debian 12's 2023 snapshot) mixes up data between "
            "TCP connections to the host; using slirp4netns instead"
        )


async def _run(argv: list[str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(os.environ),
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")

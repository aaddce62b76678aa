"""The daemon's side of the DNS resolver: write its table, start it, wait until it took it.

Every change bumps a generation number; the resolver acknowledges the
generation it serves, and the daemon waits for that before a container
start (or a connect) returns, so a container that starts right after
another one finds its name at once.

The daemon watches the resolver (a pidfd, readable when it exits) and starts
it again at once should it die: every container's lookups go through it.
One that keeps dying is started again after a growing pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import structlog

from runtimed.network import dnsd, helperproc
from runtimed.store.atomicfile import write_atomic

log = structlog.get_logger(__name__)

ACK_TIMEOUT = 5.0
# A resolver that lived this long is started again at once; one that died sooner waits
# RESPAWN_FIRST_DELAY, doubling up to RESPAWN_MAX_DELAY, so a crash loop does not spin.
RESPAWN_HEALTHY_AFTER = 30.0
RESPAWN_FIRST_DELAY = 0.5
RESPAWN_MAX_DELAY = 30.0


class DnsControl:
    def __init__(self, directory: Path, netns: Path) -> None:
        self.dir = directory
        self.netns = netns
        self.config = directory / "dns.json"
        self.ack = directory / "dns.ack"
        self.pid_file = directory / "dnsd.pid"
        self.generation = 0
        with contextlib.suppress(OSError, ValueError):
            self.generation = int(json.loads(self.config.read_text()).get("generation") or 0)
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._watched = 0  # the pid the watcher follows
        self._started_at = 0.0
        self._delay = 0.0

    def _pid(self) -> int:
        pid = helperproc.read_pid(self.pid_file)
        return pid if helperproc.alive(pid, dnsd.MARKER) else 0

    async def update(self, table: dict[str, Any]) -> None:
        async with self._lock:
            self.generation += 1
            table = dict(table, generation=self.generation)
            self.dir.mkdir(parents=True, exist_ok=True)
            # Rewritten at every daemon start: no fsync needed, only a whole-file rename.
            await asyncio.to_thread(
                write_atomic, self.config, json.dumps(table).encode(), mode=0o600, durable=False
            )
            pid = self._pid()
            if pid:
                os.kill(pid, signal.SIGHUP)
                self._watch(pid)
            elif table.get("listen"):
                await self._spawn()
            else:
                return
            await asyncio.to_thread(self._wait_ack, self.generation)

    async def _spawn(self) -> None:
        spec = {
            "netns": str(self.netns),
            "config": str(self.config),
            "ack": str(self.ack),
            "log": str(self.dir / "dnsd.log"),
        }
        argv = helperproc.python_module(dnsd.MARKER) + [json.dumps(spec)]
        pid = await asyncio.to_thread(helperproc.spawn, argv)
        write_atomic(self.pid_file, str(pid).encode(), mode=0o600)
        self._started_at = time.monotonic()
        self._watch(pid)
        log.info("dns_resolver_started", pid=pid)

    def _watch(self, pid: int) -> None:
        if self._watched == pid and self._watcher is not None and not self._watcher.done():
            return
        self.close()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # gone already: the next update starts it
            return
        self._watched = pid
        self._watcher = asyncio.create_task(self._follow(pid, pidfd), name="dnsd-watch")

    async def _follow(self, pid: int, pidfd: int) -> None:
        loop = asyncio.get_running_loop()
        ended = loop.create_future()
        loop.add_reader(pidfd, lambda: ended.done() or ended.set_result(None))
        try:
            await ended
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        self._watched = 0
        lived = time.monotonic() - self._started_at
        self._delay = (
            0.0
            if lived >= RESPAWN_HEALTHY_AFTER or not self._started_at
            else min(max(self._delay * 2, RESPAWN_FIRST_DELAY), RESPAWN_MAX_DELAY)
        )
        log.warning("dns_resolver_died", pid=pid, restart_in=self._delay)
        await asyncio.sleep(self._delay)
        async with self._lock:
            if self._pid() or not self.config.exists():
                return  # started meanwhile, or stopped for good
            try:
                await self._spawn()
            except helperproc.HelperError as exc:
                log.error("dns_resolver_restart_failed", error=str(exc))
                return
            await asyncio.to_thread(self._wait_ack, self.generation)

    def _wait_ack(self, generation: int) -> None:
        deadline = time.monotonic() + ACK_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if int(self.ack.read_text() or 0) >= generation:
                    return
            time.sleep(0.002)
        log.warning("dns_resolver_slow", generation=generation)

    def close(self) -> None:
        """Stop watching (the resolver runs on, for a daemon that comes back)."""
        if self._watcher is not None and self._watcher is not asyncio.current_task():
            self._watcher.cancel()
        self._watcher = None
        self._watched = 0

    async def stop(self) -> None:
        self.close()
        pid = self._pid()
        if pid:
            await asyncio.to_thread(helperproc.stop, pid, dnsd.MARKER)
        for path in (self.config, self.ack, self.pid_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

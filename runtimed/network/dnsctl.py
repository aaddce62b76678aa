"""The daemon's side of the DNS resolver: write its table, start it, wait until it took it.

Every change bumps a generation number; the resolver acknowledges the
generation it serves, and the daemon waits for that before a container
start (or a connect) returns, so a container that starts right after
another one finds its name at once.
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

    def _pid(self) -> int:
        pid = helperproc.read_pid(self.pid_file)
        return pid if helperproc.alive(pid, dnsd.MARKER) else 0

    async def update(self, table: dict[str, Any]) -> None:
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
        log.info("dns_resolver_started", pid=pid)

    def _wait_ack(self, generation: int) -> None:
        deadline = time.monotonic() + ACK_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if int(self.ack.read_text() or 0) >= generation:
                    return
            time.sleep(0.002)
        log.warning("dns_resolver_slow", generation=generation)

    async def stop(self) -> None:
        pid = self._pid()
        if pid:
            await asyncio.to_thread(helperproc.stop, pid, dnsd.MARKER)
        for path in (self.config, self.ack, self.pid_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

"""What every handler of the Docker API shares: the core services and exec instances."""

from __future__ import annotations

from runtimed.core.execs import ExecRegistry
from runtimed.services import Runtime as Services


class Context:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.execs = ExecRegistry(services.containers)

    async def aclose(self) -> None:
        await self.execs.aclose()

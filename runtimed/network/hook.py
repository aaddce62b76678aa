"""The network part's ContainerHook: every container lifecycle step, handed to the service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtimed.core.hooks import ContainerHook

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService, CreateRequest
    from runtimed.core.model import Container
    from runtimed.network.service import NetworkService
    from runtimed.oci.spec import SpecRequest


class NetworkHook(ContainerHook):
    def __init__(self, service: NetworkService) -> None:
        self.service = service

    async def validate(self, request: CreateRequest, image_config: dict[str, Any]) -> None:
        await self.service.validate(request)

    async def created(self, container: Container, request: CreateRequest) -> None:
        await self.service.created(container, request)

    async def before_start(self, container: Container, spec: SpecRequest) -> None:
        await self.service.before_start(container, spec)

    async def before_run(self, container: Container) -> None:
        await self.service.before_run(container)

    async def after_stop(self, container: Container) -> None:
        await self.service.after_stop(container)

    async def before_remove(self, container: Container, *, remove_volumes: bool) -> None:
        await self.service.before_remove(container)

    async def restored(self, container: Container) -> None:
        await self.service.restored(container)


def network_service(containers: ContainerService) -> NetworkService | None:
    """The network service behind a container service (for views that only get the latter)."""
    for hook in containers.hooks:
        if isinstance(hook, NetworkHook):
            return hook.service
    return None

"""Extension points of the container lifecycle, for the parts that decorate a container.

Volumes, networks and logging each attach to containers without the
container service knowing their details: they subclass ContainerHook,
override what they need, and are registered with ContainerService.hooks.
What a part stores per container lives in `container.config.extras[<its key>]`
(set at create time from CreateRequest.extras, JSON-serialisable).

Order: validate -> (record stored) -> created -> [before_start -> (process
created) -> before_run -> (process runs) -> after_start -> ... -> after_stop]*
-> before_remove. A hook that raises in validate/created/before_start/before_run
fails the operation, which is rolled back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtimed.core.containers import CreateRequest
    from runtimed.core.model import Container
    from runtimed.oci.spec import SpecRequest


class ContainerHook:
    """No-op defaults; every method may be overridden."""

    async def validate(self, request: CreateRequest, image_config: dict[str, Any]) -> None:
        """Refuse a bad request before anything is made (InvalidArgument, NotFound, ...)."""

    async def created(self, container: Container, request: CreateRequest) -> None:
        """The record exists; make what the container needs (volumes, IP reservations)."""

    async def before_start(self, container: Container, spec: SpecRequest) -> None:
        """Adjust the spec (mounts, namespaces, env) right before the process is created."""

    def shim_options(self, container: Container) -> dict[str, Any]:
        """Settings for the container's shim (e.g. the cgroups to start crun in)."""
        return {}

    async def before_run(self, container: Container) -> None:
        """The process is created (its namespaces exist) but has not run a thing yet: finish
        what the spec did not need, e.g. work begun in the background by before_start."""

    async def after_start(self, container: Container) -> None:
        """The process runs (container.state.pid is set)."""

    async def after_stop(self, container: Container) -> None:
        """The process has exited (for any reason); release what only a running one needs."""

    async def before_remove(self, container: Container, *, remove_volumes: bool) -> None:
        """The container is going away for good."""

    async def restored(self, container: Container) -> None:
        """At daemon start, for a container found still running."""

"""PushImage of runtimed.v1.Engine: docker push, with its progress streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from runtimed.api.progress_stream import event_fields, stream_progress
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.images.auth import Credential
from runtimed.images.push import ImagePusher, PushResult
from runtimed.images.service import ProgressFn, PullEvent

if TYPE_CHECKING:
    from runtimed.services import Runtime


def request_credential(auth: pb.RegistryAuth | None) -> Credential | None:
    """Credentials a request carries in place of the stored ones (None when it has none)."""
    if auth is None or not (auth.username or auth.identity_token):
        return None
    return Credential(auth.username, auth.password, auth.identity_token or None)


def progress_message(event: PullEvent) -> pb.PushImageProgress:
    return pb.PushImageProgress(**event_fields(event))


def result_message(result: PushResult) -> pb.PushImageProgress:
    tags = [pb.PushedTag(tag=t.tag, digest=t.digest, size=t.size) for t in result.tags]
    return pb.PushImageProgress(result=pb.PushImageResult(repository=result.repository, tags=tags))


class PushRpcs:
    rt: Runtime

    async def PushImage(
        self, request: pb.PushImageRequest, context: Any
    ) -> AsyncIterator[pb.PushImageProgress]:
        pusher = ImagePusher(self.rt.images, self.rt.registry)
        credential = request_credential(request.auth if request.HasField("auth") else None)

        async def work(progress: ProgressFn) -> PushResult:
            return await pusher.push(
                request.reference,
                all_tags=request.all_tags,
                credential=credential,
                progress=progress,
            )

        # docker push stops when its client is interrupted; so does ours.
        async for message in stream_progress(
            work, progress_message, result_message, stop_on_hangup=True
        ):
            yield message

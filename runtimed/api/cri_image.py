"""runtime.v1.ImageService: the kubelet's view of the image store."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from runtimed.api import imageview
from runtimed.errors import InvalidArgument, NotFound
from runtimed.gen.runtime.v1 import api_pb2 as cri
from runtimed.gen.runtime.v1 import api_pb2_grpc
from runtimed.images.auth import Credential
from runtimed.store.metadata import ImageRecord

if TYPE_CHECKING:
    from runtimed.services import Runtime

STREAM_BATCH = 100


def _user_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The image's default user as the CRI wants it: a numeric uid or a name."""
    user = ((config.get("config") or {}).get("User") or "").split(":", 1)[0]
    if not user:
        return {}
    if user.isdigit():
        return {"uid": cri.Int64Value(value=int(user))}
    return {"username": user}


def _credential(auth: cri.AuthConfig) -> Credential | None:
    if auth.identity_token or auth.registry_token:
        return Credential(auth.username, "", auth.identity_token or auth.registry_token)
    if auth.username:
        return Credential(auth.username, auth.password)
    if auth.auth:
        import base64

        user, _, password = base64.b64decode(auth.auth).decode().partition(":")
        return Credential(user, password)
    return None


class CriImageServicer(api_pb2_grpc.ImageServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def _image(self, record: ImageRecord) -> cri.Image:
        config = self.rt.images.config(record)
        return cri.Image(
            id=record.id,
            repo_tags=list(record.tags),
            repo_digests=list(record.digests),
            size=record.size,
            spec=cri.ImageSpec(image=record.id),
            **_user_fields(config),
        )

    def _filtered(self, flt: cri.ImageFilter) -> list[ImageRecord]:
        wanted = flt.image.image if flt.HasField("image") else ""
        if not wanted:
            return self.rt.images.list()
        try:
            return [self.rt.images.resolve(wanted)]
        except NotFound:
            return []

    async def ListImages(
        self, request: cri.ListImagesRequest, context: Any
    ) -> cri.ListImagesResponse:
        return cri.ListImagesResponse(
            images=[self._image(r) for r in self._filtered(request.filter)]
        )

    async def StreamImages(
        self, request: cri.StreamImagesRequest, context: Any
    ) -> AsyncIterator[cri.StreamImagesResponse]:
        records = self._filtered(request.filter)
        for start in range(0, len(records), STREAM_BATCH):
            batch = records[start : start + STREAM_BATCH]
            yield cri.StreamImagesResponse(images=[self._image(r) for r in batch])

    async def ImageStatus(
        self, request: cri.ImageStatusRequest, context: Any
    ) -> cri.ImageStatusResponse:
        if not request.image.image:
            raise InvalidArgument("ImageStatus: image is required")
        try:
            record = self.rt.images.resolve(request.image.image)
        except NotFound:
            return cri.ImageStatusResponse()  # absent image: empty response, not an error
        info = {}
        if request.verbose:
            info["info"] = json.dumps(imageview.inspect(self.rt.images, record))
        return cri.ImageStatusResponse(image=self._image(record), info=info)

    async def PullImage(self, request: cri.PullImageRequest, context: Any) -> cri.PullImageResponse:
        if not request.image.image:
            raise InvalidArgument("PullImage: image is required")
        credential = _credential(request.auth) if request.HasField("auth") else None
        result = await self.rt.images.pull(request.image.image, credential=credential)
        return cri.PullImageResponse(image_ref=result.image_id)

    async def RemoveImage(
        self, request: cri.RemoveImageRequest, context: Any
    ) -> cri.RemoveImageResponse:
        if not request.image.image:
            raise InvalidArgument("RemoveImage: image is required")
        await self.rt.images.remove_everywhere(request.image.image)
        return cri.RemoveImageResponse()

    async def ImageFsInfo(
        self, request: cri.ImageFsInfoRequest, context: Any
    ) -> cri.ImageFsInfoResponse:
        used, inodes = self.rt.images.fs_usage()
        usage = cri.FilesystemUsage(
            timestamp=time.time_ns(),
            fs_id=cri.FilesystemIdentifier(mountpoint=str(self.rt.config.data_dir)),
            used_bytes=cri.UInt64Value(value=used),
            inodes_used=cri.UInt64Value(value=inodes),
        )
        return cri.ImageFsInfoResponse(image_filesystems=[usage])

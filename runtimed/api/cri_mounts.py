"""CRI container mounts: host binds (read-only, recursive read-only, propagation) and
image volumes, translated for the core and the volume part."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from runtimed.errors import FailedPrecondition, InvalidArgument
from runtimed.gen.runtime.v1 import api_pb2 as cri
from runtimed.oci.spec import BindMount
from runtimed.volumes.plan import MountEntry
from runtimed.volumes.propagation import rro_supported

PROPAGATION = {
    cri.PROPAGATION_PRIVATE: "rprivate",
    cri.PROPAGATION_HOST_TO_CONTAINER: "rslave",
    cri.PROPAGATION_BIDIRECTIONAL: "rshared",
}


def cri_mounts(mounts: Iterable[cri.Mount]) -> tuple[list[BindMount], dict[str, Any]]:
    """(host binds for CreateRequest.binds, extras["volumes"] with the image volumes)."""
    binds: list[BindMount] = []
    images: list[MountEntry] = []
    for mount in mounts:
        if not mount.container_path:
            raise InvalidArgument("CreateContainer: a mount has no container_path")
        if mount.HasField("image") and mount.image.image:
            if mount.host_path:
                raise InvalidArgument(
                    f"mount {mount.container_path}: host_path and image are exclusive"
                )
            images.append(
                MountEntry(
                    type="image",
                    target=mount.container_path,
                    source=mount.image.image,
                    readonly=True,
                    sub_path=mount.image_sub_path,
                )
            )
            continue
        if not mount.host_path.startswith("/"):
            raise InvalidArgument(
                f"mount {mount.container_path}: host_path {mount.host_path!r} must be absolute"
            )
        if mount.propagation not in PROPAGATION:
            raise InvalidArgument(f"mount {mount.container_path}: unknown propagation")
        options: tuple[str, ...] = ()
        if mount.recursive_read_only:
            if not mount.readonly:
                raise InvalidArgument(
                    f"mount {mount.container_path}: recursive_read_only needs readonly"
                )
            if mount.propagation != cri.PROPAGATION_PRIVATE:
                raise InvalidArgument(
                    f"mount {mount.container_path}: recursive_read_only needs PROPAGATION_PRIVATE"
                )
            if not rro_supported():
                raise FailedPrecondition(
                    f"mount {mount.container_path}: recursive read-only mounts need "
                    "mount_setattr(2) (Linux 5.12+), which this kernel lacks"
                )
            options = ("rro",)
        binds.append(
            BindMount(
                source=os.path.normpath(mount.host_path),
                destination=mount.container_path,
                readonly=mount.readonly,
                propagation=PROPAGATION[mount.propagation],
                options=options,
            )
        )
    return binds, {"mounts": [e.to_dict() for e in images], "volumes_from": []}


def runtime_handlers() -> list[cri.RuntimeHandler]:
    """What StatusResponse says about mounts: kubelet sends recursive read-only mounts only
    to a runtime that claims them."""
    features = cri.RuntimeHandlerFeatures(recursive_read_only_mounts=rro_supported())
    return [cri.RuntimeHandler(name="", features=features)]

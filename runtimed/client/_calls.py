"""Each unary Engine call the clients make, written once for both flavours: which RPC, its
request, how the reply becomes the result, and how its errors read. Client._call and
AsyncClient._call only perform a Call (blocking or with `await`); the streams (logs, exec,
pull) stay in each flavour, around the requests of _build."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from runtimed.client import _build
from runtimed.client._models import container_doc, image_doc, network_doc, volume_doc
from runtimed.gen.runtimed.v1 import engine_pb2 as pb


def _nothing(_reply: Any) -> None:
    return None


class Call(NamedTuple):
    rpc: str  # the Engine stub's method
    request: Any
    decode: Callable[[Any], Any] = _nothing
    image: bool = False  # NOT_FOUND means the image is missing (ImageNotFound)
    timeout: float | None = None


# --- the daemon ----------------------------------------------------------------------------


def ping() -> Call:
    return Call("Version", pb.VersionRequest(), lambda _: True, timeout=30)


def version() -> Call:
    return Call("Version", pb.VersionRequest(), _build.reply_dict)


def info() -> Call:
    return Call("Info", pb.InfoRequest(), _build.reply_dict)


# --- containers ----------------------------------------------------------------------------


def inspect_container(ref: str) -> Call:
    return Call("InspectContainer", pb.ContainerRef(id=ref), container_doc)


def start_container(ref: str) -> Call:
    return Call("StartContainer", pb.ContainerRef(id=ref))


def stop_container(ref: str, timeout: int | None) -> Call:
    return Call("StopContainer", _build.stop_request(ref, timeout))


def restart_container(ref: str, timeout: int | None) -> Call:
    return Call("RestartContainer", _build.stop_request(ref, timeout))


def kill_container(ref: str, signal: str | int | None) -> Call:
    return Call("KillContainer", _build.kill_request(ref, signal))


def remove_container(ref: str, v: bool, force: bool) -> Call:
    return Call("RemoveContainer", pb.RemoveContainerRequest(id=ref, force=force, volumes=v))


def rename_container(ref: str, name: str) -> Call:
    return Call("RenameContainer", pb.RenameContainerRequest(id=ref, new_name=name))


def wait_container(ref: str, timeout: float | None, condition: str) -> Call:
    return Call(
        "WaitContainer",
        pb.WaitContainerRequest(id=ref, condition=condition),
        _build.wait_result,
        timeout=timeout,
    )


def top_container(ref: str, ps_args: str | None) -> Call:
    return Call(
        "TopContainer", pb.TopContainerRequest(id=ref, ps_args=ps_args or ""), _build.top_result
    )


def create_container(image: str, command: Any, kwargs: Mapping[str, Any]) -> Call:
    """The reply is the new container's id."""
    return Call("CreateContainer", _build.create_request(image, command, kwargs), lambda r: r.id)


def list_containers(all_: bool, filters: Mapping[str, Any] | None, limit: int) -> Call:
    """The reply is the ids listed (each then inspected)."""
    return Call(
        "ListContainers",
        _build.list_containers_request(all_, filters, limit),
        lambda r: [summary.id for summary in r.containers],
    )


def prune_containers(filters: Mapping[str, Any] | None) -> Call:
    return Call(
        "PruneContainers",
        pb.PruneContainersRequest(filters=_build.filter_map(filters)),
        _build.pruned_containers,
    )


# --- images --------------------------------------------------------------------------------


def inspect_image(name: str) -> Call:
    return Call("InspectImage", pb.InspectImageRequest(reference=name), image_doc, image=True)


def tag_image(image_id: str, repository: str, tag: str | None) -> Call:
    target = f"{repository}:{tag}" if tag else repository
    return Call("TagImage", pb.TagImageRequest(source=image_id, target=target), image=True)


def list_images(name: str | None, all_: bool, filters: Mapping[str, Any] | None) -> Call:
    """The reply is the ids listed (each then inspected)."""
    return Call(
        "ListImages",
        _build.list_images_request(name, all_, filters),
        lambda r: [summary.id for summary in r.images],
        image=True,
    )


def remove_image(image: str, force: bool, noprune: bool) -> Call:
    return Call(
        "RemoveImage",
        pb.RemoveImageRequest(reference=image, force=force, no_prune=noprune),
        _build.removed_image,
        image=True,
    )


def prune_images(filters: Mapping[str, Any] | None) -> Call:
    flt = dict(filters or {})
    dangling = str(flt.pop("dangling", "true")).lower() != "false"
    return Call(
        "PruneImages",
        pb.PruneImagesRequest(all=not dangling, filters=_build.filter_map(flt)),
        lambda r: {"ImagesDeleted": _build.removed_image(r), "SpaceReclaimed": r.space_reclaimed},
    )


# --- networks ------------------------------------------------------------------------------


def create_network(
    name: str,
    driver: str | None,
    options: Mapping[str, str] | None,
    ipam: Mapping[str, Any] | None,
    internal: bool,
    labels: Mapping[str, str] | None,
    enable_ipv6: bool,
) -> Call:
    req = _build.network_create_request(name, driver, options, ipam, internal, labels, enable_ipv6)
    return Call("CreateNetwork", req, network_doc)


def inspect_network(ref: str) -> Call:
    return Call("InspectNetwork", pb.NetworkRef(name=ref), network_doc)


def list_networks(filters: Mapping[str, Any] | None) -> Call:
    """The reply is the networks' inspect documents."""
    return Call(
        "ListNetworks",
        pb.ListNetworksRequest(filters=_build.filters(filters)),
        lambda r: [network_doc(net) for net in r.networks],
    )


def connect_network(
    ref: str, container: str, aliases: list[str] | None, ipv4_address: str | None
) -> Call:
    return Call("ConnectNetwork", _build.connect_request(ref, container, aliases, ipv4_address))


def disconnect_network(ref: str, container: str, force: bool) -> Call:
    return Call(
        "DisconnectNetwork",
        pb.DisconnectNetworkRequest(network=ref, container=container, force=force),
    )


def remove_network(ref: str) -> Call:
    return Call("RemoveNetwork", pb.NetworkRef(name=ref))


def prune_networks(filters: Mapping[str, Any] | None) -> Call:
    return Call(
        "PruneNetworks",
        pb.PruneNetworksRequest(filters=_build.filters(filters)),
        lambda r: {"NetworksDeleted": list(r.deleted)},
    )


# --- volumes -------------------------------------------------------------------------------


def create_volume(
    name: str | None,
    driver: str | None,
    driver_opts: Mapping[str, str] | None,
    labels: Mapping[str, str] | None,
) -> Call:
    req = _build.volume_create_request(name, driver, driver_opts, labels)
    return Call("CreateVolume", req, volume_doc)


def inspect_volume(ref: str) -> Call:
    return Call("InspectVolume", pb.VolumeRef(name=ref), volume_doc)


def list_volumes(filters: Mapping[str, Any] | None) -> Call:
    """The reply is the volumes' inspect documents."""
    return Call(
        "ListVolumes",
        pb.ListVolumesRequest(filters=_build.filters(filters)),
        lambda r: [volume_doc(v) for v in r.volumes],
    )


def remove_volume(ref: str, force: bool) -> Call:
    return Call("RemoveVolume", pb.RemoveVolumeRequest(name=ref, force=force))


def prune_volumes(filters: Mapping[str, Any] | None) -> Call:
    return Call(
        "PruneVolumes",
        pb.PruneVolumesRequest(filters=_build.filters(filters)),
        lambda r: {"VolumesDeleted": list(r.deleted), "SpaceReclaimed": r.space_reclaimed},
    )

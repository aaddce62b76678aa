"""The CRI image service through a client generated from our proto, as kubelet drives it."""

from __future__ import annotations

import json

import grpc
import pytest

from runtimed.gen.runtime.v1 import api_pb2 as cri
from tests.support.daemon import Daemon
from tests.support.fixtures import AUTH_PASSWORD, AUTH_USER
from tests.support.images import PushedImages, build_image, busybox_rootfs_layer, push
from tests.support.registry import Registry

pytestmark = pytest.mark.integration


def spec(image: str) -> cri.ImageSpec:
    return cri.ImageSpec(image=image)


def test_pull_list_status_remove(daemon: Daemon, pushed_images: PushedImages) -> None:
    images = daemon.cri_images()
    scenario = pushed_images.busybox

    pulled = images.PullImage(cri.PullImageRequest(image=spec(scenario.ref)))
    assert pulled.image_ref == scenario.image.config_digest

    listed = images.ListImages(cri.ListImagesRequest()).images
    mine = [i for i in listed if i.id == pulled.image_ref]
    assert len(mine) == 1
    assert scenario.ref in mine[0].repo_tags  # CRI shows names as stored, in full
    assert mine[0].repo_digests == [f"{scenario.ref.rsplit(':', 1)[0]}@{scenario.pushed.digest}"]
    assert mine[0].size > 1_000_000  # busybox-static unpacked

    filtered = images.ListImages(
        cri.ListImagesRequest(filter=cri.ImageFilter(image=spec(scenario.ref)))
    ).images
    assert [i.id for i in filtered] == [pulled.image_ref]

    status = images.ImageStatus(cri.ImageStatusRequest(image=spec(pulled.image_ref), verbose=True))
    assert status.image.id == pulled.image_ref
    assert json.loads(status.info["info"])["Id"] == pulled.image_ref

    by_digest = images.ImageStatus(cri.ImageStatusRequest(image=spec(scenario.digest_ref)))
    assert by_digest.image.id == pulled.image_ref

    images.RemoveImage(cri.RemoveImageRequest(image=spec(scenario.ref)))
    gone = images.ImageStatus(cri.ImageStatusRequest(image=spec(scenario.ref)))
    assert not gone.HasField("image")  # absent: an empty answer, not an error
    # Idempotent, as kubelet's image GC relies on.
    images.RemoveImage(cri.RemoveImageRequest(image=spec(scenario.ref)))


def test_image_user_is_reported(daemon: Daemon, registry: Registry) -> None:
    base = busybox_rootfs_layer()
    push(registry, "test/user-num", "1", build_image([base], config_overrides={"User": "1000"}))
    push(registry, "test/user-name", "1", build_image([base], config_overrides={"User": "app"}))
    images = daemon.cri_images()
    for repo, check in (
        ("test/user-num", lambda i: i.HasField("uid") and i.uid.value == 1000),
        ("test/user-name", lambda i: i.username == "app" and not i.HasField("uid")),
    ):
        ref = f"{registry.host}/{repo}:1"
        images.PullImage(cri.PullImageRequest(image=spec(ref)))
        assert check(images.ImageStatus(cri.ImageStatusRequest(image=spec(ref))).image)
        images.RemoveImage(cri.RemoveImageRequest(image=spec(ref)))


def test_pull_with_cri_auth(daemon: Daemon, auth_registry: Registry) -> None:
    push(auth_registry, "private/cri", "1", build_image([busybox_rootfs_layer()]))
    ref = f"{auth_registry.host}/private/cri:1"
    images = daemon.cri_images()
    with pytest.raises(grpc.RpcError) as denied:
        images.PullImage(cri.PullImageRequest(image=spec(ref)))
    assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    auth = cri.AuthConfig(username=AUTH_USER, password=AUTH_PASSWORD)
    pulled = images.PullImage(cri.PullImageRequest(image=spec(ref), auth=auth))
    assert pulled.image_ref.startswith("sha256:")
    images.RemoveImage(cri.RemoveImageRequest(image=spec(ref)))


def test_image_fs_info_reports_real_usage(daemon: Daemon, pushed_images: PushedImages) -> None:
    images = daemon.cri_images()

    def used() -> tuple[int, int]:
        fs = images.ImageFsInfo(cri.ImageFsInfoRequest()).image_filesystems
        assert len(fs) == 1 and fs[0].fs_id.mountpoint == str(daemon.data_dir)
        return fs[0].used_bytes.value, fs[0].inodes_used.value

    before = used()
    images.PullImage(cri.PullImageRequest(image=spec(pushed_images.mixed.ref)))
    during = used()
    assert during[0] > before[0] + 500_000 and during[1] > before[1]
    images.RemoveImage(cri.RemoveImageRequest(image=spec(pushed_images.mixed.ref)))
    assert used()[0] < during[0]


def test_bad_requests(daemon: Daemon) -> None:
    images = daemon.cri_images()
    with pytest.raises(grpc.RpcError) as err:
        images.PullImage(cri.PullImageRequest(image=spec("Not/A:Valid:Ref")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        images.ImageStatus(cri.ImageStatusRequest(image=spec("")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_runtime_service_version_and_unimplemented(daemon: Daemon) -> None:
    runtime = daemon.cri_runtime()
    version = runtime.Version(cri.VersionRequest(version="0.1.0"))
    assert version.version == "0.1.0"
    assert version.runtime_name == "runtimed" and version.runtime_api_version == "v1"
    with pytest.raises(grpc.RpcError) as err:
        runtime.CheckpointContainer(cri.CheckpointContainerRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "CheckpointContainer" in err.value.details()

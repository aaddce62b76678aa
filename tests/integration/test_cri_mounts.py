"""CRI container mounts as kubelet sends them: host binds (read-only, recursive read-only,
propagation), host paths that must exist, and image volumes from the image store."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from runtimed.gen.runtime.v1 import api_pb2 as cri
from tests.support.daemon import Daemon

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def image(daemon: Daemon) -> str:
    return daemon.import_busybox("bb:crimounts")


@pytest.fixture(scope="module")
def other_image(daemon: Daemon, image: str) -> str:
    """An image of its own id, used only as an image volume."""
    daemon.ok("import", "-c", "LABEL role=volume", str(daemon.root / "busybox-bb-crimounts.tar"),
              "bb:volume")  # fmt: skip
    return "bb:volume"


class Pod:
    def __init__(self, daemon: Daemon, name: str, log_dir: Path) -> None:
        self.rt = daemon.cri_runtime()
        self.config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="default"),
            hostname=name,
            log_directory=str(log_dir),
        )
        self.id = self.rt.RunPodSandbox(cri.RunPodSandboxRequest(config=self.config)).pod_sandbox_id

    def create(self, name: str, image: str, script: str, mounts: list[cri.Mount], **kw) -> str:
        config = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name=name),
            image=cri.ImageSpec(image=image),
            command=["/bin/sh", "-c", script],
            mounts=mounts,
            **kw,
        )
        request = cri.CreateContainerRequest(
            pod_sandbox_id=self.id, config=config, sandbox_config=self.config
        )
        return self.rt.CreateContainer(request).container_id

    def run(self, name: str, image: str, script: str, mounts: list[cri.Mount], **kw) -> str:
        cid = self.create(name, image, script, mounts, **kw)
        self.rt.StartContainer(cri.StartContainerRequest(container_id=cid))
        return cid

    def sh(self, cid: str, script: str) -> cri.ExecSyncResponse:
        return self.rt.ExecSync(
            cri.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", script], timeout=10)
        )

    def remove(self) -> None:
        self.rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=self.id))


@pytest.fixture
def pod(daemon: Daemon, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pod]:
    p = Pod(daemon, request.node.name.replace("_", "-")[:40], tmp_path)
    yield p
    p.remove()


def host_dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    os.chmod(path, 0o777)
    return path


def test_binds_and_image_volumes(
    daemon: Daemon, image: str, other_image: str, pod: Pod, tmp_path: Path
) -> None:
    data = host_dir(tmp_path, "data")
    (data / "in").write_text("from host\n")
    cid = pod.run("binds", image, "sleep 60", [
        cri.Mount(container_path="/rw", host_path=str(data)),
        cri.Mount(container_path="/ro", host_path=str(data), readonly=True),
        cri.Mount(container_path="/img", image=cri.ImageSpec(image=other_image)),
        cri.Mount(container_path="/img-etc", image=cri.ImageSpec(image=other_image),
                  image_sub_path="etc"),
    ])  # fmt: skip
    assert pod.sh(cid, "echo ctr > /rw/out").exit_code == 0
    assert (data / "out").read_text() == "ctr\n"
    ro = pod.sh(cid, "cat /ro/in; touch /ro/x")
    assert ro.stdout == b"from host\n" and b"Read-only file system" in ro.stderr
    image_view = pod.sh(cid, "test -x /img/bin/busybox && grep ^app: /img-etc/passwd; touch /img/x")
    assert image_view.stdout.startswith(b"app:x:1000") and b"Read-only" in image_view.stderr
    status = pod.rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid)).status
    assert {m.container_path for m in status.mounts} >= {"/rw", "/ro"}
    # The image behind a volume is in use while the container exists.
    busy = daemon.ctl("rmi", other_image)
    assert busy.returncode == 1 and "being used by container" in busy.stderr

    for mounts, message in [
        ([cri.Mount(container_path="/x", host_path=str(tmp_path / "missing"))],
         "bind source path does not exist"),
        ([cri.Mount(container_path="/x", image=cri.ImageSpec(image=other_image),
                    image_sub_path="../..")], "may not contain '..'"),
        ([cri.Mount(container_path="/x", image=cri.ImageSpec(image="bb:nosuchimage"))],
         "No such image"),
    ]:  # fmt: skip
        with pytest.raises(grpc.RpcError) as info:
            pod.create("bad", image, "true", mounts)
        assert message in info.value.details()
    assert not (tmp_path / "missing").exists()


def test_propagation_and_recursive_read_only(
    daemon: Daemon, image: str, pod: Pod, tmp_path: Path
) -> None:
    assert (
        pod.rt.Status(cri.StatusRequest()).runtime_handlers[0].features.recursive_read_only_mounts
    )
    src = host_dir(tmp_path, "src")
    private = pod.run("private", image, "sleep 60", [
        cri.Mount(container_path="/s", host_path=str(src)),
    ])  # fmt: skip
    slave = pod.run("slave", image, "sleep 60", [
        cri.Mount(container_path="/s", host_path=str(src),
                  propagation=cri.PROPAGATION_HOST_TO_CONTAINER),
    ])  # fmt: skip
    # A privileged container mounts below its bidirectional bind: the mount propagates.
    pod.run("shared", image,
            "mkdir -p /s/sub && mount -t tmpfs tmpfs /s/sub && echo deep > /s/sub/f && sleep 60",
            [cri.Mount(container_path="/s", host_path=str(src),
                       propagation=cri.PROPAGATION_BIDIRECTIONAL)],
            linux=cri.LinuxContainerConfig(
                security_context=cri.LinuxContainerSecurityContext(privileged=True)))  # fmt: skip
    deadline = time.monotonic() + 10
    while pod.sh(slave, "cat /s/sub/f").stdout != b"deep\n":
        assert time.monotonic() < deadline, "the mount never reached the rslave container"
        time.sleep(0.1)
    assert pod.sh(private, "cat /s/sub/f").exit_code != 0  # private: never sees it
    # Read-only stops at the bind itself; recursive read-only covers what is mounted below.
    plain = pod.run("ro", image, "sleep 60", [
        cri.Mount(container_path="/s", host_path=str(src), readonly=True),
    ])  # fmt: skip
    rro = pod.run("rro", image, "sleep 60", [
        cri.Mount(container_path="/s", host_path=str(src), readonly=True,
                  recursive_read_only=True),
    ])  # fmt: skip
    assert pod.sh(plain, "cat /s/sub/f && touch /s/sub/w").exit_code == 0
    denied = pod.sh(rro, "cat /s/sub/f && touch /s/sub/w2")
    assert denied.stdout == b"deep\n" and b"Read-only file system" in denied.stderr
    refused = pod.sh(rro, "touch /s/top")
    assert b"Read-only file system" in refused.stderr

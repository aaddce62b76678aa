"""Registry pulls: platforms, compressions, verification, hostile layers, credentials."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtimed.network.hostaddr import primary_address
from tests.support.daemon import BIN, Daemon
from tests.support.fixtures import AUTH_PASSWORD, AUTH_USER
from tests.support.images import PushedImages, big_image, build_image, busybox_rootfs_layer, push
from tests.support.registry import Registry
from tests.support.rootfs import read_paths

pytestmark = pytest.mark.integration


def lower_dirs(daemon: Daemon, ref: str) -> str:
    doc = json.loads(daemon.ok("image", "inspect", ref).stdout)[0]
    return doc["GraphDriver"]["Data"]["LowerDir"]


def staging_and_ingest(daemon: Daemon) -> list[str]:
    """What a failed pull could leave behind: staging layer dirs and ingest files."""
    leftovers = [p.name for p in (daemon.data_dir / "layers").iterdir() if p.name.startswith(".")]
    leftovers += [p.name for p in (daemon.data_dir / "content" / "ingest").iterdir()]
    return leftovers


@pytest.mark.parametrize("which", ["multiarch", "multiarch_docker"])
@pytest.mark.parametrize("platform", ["", "linux/arm64"])
def test_index_picks_the_platform(
    daemon: Daemon, pushed_images: PushedImages, which: str, platform: str
) -> None:
    scenario = getattr(pushed_images, which)
    args = ["pull", *(["--platform", platform] if platform else []), scenario.ref]
    image_id = daemon.ok(*args).out_lines[-1]
    arch = (platform or "linux/amd64").split("/")[1]
    expected = next(
        image
        for image, listed in zip(scenario.index.images, scenario.index.platforms, strict=True)
        if listed.architecture == arch
    )
    assert image_id == expected.config_digest
    seen = read_paths(lower_dirs(daemon, scenario.ref), [scenario.arch_file])
    assert seen[scenario.arch_file]["data"] == arch
    daemon.ok("rmi", scenario.ref)


def test_missing_platform_is_not_found(daemon: Daemon, pushed_images: PushedImages) -> None:
    result = daemon.ctl("pull", "--platform", "linux/s390x", pushed_images.multiarch.ref)
    assert result.returncode == 1
    assert "linux/s390x" in result.stderr and "linux/amd64" in result.stderr


def test_gzip_zstd_and_plain_layers(daemon: Daemon, pushed_images: PushedImages) -> None:
    scenario = pushed_images.mixed
    daemon.ok("pull", scenario.ref)
    seen = read_paths(lower_dirs(daemon, scenario.ref), [*scenario.files, *scenario.absent])
    for path, content in scenario.files.items():
        assert seen[path]["data"].encode("latin-1") == content
    for path in scenario.absent:
        assert seen[path] is None
    daemon.ok("rmi", scenario.ref)


def test_pull_by_digest(daemon: Daemon, pushed_images: PushedImages) -> None:
    scenario = pushed_images.busybox
    image_id = daemon.ok("pull", scenario.digest_ref).out_lines[-1]
    assert image_id == scenario.image.config_digest
    listed = daemon.ok("images", "--digests").stdout
    assert scenario.pushed.digest in listed
    daemon.ok("rmi", scenario.digest_ref)


def test_corrupt_blob_is_data_loss_and_stores_nothing(
    daemon: Daemon, pushed_images: PushedImages
) -> None:
    result = daemon.ctl("pull", pushed_images.corrupt.ref)
    assert result.returncode == 1
    assert "failed verification" in result.stderr
    assert pushed_images.corrupt.bad_layer_digest in result.stderr
    assert "corrupt" not in daemon.ok("images").stdout
    assert staging_and_ingest(daemon) == []
    # The same through the API: the gRPC code is DATA_LOSS.
    import grpc

    from runtimed.gen.runtimed.v1 import engine_pb2 as pb

    with pytest.raises(grpc.RpcError) as err:
        list(daemon.engine().PullImage(pb.PullImageRequest(reference=pushed_images.corrupt.ref)))
    assert err.value.code() == grpc.StatusCode.DATA_LOSS


def test_hostile_layers_write_nothing_outside(daemon: Daemon, pushed_images: PushedImages) -> None:
    evil = pushed_images.evil
    for name, case in evil.cases.items():
        result = daemon.ctl("pull", case.ref)
        if case.expect == "skipped":
            assert result.returncode == 0, f"{name}: {result.stderr}"
            seen = read_paths(lower_dirs(daemon, case.ref), [case.member])
            assert seen[case.member] is None, f"{name}: device node was created"
        elif result.returncode == 0:
            # Accepted only if everything stayed inside the layer.
            pass
        else:
            assert "unsafe" in result.stderr or "escape" in result.stderr, (name, result.stderr)
        evil.assert_untouched()
        assert staging_and_ingest(daemon) == []


def test_unreachable_registry_is_unavailable(daemon: Daemon) -> None:
    result = daemon.ctl("pull", "127.0.0.1:1/library/nothing:1")
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr


def test_unknown_image_is_not_found(daemon: Daemon, registry: Registry) -> None:
    result = daemon.ctl("pull", f"{registry.host}/test/does-not-exist:1")
    assert result.returncode == 1
    assert "not found" in result.stderr.lower() or "unknown" in result.stderr.lower()


def test_login_then_pull_from_auth_registry(daemon: Daemon, auth_registry: Registry) -> None:
    push(auth_registry, "private/app", "1", build_image([busybox_rootfs_layer()]))
    ref = f"{auth_registry.host}/private/app:1"
    denied = daemon.ctl("pull", ref)
    assert denied.returncode == 1 and "login" in denied.stderr

    wrong = daemon.ctl(
        "login", "-u", AUTH_USER, "--password-stdin", auth_registry.host, input="wrong\n"
    )
    assert wrong.returncode == 1
    config = daemon.root / "docker-config" / "config.json"
    assert not config.exists()

    ok = daemon.ok(
        "login", "-u", AUTH_USER, "--password-stdin", auth_registry.host, input=AUTH_PASSWORD + "\n"
    )
    assert ok.stdout == "Login Succeeded\n"  # only that on stdout, as docker's
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    auths = json.loads(config.read_text())["auths"]
    assert auth_registry.host in auths

    daemon.ok("pull", ref)
    daemon.ok("rmi", ref)
    out = daemon.ok("logout", auth_registry.host).stdout
    assert out == f"Removing login credentials for {auth_registry.host}\n"
    assert auth_registry.host not in json.loads(config.read_text()).get("auths", {})
    assert daemon.ctl("pull", ref).returncode == 1


def test_interrupted_pull_leaves_no_half_image(registry: Registry, tmp_path: os.PathLike) -> None:
    image = big_image(total_mb=40, layers=4)
    push(registry, "test/big-interrupted", "1", image)
    ref = f"{registry.host}/test/big-interrupted:1"
    d = Daemon()
    try:
        d.start()
        proc = subprocess.Popen(
            [str(BIN / "runtimectl"), "-H", f"unix://{d.socket}", "pull", ref],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Downloading" in line or "Extracting" in line or "Pull complete" in line:
                break
        d.kill9()  # in the middle of the pull
        proc.wait(30)
        d.start()
        assert "big-interrupted" not in d.ok("images", "-a").stdout
        assert staging_and_ingest(d) == []
        # Whatever layers made it are registered ones; a new pull completes the image.
        assert d.ok("pull", ref).out_lines[-1] == image.config_digest
    finally:
        d.cleanup()


@contextlib.contextmanager
def relay(host: str, port: int) -> Iterator[str]:
    """host:ANY relayed to 127.0.0.1:port: the test registry on the host's own address,
    where it is not insecure by default as on loopback. Yields HOST:PORT."""
    server = socket.create_server((host, 0))

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", port))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(src, dst), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"{host}:{server.getsockname()[1]}"
    finally:
        server.close()


def test_a_plain_http_registry_is_refused_until_allowed(
    daemon: Daemon, registry: Registry, pushed_images: PushedImages, tmp_path: Path
) -> None:
    """Not loopback and not declared insecure: TLS is required, and the error says how to
    allow the registry; `runtimed --insecure-registry` (repeatable, merged with the
    config file's insecure_registries) does."""
    host_ip = primary_address()
    assert host_ip, "this test needs a host with an address besides loopback"
    with relay(host_ip, registry.port) as host:
        ref = pushed_images.busybox.ref.replace(registry.host, host, 1)
        refused = daemon.ctl("pull", ref)
        assert refused.returncode == 1, refused
        assert f"cannot reach registry {host} over https" in refused.stderr
        assert f"runtimed --insecure-registry {host}" in refused.stderr
        assert f'insecure_registries = ["{host}"] in runtimed.toml' in refused.stderr
        config = tmp_path / "runtimed.toml"
        config.write_text('insecure_registries = ["other.example:5000"]\n')
        flags = ("--config", str(config), "--insecure-registry", host,
                 "--insecure-registry", "10.99.0.0/16")  # fmt: skip
        with Daemon(extra_args=flags) as allowed:
            info = allowed.ok("info").stdout
            assert all(r in info for r in ("other.example:5000", host, "10.99.0.0/16")), info
            image_id = allowed.ok("pull", ref).out_lines[-1]
            assert image_id == pushed_images.busybox.image.config_digest

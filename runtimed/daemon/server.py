"""Assemble the daemon's parts, serve gRPC on the unix socket, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from runtimed import __version__
from runtimed.api.cri_image import CriImageServicer
from runtimed.api.cri_runtime import CriRuntimeServicer
from runtimed.api.engine import EngineServicer
from runtimed.api.errors import ErrorInterceptor
from runtimed.api.rpclog import RpcLogInterceptor
from runtimed.build.service import BuildService
from runtimed.cgroups.service import ResourceService
from runtimed.cgroups.wiring import build_cgroups
from runtimed.config import Config
from runtimed.core.containers import ContainerService
from runtimed.core.events import EventBus
from runtimed.core.health import HealthMonitor
from runtimed.core.logdrivers import LogDrivers, LoggingHook
from runtimed.core.sandboxes import SandboxService
from runtimed.core.shim_client import ShimLauncher
from runtimed.core.stats import ProcSource, StatsService
from runtimed.daemon import logging as daemon_logging
from runtimed.daemon.remote import RemoteAccess
from runtimed.dockerapi import DockerApiServer, make_app
from runtimed.errors import FailedPrecondition
from runtimed.gen.runtime.v1 import api_pb2_grpc
from runtimed.gen.runtimed.v1 import engine_pb2_grpc
from runtimed.images import registries_conf
from runtimed.images.auth import CredentialStore
from runtimed.images.layers import LayerStore
from runtimed.images.registry import RegistryClient
from runtimed.images.service import ImageService
from runtimed.network.hook import NetworkHook
from runtimed.network.service import NetworkService, configured_backend
from runtimed.oci.runtime import detect_runtime
from runtimed.paths import config_dir
from runtimed.rootless import userns
from runtimed.services import Runtime
from runtimed.snapshots import select_snapshotter
from runtimed.store.containers import ContainerRecords
from runtimed.store.content import ContentStore
from runtimed.store.events import EventRing
from runtimed.store.metadata import MetadataStore
from runtimed.streaming.server import StreamServer
from runtimed.volumes.hook import VolumeHook
from runtimed.volumes.mounts import ContainerMounts
from runtimed.volumes.service import VolumeService

log = structlog.get_logger(__name__)


def build_runtime(config: Config, *, rootless: bool) -> Runtime:
    """Make and wire every service of the daemon (nothing runs yet: see Runtime.start)."""
    data = config.data_dir
    for sub in ("content", "layers", "snapshots"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    metadata = MetadataStore(data / "metadata.db")
    content = ContentStore(data / "content")
    own_conf = config.registries_conf or config_dir() / "registries.conf"
    regs = registries_conf.load(
        own_conf if own_conf.exists() or config.registries_conf else None,
        config.insecure_registries,
    )
    credentials = CredentialStore()
    registry = RegistryClient(
        regs,
        credentials,
        user_agent=f"runtimed/{__version__}",
        max_concurrent_downloads=config.max_concurrent_downloads,
    )
    layers = LayerStore(data / "layers", metadata)
    images = ImageService(content, metadata, layers, registry)
    images.collect_garbage()
    snapshotter = select_snapshotter(config.storage_driver, data / "snapshots")
    oci_runtime = detect_runtime(config.runtime)
    records = ContainerRecords(metadata)
    # The launcher also holds our namespaces: a restarted daemon finds it by its pid file.
    launcher = ShimLauncher(
        socket=config.run_dir / "shim-launcher.sock",
        pid_file=config.run_dir / userns.HOLDER_PID_FILE,
    )
    containers = ContainerService(
        records=records,
        images=images,
        snapshotter=snapshotter,
        launcher=launcher,
        runtime=oci_runtime,
        run_dir=config.run_dir,
        data_dir=data,
        default_log_driver=config.default_log_driver,
    )
    # Log drivers: the daemon-wide defaults must be valid; each create is checked too.
    containers.log_drivers = LogDrivers(config.default_log_driver, config.default_log_opts)
    containers.log_drivers.check_defaults()
    containers.hooks.append(LoggingHook(containers.log_drivers))
    sandboxes = SandboxService(
        records=records, containers=containers, run_dir=config.run_dir, data_dir=data
    )
    volumes = VolumeService(
        metadata=metadata,
        data_dir=data,
        run_dir=config.run_dir,
        plugin_dirs=[config.run_dir / "plugins", config_dir() / "plugins"],
        containers=containers.list,
    )
    volume_mounts = ContainerMounts(volumes, containers)
    containers.hooks.append(VolumeHook(volume_mounts))
    network = NetworkService(
        data_dir=data,
        run_dir=config.run_dir,
        containers=containers,
        backend=configured_backend(config),
        host_loopback=config.host_loopback,
    )
    containers.hooks.append(NetworkHook(network))
    cgroups = build_cgroups(config, records)
    containers.hooks.append(cgroups.hook)
    # One bus for every service: the Engine, CRI (and Docker) streams read the same events.
    events = EventBus(EventRing(data / "events.db"))
    containers.events = images.events = volumes.events = network.events = events
    containers.hooks.append(
        HealthMonitor(
            containers,
            on_status=lambda c, status: containers.announce(c, f"health_status: {status}"),
        )
    )
    # CPU and memory from a container's cgroup, or from /proc without one.
    stats = StatsService(
        source=cgroups.source(ProcSource(infra_pid=sandboxes.infra_pid)),
        snapshotter=snapshotter,
        layer_root=data / "snapshots",
        netns=network.worker,
    )
    sandboxes.node_network = network.rootless.pin
    return Runtime(
        config=config,
        rootless=rootless,
        metadata=metadata,
        content=content,
        registries=regs,
        credentials=credentials,
        registry=registry,
        images=images,
        snapshotter=snapshotter,
        oci_runtime=oci_runtime,
        launcher=launcher,
        containers=containers,
        sandboxes=sandboxes,
        volumes=volumes,
        volume_mounts=volume_mounts,
        network=network,
        stats=stats,
        cgroups=cgroups.manager,
        resources=ResourceService(cgroups.manager, containers),
        builds=BuildService(images, containers, data),
        events=events,
    )


def _prepare_socket(path: Path, *, own_dir: bool, flag: str = "--socket") -> None:
    """Clear a stale socket, refusing a live one or anything that is not a socket.

    The runtime's own directory (`own_dir`: the default one) is made and kept private.
    A directory the user named is used as it is (a missing one is made, 0700): its mode
    is the user's business; the socket itself is 0600 either way.
    """
    directory = path.parent
    try:
        if own_dir or not directory.exists():
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if own_dir:
            os.chmod(directory, 0o700)
        st = path.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FailedPrecondition(f"cannot use {directory} for the socket: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise FailedPrecondition(f"{path} exists and is not a socket: pick another {flag}")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise FailedPrecondition(f"{path} is in use by another daemon: stop it or pick another {flag}")


def _check_bind(path: Path) -> None:
    """Fail now, in one line, if the socket cannot be made there (before anything starts;
    grpc would only say "Failed to bind")."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.bind(str(path))
    except OSError as exc:
        raise FailedPrecondition(f"cannot listen on {path}: {exc.strerror or exc}") from None
    finally:
        probe.close()
    path.unlink()


async def serve(config: Config, *, rootless: bool) -> None:
    _prepare_socket(config.socket, own_dir=config.own_socket_dir)
    _check_bind(config.socket)
    docker_socket = config.docker_socket_path()
    if docker_socket is not None:
        _prepare_socket(docker_socket, own_dir=False, flag="--docker-host")
        _check_bind(docker_socket)
    remote = RemoteAccess.plan(config)  # tcp:// listeners, mutual TLS only
    remote.check_bind()
    runtime = build_runtime(config, rootless=rootless)
    await runtime.start()
    streaming = StreamServer(
        config.stream_address, containers=runtime.containers, sandboxes=runtime.sandboxes
    )
    await streaming.start()
    # The Docker Engine API: the same services, its own socket.
    docker_api = DockerApiServer(make_app(runtime))
    if docker_socket is not None:
        await docker_api.listen_unix(docker_socket)
    # -D: every RPC served is logged (outermost, so it sees the status of an error too).
    interceptors = [RpcLogInterceptor()] if config.debug else []
    server = grpc.aio.server(
        interceptors=[*interceptors, ErrorInterceptor()],
        options=[
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
        ],
    )
    engine_pb2_grpc.add_EngineServicer_to_server(EngineServicer(runtime), server)
    api_pb2_grpc.add_ImageServiceServicer_to_server(CriImageServicer(runtime), server)
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(
        CriRuntimeServicer(runtime, streaming), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    old_umask = os.umask(0o177)  # the socket is created 0600
    try:
        server.add_insecure_port(f"unix:{config.socket}")
        remote.add_grpc_ports(server)
        await server.start()
    except RuntimeError as exc:  # grpc's "Failed to bind" (checked before; a race)
        await docker_api.aclose()
        await runtime.aclose()
        raise FailedPrecondition(f"cannot listen on {config.socket}: {exc}") from None
    except FailedPrecondition:
        await docker_api.aclose()
        await runtime.aclose()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(config.socket, 0o600)
    await remote.start_docker(runtime)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "daemon_started",
        version=__version__,
        socket=str(config.socket),
        data_dir=str(config.data_dir),
        rootless=rootless,
        storage_driver=runtime.snapshotter.name,
        runtime=runtime.oci_runtime.name,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("daemon_stopping")
    await health_servicer.enter_graceful_shutdown()
    await remote.aclose()
    runtime.events.shutdown()  # live event streams end now rather than after the grace
    await server.stop(grace=5)
    await docker_api.aclose()
    await streaming.aclose()
    await runtime.aclose()
    with contextlib.suppress(FileNotFoundError):
        config.socket.unlink()
    log.info("daemon_stopped")


def run(config: Config, *, lock_fd: int, rootless: bool) -> int:
    daemon_logging.configure(debug=config.debug)
    try:
        asyncio.run(serve(config, rootless=rootless))
    finally:
        os.close(lock_fd)
    return 0

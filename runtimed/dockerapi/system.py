"""/_ping, /version, /info and /auth: who the daemon is, and registry logins."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import socket
from typing import Any

from runtimed import __version__, hostinfo
from runtimed.core.model import Status
from runtimed.dockerapi.context import Context
from runtimed.dockerapi.http import Request, Response, json_response
from runtimed.dockerapi.router import API_VERSION, MIN_API_VERSION, Router
from runtimed.errors import InvalidArgument
from runtimed.images.auth import Credential, normalize_registry

# Go's names for machines, as docker reports Arch (Architecture keeps the kernel's).
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}
DEFAULT_INDEX = "https://index.docker.io/v1/"


def go_arch() -> str:
    machine = platform.machine()
    return GO_ARCH.get(machine, machine)


def register(router: Router, ctx: Context) -> None:
    h = SystemHandlers(ctx)
    router.add("GET", "/_ping", h.ping)
    router.add("HEAD", "/_ping", h.ping)
    router.add("GET", "/version", h.version)
    router.add("GET", "/info", h.info)
    router.add("POST", "/auth", h.auth)


class SystemHandlers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.services = ctx.services

    async def ping(self, request: Request) -> Response:
        return Response(
            body=b"OK",
            content_type="text/plain; charset=utf-8",
            headers=[
                ("Builder-Version", "1"),
                ("Swarm", "inactive"),
                ("Cache-Control", "no-cache, no-store, must-revalidate"),
                ("Pragma", "no-cache"),
            ],
        )

    async def version(self, request: Request) -> Response:
        details = {
            "ApiVersion": API_VERSION,
            "Arch": go_arch(),
            "BuildTime": "",
            "Experimental": "false",
            "GitCommit": "",
            "GoVersion": f"python{platform.python_version()}",
            "KernelVersion": platform.release(),
            "MinAPIVersion": MIN_API_VERSION,
            "Os": "linux",
        }
        runtime = self.services.oci_runtime
        return json_response(
            {
                "Platform": {"Name": f"runtimed {__version__}"},
                "Components": [
                    {"Name": "Engine", "Version": __version__, "Details": details},
                    {
                        "Name": runtime.name,
                        "Version": runtime.version,
                        "Details": {"Path": runtime.path},
                    },
                ],
                "Version": __version__,
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "GitCommit": "",
                "GoVersion": details["GoVersion"],
                "Os": "linux",
                "Arch": details["Arch"],
                "KernelVersion": details["KernelVersion"],
                "BuildTime": "",
            }
        )

    async def info(self, request: Request) -> Response:
        s = self.services
        containers = s.containers.list()
        running = sum(1 for c in containers if c.state.status == Status.RUNNING)
        runtime = s.oci_runtime
        plugins = await s.volumes.plugins()
        cfg = s.config
        insecure = [r for r in cfg.insecure_registries if "/" in r]
        index_configs: dict[str, Any] = {
            "docker.io": {
                "Name": "docker.io",
                "Mirrors": [],
                "Secure": True,
                "Official": True,
            }
        }
        for host in cfg.insecure_registries:
            if "/" not in host:
                index_configs[host] = {
                    "Name": host,
                    "Mirrors": [],
                    "Secure": False,
                    "Official": False,
                }
        doc: dict[str, Any] = {
            "ID": _daemon_id(cfg.data_dir),
            "Containers": len(containers),
            "ContainersRunning": running,
            "ContainersPaused": 0,
            "ContainersStopped": len(containers) - running,
            "Images": len(s.images.list()),
            "Driver": s.snapshotter.name,
            "DriverStatus": [["Backing Filesystem", "extfs"]],
            "Plugins": {
                "Volume": sorted({p.name for p in plugins if p.kind == "volumedriver"} | {"local"}),
                "Network": ["bridge", "host", "null"],
                "Authorization": None,
                "Log": sorted(s.containers.log_drivers.names()),
            },
            "MemoryLimit": False,
            "SwapLimit": False,
            "CpuCfsPeriod": False,
            "CpuCfsQuota": False,
            "CPUShares": False,
            "CPUSet": False,
            "PidsLimit": False,
            "IPv4Forwarding": True,
            "Debug": cfg.debug,
            "NFd": _open_fds(),
            "OomKillDisable": False,
            "NGoroutines": 0,
            "SystemTime": dt.datetime.now(dt.UTC).astimezone().isoformat(),
            "LoggingDriver": cfg.default_log_driver,
            "CgroupDriver": "none",
            "CgroupVersion": hostinfo.cgroup_version(),
            "NEventsListener": 0,
            "KernelVersion": platform.release(),
            "OperatingSystem": hostinfo.os_name(),
            "OSVersion": hostinfo.os_version(),
            "OSType": "linux",
            "Architecture": platform.machine(),
            "IndexServerAddress": DEFAULT_INDEX,
            "RegistryConfig": {
                "InsecureRegistryCIDRs": insecure,
                "IndexConfigs": index_configs,
                "Mirrors": [],
            },
            "NCPU": os.cpu_count() or 0,
            "MemTotal": hostinfo.mem_total(),
            "DockerRootDir": str(cfg.data_dir),
            "HttpProxy": os.environ.get("HTTP_PROXY", ""),
            "HttpsProxy": os.environ.get("HTTPS_PROXY", ""),
            "NoProxy": os.environ.get("NO_PROXY", ""),
            "Name": socket.gethostname(),
            "Labels": [],
            "ExperimentalBuild": False,
            "ServerVersion": __version__,
            "Runtimes": {runtime.name: {"path": runtime.path}},
            "DefaultRuntime": runtime.name,
            "Swarm": {
                "NodeID": "",
                "NodeAddr": "",
                "LocalNodeState": "inactive",
                "ControlAvailable": False,
                "Error": "",
                "RemoteManagers": None,
            },
            "LiveRestoreEnabled": True,
            "Isolation": "",
            "InitBinary": "",
            "ContainerdCommit": {"ID": ""},
            "RuncCommit": {"ID": runtime.version},
            "InitCommit": {"ID": ""},
            "SecurityOptions": ["name=seccomp,profile=builtin"]
            + (["name=rootless"] if s.rootless else []),
            "Warnings": [],
        }
        return json_response(doc)

    async def auth(self, request: Request) -> Response:
        body = await request.json(default={})
        if not isinstance(body, dict):
            raise InvalidArgument("auth: the body must be a JSON object")
        username = str(body.get("username") or "")
        password = str(body.get("password") or "")
        token = str(body.get("identitytoken") or "") or None
        if not username and not token:
            raise InvalidArgument("auth: a username is required")
        server = normalize_registry(str(body.get("serveraddress") or "") or "docker.io")
        await self.services.registry.check_login(server, Credential(username, password, token))
        return json_response({"Status": "Login Succeeded", "IdentityToken": ""})


def _daemon_id(data_dir: os.PathLike[str]) -> str:
    """A stable id for this daemon's state (docker's is a UUID kept in its root)."""
    return hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:36]


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0

"""System commands: version, info, login, logout."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from runtimed import __version__
from runtimed.cli.client import Client, CliError
from runtimed.cli.format import human_size, render
from runtimed.cli.rpc import RpcError
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

if TYPE_CHECKING:
    from runtimed.images.auth import CredentialStore

API_VERSION = "1"


def cmd_version(client: Client, args: argparse.Namespace) -> int:
    import platform  # only here: every runtimectl command loads this module

    client_doc = {
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "PythonVersion": platform.python_version(),
        "Os": sys.platform,
        "Arch": platform.machine(),
    }
    if args.format:
        v = client.engine.Version(pb.VersionRequest())
        doc = {"Client": client_doc, "Server": _server_version(v)}
        print(render(_json_format(args.format), doc, "command.versionInfo"))
        return 0
    print("Client:")
    print(f" Version:        {client_doc['Version']}")
    print(f" API version:    {client_doc['ApiVersion']}")
    print(f" Python version: {client_doc['PythonVersion']}")
    print(f" OS/Arch:        {client_doc['Os']}/{client_doc['Arch']}")
    print()
    try:
        v = client.engine.Version(pb.VersionRequest())
    except RpcError:
        print("Server: unreachable", file=sys.stderr)
        raise
    print("Server: runtimed")
    print(" Engine:")
    print(f"  Version:        {v.version}")
    print(f"  API version:    {v.api_version}")
    print(f"  CRI version:    {v.cri_version}")
    print(f"  Python version: {v.python_version}")
    print(f"  OS/Arch:        {v.os}/{v.arch}")
    print(f"  Kernel:         {v.kernel_version}")
    return 0


def _json_format(fmt: str) -> str:
    """docker's `--format json` is the template `{{json .}}`."""
    return "{{json .}}" if fmt == "json" else fmt


def _server_version(v: pb.VersionResponse) -> dict[str, Any]:
    return {
        "Version": v.version,
        "ApiVersion": v.api_version,
        "CriVersion": v.cri_version,
        "PythonVersion": v.python_version,
        "Os": v.os,
        "Arch": v.arch,
        "KernelVersion": v.kernel_version,
    }


def info_doc(i: pb.InfoResponse) -> dict[str, Any]:
    """What `info --format` templates see: docker's field names, then runtimed's own."""
    return {
        "Containers": i.containers,
        "ContainersRunning": i.containers_running,
        "ContainersPaused": 0,
        "ContainersStopped": i.containers_stopped,
        "Images": i.images,
        "Driver": i.storage_driver,
        "LoggingDriver": i.default_log_driver,
        "CgroupVersion": i.cgroup_version,
        "KernelVersion": i.kernel_version,
        "OperatingSystem": i.operating_system,
        "OSType": "linux",
        "Architecture": i.arch,
        "NCPU": i.ncpu,
        "MemTotal": i.mem_total,
        "DockerRootDir": i.data_dir,
        "Debug": i.debug,
        "ServerVersion": i.server_version,
        "DefaultRuntime": i.runtime,
        "SecurityOptions": ["name=rootless"] if i.rootless else [],
        "RuntimePath": i.runtime_path,
        "RuntimeVersion": i.runtime_version,
        "Rootless": i.rootless,
        "UIDMap": i.uid_map,
        "RunDir": i.run_dir,
        "Socket": i.socket,
        "ConfigFile": i.config_file,
        "RegistriesConf": i.registries_conf,
        "Registries": [
            {
                "Prefix": r.prefix,
                "Location": r.location,
                "Insecure": r.insecure,
                "Blocked": r.blocked,
                "Mirrors": list(r.mirrors),
            }
            for r in i.registries
        ],
        "InsecureRegistries": list(i.insecure_registries),
        "SearchRegistries": list(i.search_registries),
    }


def cmd_info(client: Client, args: argparse.Namespace) -> int:
    i = client.engine.Info(pb.InfoRequest())
    if args.format:
        print(render(_json_format(args.format), info_doc(i), "system.dockerInfo"))
        return 0
    lines = [
        "Server:",
        f" Containers: {i.containers}",
        f"  Running: {i.containers_running}",
        f"  Stopped: {i.containers_stopped}",
        f" Images: {i.images}",
        f" Server Version: {i.server_version}",
        f" Storage Driver: {i.storage_driver}",
        f" Logging Driver: {i.default_log_driver}",
        f" Cgroup Driver: {i.cgroup_driver or 'none'}",
        f" Cgroup Version: {i.cgroup_version}",
        f" Cgroup Controllers: {' '.join(i.cgroup_controllers) or 'none'}",
        f" Runtime: {i.runtime} ({i.runtime_path}, version {i.runtime_version})",
        f" Rootless: {'true' if i.rootless else 'false'}",
        f" UID map: {i.uid_map}",
        f" Kernel Version: {i.kernel_version}",
        f" Operating System: {i.operating_system}",
        f" Architecture: {i.arch}",
        f" CPUs: {i.ncpu}",
        f" Total Memory: {human_size(i.mem_total)}",
        f" Data Dir: {i.data_dir}",
        f" Run Dir: {i.run_dir}",
        f" Socket: unix://{i.socket}",
        f" Debug Mode: {'true' if i.debug else 'false'}",
    ]
    if i.cgroup_warning:
        lines.append(f"WARNING: no cgroups: {i.cgroup_warning}")
    if i.registries:
        lines.append(" Registries:")
    for reg in i.registries:
        flags = []
        if reg.insecure:
            flags.append("insecure")
        if reg.blocked:
            flags.append("blocked")
        mirrors = f" mirrors: {', '.join(reg.mirrors)}" if reg.mirrors else ""
        suffix = f" ({', '.join(flags)})" if flags else ""
        lines.append(f"  {reg.prefix or reg.location} -> {reg.location}{suffix}{mirrors}")
    if i.insecure_registries:
        lines.append(" Insecure Registries:")
        lines += [f"  {r}" for r in i.insecure_registries]
    if i.search_registries:
        lines.append(" Search Registries: " + ", ".join(i.search_registries))
    print("\n".join(lines))
    return 0


def cmd_login(client: Client, args: argparse.Namespace) -> int:
    username = args.username
    if not username:
        if not sys.stdin.isatty():
            raise CliError("Error: Cannot perform an interactive login from a non TTY device")
        username = input("Username: ").strip()
    if args.password_stdin:
        if args.password:
            raise CliError("--password and --password-stdin are mutually exclusive", 125)
        password = sys.stdin.readline().rstrip("\n")
    elif args.password is not None:
        print(
            "WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
            file=sys.stderr,
        )
        password = args.password
    else:
        import getpass

        password = getpass.getpass("Password: ")
    if not password:
        raise CliError("Error: Password Required")
    reply = client.engine.Login(
        pb.LoginRequest(server=args.server or "", username=username, password=password)
    )
    _credential_store().store(reply.server, username, password)
    print(reply.status)
    return 0


def cmd_logout(client: Client | None, args: argparse.Namespace) -> int:
    store = _credential_store()
    from runtimed.images.auth import normalize_registry

    server = normalize_registry(args.server or "docker.io")
    if store.get(server) is None:
        print(f"Not logged in to {server}")
        return 0
    store.erase(server)
    print(f"Removing login credentials for {server}")
    return 0


def _credential_store() -> CredentialStore:
    """The credential store, its warnings (a failing credential helper) sent to stderr:
    stdout carries only the command's own answer (`Login Succeeded`), as docker's."""
    import structlog

    from runtimed.images.auth import CredentialStore  # only login/logout pay for it

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    return CredentialStore()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("version", help="show client and daemon versions")
    p.add_argument("-f", "--format", help="json or a Go template")
    p.set_defaults(func=cmd_version)
    p = sub.add_parser("info", help="show daemon-wide information")
    p.add_argument("-f", "--format", help="json or a Go template")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("login", help="log in to a registry")
    p.add_argument("server", nargs="?")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(func=cmd_login)
    p = sub.add_parser("logout", help="forget a registry's credentials")
    p.add_argument("server", nargs="?")
    p.set_defaults(func=cmd_logout, offline=True)

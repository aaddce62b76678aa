"""Container commands: run, create, start, stop, kill, restart, wait, rename, rm, prune, ps,
inspect, logs, top, exec, attach (cp lives in cli/cp.py).

Flags and exit codes follow docker: `run` and `create` exit 125 when the daemon
refuses before the process starts, 126/127 when the command cannot be run,
and otherwise with the container's own exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from runtimed.cli import cp, images, networks, volumes
from runtimed.cli.client import Client, CliError, confirmed, daemon_error
from runtimed.cli.format import human_size, inspect_template, print_docs, table
from runtimed.cli.healthflags import add_health_flags
from runtimed.cli.netflags import add_network_flags
from runtimed.cli.psformat import LogPrinter, format_ps, ps_row
from runtimed.cli.resourceflags import add_resource_flags
from runtimed.cli.rpc import ConnectError, RpcError, StatusCode
from runtimed.cli.runflags import (
    RM_WAIT,
    build_create_request,
    detach_keys_or_fail,
    parse_env,
)
from runtimed.cli.stdio import (
    StdioResult,
    StdioSession,
    Terminated,
    is_tty,
    stdin_fd,
)
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

# --- talking to the daemon --------------------------------------------------------------------


def start_error_code(message: str) -> int:
    """docker's rule: 127 when the command is missing, 126 when it cannot run, else 125."""
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return 127
    if "permission denied" in lowered or "is a directory" in lowered:
        return 126
    return 125


def start_failure(client: Client, exc: RpcError) -> CliError:
    """A failed create or start: 126/127 speak of the container's command, so a daemon
    that could not be reached at all is 125."""
    if isinstance(exc, ConnectError):
        return CliError(daemon_error(client, exc), 125)
    return CliError(daemon_error(client, exc), start_error_code(exc.details()))


def _display_ref(ref: str) -> str:
    if "@" in ref or ":" in ref.rsplit("/", 1)[-1]:
        return ref
    return ref + ":latest"


def _pull_to_stderr(client: Client, ref: str, platform: str, quiet: bool) -> None:
    """Pull with docker's progress display, on stderr so stdout stays the container's."""
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(open(os.devnull, "w")) if quiet else sys.stderr  # noqa: SIM115
        stack.enter_context(contextlib.redirect_stdout(target))
        images.pull(client, ref, platform=platform, quiet=quiet)


def create_container(client: Client, req: pb.CreateContainerRequest, pull: str, quiet: bool) -> str:
    """CreateContainer, pulling the image first or when the daemon does not have it."""
    try:
        if pull == "always":
            _pull_to_stderr(client, req.image, req.platform, quiet)
        try:
            reply = client.engine.CreateContainer(req)
        except RpcError as exc:
            missing = exc.code() == StatusCode.NOT_FOUND and "image" in exc.details().lower()
            if pull == "never" or not missing:
                raise
            print(f"Unable to find image '{_display_ref(req.image)}' locally", file=sys.stderr)
            _pull_to_stderr(client, req.image, req.platform, quiet)
            reply = client.engine.CreateContainer(req)
    except RpcError as exc:
        # Nothing has run yet: whatever the create refused is docker's 125.
        raise CliError(daemon_error(client, exc), 125) from None
    for warning in reply.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    return reply.id


def start_container(client: Client, ident: str) -> None:
    try:
        client.engine.StartContainer(pb.ContainerRef(id=ident))
    except RpcError as exc:
        raise start_failure(client, exc) from None


def container_doc(client: Client, ref: str) -> dict[str, Any]:
    """What `docker container inspect` prints for one container (RpcError as the daemon says)."""
    doc: dict[str, Any] = json.loads(client.engine.InspectContainer(pb.ContainerRef(id=ref)).json)
    return doc


def inspect_container(client: Client, ref: str) -> dict[str, Any]:
    try:
        return container_doc(client, ref)
    except RpcError as exc:
        if exc.code() == StatusCode.NOT_FOUND:
            raise CliError(f"Error: No such container: {ref}") from None
        raise


def _signal_forwarder(client: Client, ident: str) -> Callable[[int], None]:
    def forward(signum: int) -> None:
        client.engine.KillContainer(pb.KillContainerRequest(id=ident, signal=str(signum)))

    return forward


def _check_tty(attach_stdin: bool, tty: bool, fd: int | None) -> None:
    if attach_stdin and tty and not is_tty(fd):
        raise CliError("the input device is not a TTY")


def run_session(
    client: Client,
    session: StdioSession,
    ident: str,
    *,
    error_code: int,
    detach_message: str | None = None,
) -> int:
    """Drive the session; the exit message's code becomes ours."""
    try:
        result: StdioResult = session.run()
    except Terminated as exc:
        return 128 + exc.signum
    except RpcError as exc:
        details = exc.details()
        code = start_error_code(details) if error_code == 125 else error_code
        raise CliError(daemon_error(client, exc), code) from None
    if result.detached:
        if detach_message:
            print(detach_message, file=sys.stderr)
        return 0
    if result.exit_code is not None:
        return result.exit_code
    # The stream ended without an exit message (daemon restarted): ask for the code.
    try:
        return client.engine.WaitContainer(pb.WaitContainerRequest(id=ident)).exit_code
    except RpcError:
        return error_code


# --- commands ---------------------------------------------------------------------------------


def cmd_create(client: Client, args: argparse.Namespace) -> int:
    req = build_create_request(args, os.environ)
    print(create_container(client, req, args.pull, args.quiet))
    return 0


def cmd_run(client: Client, args: argparse.Namespace) -> int:
    req = build_create_request(args, os.environ)
    keys = detach_keys_or_fail(args.detach_keys, 125)
    attach_stdin = args.interactive and not args.detach
    fd = stdin_fd() if attach_stdin else None
    if not args.detach:
        _check_tty(attach_stdin, args.tty, fd)
    ident = create_container(client, req, args.pull, args.quiet)
    if args.detach:
        start_container(client, ident)
        print(ident)
        return 0
    session = StdioSession(
        client.engine.Attach,
        pb.StdioInput(
            attach=pb.AttachOptions(
                id=ident,
                stdin=attach_stdin,
                stdout=True,
                stderr=True,
                detach_keys=args.detach_keys or "",
            )
        ),
        stdin=fd,
        tty=args.tty,
        detach_keys=keys,
        on_ready=lambda: start_container(client, ident),
        forward_signal=_signal_forwarder(client, ident) if args.sig_proxy else None,
    )
    code = run_session(client, session, ident, error_code=125)
    if args.rm and session.exited:
        # Like docker, return only once --rm has removed it, so a following ps agrees.
        with contextlib.suppress(RpcError):
            client.engine.WaitContainer(
                pb.WaitContainerRequest(id=ident, condition="removed"), timeout=RM_WAIT
            )
    return code


def _attach_session(
    client: Client,
    doc: Mapping[str, Any],
    *,
    want_stdin: bool,
    detach_keys: str | None,
    sig_proxy: bool,
    on_ready: Callable[[], None] | None,
) -> StdioSession:
    config = doc.get("Config") or {}
    ident = str(doc.get("Id") or doc.get("ID") or "")
    tty = bool(config.get("Tty"))
    attach_stdin = want_stdin and bool(config.get("OpenStdin"))
    fd = stdin_fd() if attach_stdin else None
    _check_tty(attach_stdin, tty, fd)
    keys = detach_keys_or_fail(detach_keys, 1)
    return StdioSession(
        client.engine.Attach,
        pb.StdioInput(
            attach=pb.AttachOptions(
                id=ident,
                stdin=attach_stdin,
                stdout=True,
                stderr=True,
                detach_keys=detach_keys or "",
            )
        ),
        stdin=fd,
        tty=tty,
        detach_keys=keys,
        on_ready=on_ready,
        forward_signal=_signal_forwarder(client, ident) if sig_proxy and not tty else None,
    )


def cmd_start(client: Client, args: argparse.Namespace) -> int:
    if args.attach or args.interactive:
        if len(args.containers) > 1:
            raise CliError("you cannot start and attach multiple containers at once")
        doc = inspect_container(client, args.containers[0])
        ident = str(doc.get("Id") or args.containers[0])
        running = bool((doc.get("State") or {}).get("Running"))
        session = _attach_session(
            client,
            doc,
            want_stdin=args.interactive,
            detach_keys=args.detach_keys,
            sig_proxy=True,
            on_ready=None if running else (lambda: start_container(client, ident)),
        )
        return run_session(client, session, ident, error_code=1)
    failed: list[str] = []
    for ref in args.containers:
        try:
            client.engine.StartContainer(pb.ContainerRef(id=ref))
        except RpcError as exc:
            print(daemon_error(client, exc), file=sys.stderr)
            failed.append(ref)
            continue
        print(ref)
    if failed:
        print(f"Error: failed to start containers: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def cmd_attach(client: Client, args: argparse.Namespace) -> int:
    doc = inspect_container(client, args.container)
    state = doc.get("State") or {}
    if state.get("Paused"):
        raise CliError("You cannot attach to a paused container, unpause it first")
    if state.get("Restarting"):
        raise CliError("You cannot attach to a restarting container, wait until it is running")
    if not state.get("Running"):
        raise CliError("You cannot attach to a stopped container, start it first")
    session = _attach_session(
        client,
        doc,
        want_stdin=not args.no_stdin,
        detach_keys=args.detach_keys,
        sig_proxy=args.sig_proxy,
        on_ready=None,
    )
    ident = str(doc.get("Id") or args.container)
    return run_session(client, session, ident, error_code=1, detach_message="read escape sequence")


def _each(
    client: Client,
    refs: Sequence[str],
    action: Callable[[str], str | None],
    *,
    concurrent: bool = False,
) -> int:
    """Apply action to every ref, printing what it returns in the order given; failures
    do not stop the rest. `concurrent` runs them at once, as docker stops (kills, removes)
    several containers: three stops take about one grace period, not three."""

    def attempt(ref: str) -> str | None | RpcError:
        try:
            return action(ref)
        except RpcError as exc:
            return exc

    if concurrent and len(refs) > 1:
        from concurrent.futures import ThreadPoolExecutor  # only for several refs

        with ThreadPoolExecutor(max_workers=min(len(refs), 32)) as pool:
            outcomes = pool.map(attempt, refs)
    else:
        outcomes = map(attempt, refs)  # lazily: each line as soon as it is known
    failed = False
    for outcome in outcomes:
        if isinstance(outcome, RpcError):
            print(daemon_error(client, outcome), file=sys.stderr)
            failed = True
        elif outcome is not None:
            print(outcome, flush=True)
    return 1 if failed else 0


def _timeout(value: int | None) -> int:
    return -1 if value is None else value


def cmd_stop(client: Client, args: argparse.Namespace) -> int:
    def stop(ref: str) -> str:
        client.engine.StopContainer(
            pb.StopContainerRequest(id=ref, timeout=_timeout(args.time), signal=args.signal or "")
        )
        return ref

    return _each(client, args.containers, stop, concurrent=True)


def cmd_restart(client: Client, args: argparse.Namespace) -> int:
    def restart(ref: str) -> str:
        client.engine.RestartContainer(
            pb.StopContainerRequest(id=ref, timeout=_timeout(args.time), signal=args.signal or "")
        )
        return ref

    return _each(client, args.containers, restart, concurrent=True)


def cmd_kill(client: Client, args: argparse.Namespace) -> int:
    def kill(ref: str) -> str:
        client.engine.KillContainer(pb.KillContainerRequest(id=ref, signal=args.signal or ""))
        return ref

    return _each(client, args.containers, kill, concurrent=True)


def cmd_wait(client: Client, args: argparse.Namespace) -> int:
    def wait(ref: str) -> str:
        reply = client.engine.WaitContainer(pb.WaitContainerRequest(id=ref))
        if reply.error:
            print(reply.error, file=sys.stderr)
        return str(reply.exit_code)

    return _each(client, args.containers, wait)


def cmd_rename(client: Client, args: argparse.Namespace) -> int:
    client.engine.RenameContainer(pb.RenameContainerRequest(id=args.old, new_name=args.new))
    return 0


def cmd_rm(client: Client, args: argparse.Namespace) -> int:
    def remove(ref: str) -> str:
        client.engine.RemoveContainer(
            pb.RemoveContainerRequest(id=ref, force=args.force, volumes=args.volumes)
        )
        return ref

    return _each(client, args.containers, remove, concurrent=True)


def cmd_prune(client: Client, args: argparse.Namespace) -> int:
    if not args.force and not confirmed(
        "WARNING! This will remove all stopped containers.\n"
        "Are you sure you want to continue? [y/N] "
    ):
        return 0
    reply = client.engine.PruneContainers(
        pb.PruneContainersRequest(filters=images.parse_filters(args.filter))
    )
    if reply.deleted:
        print("Deleted Containers:")
        for ident in reply.deleted:
            print(ident)
        print()
    print(f"Total reclaimed space: {human_size(reply.space_reclaimed)}")
    return 0


def parse_ps_filters(values: Sequence[str] | None) -> list[pb.Filter]:
    filters = []
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"bad format of filter (expected name=value): {item}", 125)
        filters.append(pb.Filter(key=key.strip().lower(), value=value))
    return filters


def cmd_ps(client: Client, args: argparse.Namespace) -> int:
    last = 1 if args.latest else (args.last if args.last is not None and args.last >= 0 else 0)
    reply = client.engine.ListContainers(
        pb.ListContainersRequest(
            all=args.all or last > 0, filters=parse_ps_filters(args.filter), last=last
        )
    )
    rows = [ps_row(c, trunc=not args.no_trunc) for c in reply.containers]
    sys.stdout.write(format_ps(rows, args.format, quiet=args.quiet, size=args.size))
    return 0


# What `inspect` looks for, in docker's order when --type names none.
INSPECTORS: dict[str, Callable[[Client, str], dict[str, Any]]] = {
    "container": container_doc,
    "image": images.image_doc,
    "network": networks.network_doc,
    "volume": volumes.inspect_volume,
}


def _inspect_one(client: Client, ref: str, kind: str | None) -> dict[str, Any]:
    """docker inspect: the first container, image, network or volume of that name, unless
    --type says which."""
    for each in [kind] if kind else INSPECTORS:
        try:
            return INSPECTORS[each](client, ref)
        except RpcError as exc:
            if exc.code() != StatusCode.NOT_FOUND:
                raise
    raise CliError(f"Error: No such {kind or 'object'}: {ref}")


def cmd_inspect(client: Client, args: argparse.Namespace) -> int:
    template = inspect_template(args.format)
    docs: list[dict[str, Any]] = []
    failed = False
    for ref in args.names:
        try:
            docs.append(_inspect_one(client, ref, args.type))
        except CliError as exc:
            print(exc.message, file=sys.stderr)
            failed = True
        except RpcError as exc:
            print(daemon_error(client, exc), file=sys.stderr)
            failed = True
    return 0 if print_docs(docs, template) and not failed else 1


def _parse_tail(text: str) -> int:
    if text == "all":
        return -1
    try:
        return int(text)
    except ValueError:
        raise CliError(f"invalid value for --tail: '{text}': use a number or all", 125) from None


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    req = pb.ContainerLogsRequest(
        id=args.container,
        follow=args.follow,
        tail=_parse_tail(args.tail),
        since=args.since or "",
        until=args.until or "",
        # The CLI stamps lines itself from time_nano, so the data stays untouched.
        timestamps=False,
        stdout=True,
        stderr=True,
    )
    printer = LogPrinter(args.timestamps)
    # The request has no details field: the daemon reads this metadata instead.
    metadata = [("runtimed-log-details", "1")] if args.details else None
    last = None
    for entry in client.engine.ContainerLogs(req, metadata=metadata):
        out = sys.stderr if entry.stream == "stderr" else sys.stdout
        data = printer.format(entry)
        buffer = getattr(out, "buffer", out)
        if last is not None and last is not buffer:
            last.flush()  # keep stdout and stderr in order on a shared terminal
        buffer.write(data)
        last = buffer
        if args.follow:
            buffer.flush()
    for out in (sys.stdout, sys.stderr):
        getattr(out, "buffer", out).flush()
    return 0


def cmd_top(client: Client, args: argparse.Namespace) -> int:
    reply = client.engine.TopContainer(
        pb.TopContainerRequest(id=args.container, ps_args=" ".join(args.ps_args))
    )
    print(table(list(reply.titles), [list(row.fields) for row in reply.processes]))
    return 0


def _exec_error_code(details: str) -> int:
    code = start_error_code(details)
    return 1 if code == 125 else code


def cmd_exec(client: Client, args: argparse.Namespace) -> int:
    if not args.cmd:
        raise CliError('"runtimectl exec" requires at least 2 arguments: CONTAINER COMMAND...')
    attach_stdin = args.interactive and not args.detach
    fd = stdin_fd() if attach_stdin else None
    if not args.detach:
        _check_tty(attach_stdin, args.tty, fd)
    keys = detach_keys_or_fail(args.detach_keys, 1)
    options = pb.ExecOptions(
        id=args.container,
        cmd=args.cmd,
        env=parse_env(args.env_file, args.env, os.environ),
        user=args.user or "",
        working_dir=args.workdir or "",
        tty=args.tty,
        stdin=attach_stdin,
        detach=args.detach,
        privileged=args.privileged,
        detach_keys=args.detach_keys or "",
    )
    if args.detach:
        return _exec_detached(client, options)
    session = StdioSession(
        client.engine.Exec,
        pb.StdioInput(exec=options),
        stdin=fd,
        tty=args.tty,
        detach_keys=keys,
    )
    try:
        result = session.run()
    except Terminated as exc:
        return 128 + exc.signum
    except RpcError as exc:
        raise CliError(daemon_error(client, exc), _exec_error_code(exc.details())) from None
    if result.exit_code is None and not result.detached:
        print("exec session ended without an exit status", file=sys.stderr)
        return 1
    return result.exit_code or 0


def _exec_detached(client: Client, options: pb.ExecOptions) -> int:
    """exec -d: return once the daemon says the process runs (or already ended)."""
    done = threading.Event()

    def requests() -> Iterator[pb.StdioInput]:
        yield pb.StdioInput(exec=options)
        done.wait()

    call = client.engine.Exec(requests())
    try:
        for message in call:
            if message.WhichOneof("msg") in ("ready", "exit"):
                break
    except RpcError as exc:
        raise CliError(daemon_error(client, exc), _exec_error_code(exc.details())) from None
    finally:
        done.set()
        call.cancel()
    return 0


# --- argument parsers -------------------------------------------------------------------------


def _add_bool_variants(p: argparse.ArgumentParser, flag: str, dest: str, default: bool) -> None:
    """A docker-style boolean: `--flag`, `--flag=true`, `--flag=false` (no separate value)."""
    p.add_argument(
        flag, dest=dest, action="store_const", const=True, default=default, help=f"{flag}[=false]"
    )
    for word, value in (("true", True), ("false", False), ("1", True), ("0", False)):
        p.add_argument(
            f"{flag}={word}", dest=dest, action="store_const", const=value, help=argparse.SUPPRESS
        )


def _add_create_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--help", action="help", help="show this help message and exit")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    add_network_flags(p)
    p.add_argument("--name", help="assign a name to the container")
    p.add_argument("-e", "--env", action="append", help="set environment variables")
    p.add_argument("--env-file", action="append", help="read environment variables from a file")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-u", "--user", help="user (name|uid[:group|gid])")
    p.add_argument("--entrypoint", help="override the image's ENTRYPOINT")
    p.add_argument("-h", "--hostname", help="container host name")
    p.add_argument("-l", "--label", action="append", help="set metadata on the container")
    p.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    p.add_argument(
        "--pid", metavar="MODE", help="PID namespace: host, or container:NAME to share its"
    )
    p.add_argument("--restart", help="no | on-failure[:max-retries] | always | unless-stopped")
    p.add_argument("--stop-signal", help="signal to stop the container")
    p.add_argument("--stop-timeout", type=int, help="seconds to wait before killing on stop")
    p.add_argument(
        "-v", "--volume", action="append", help="HOST:CTR[:ro], NAME:CTR[:ro,nocopy] or CTR"
    )
    p.add_argument("--mount", action="append", help="type=bind|volume|tmpfs,source=,target=,...")
    p.add_argument("--tmpfs", action="append", help="mount a tmpfs: /path[:size=64m,mode=1777]")
    p.add_argument("--volumes-from", action="append", help="mount CONTAINER's volumes [:ro|rw]")
    p.add_argument("--volume-driver", help="driver of the -v volumes this container creates")
    p.add_argument("--platform", help="os/arch[/variant] of the image")
    p.add_argument("--pull", default="missing", help="pull image: always | missing | never")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress the pull output")
    p.add_argument("--log-driver", help="logging driver for the container")
    p.add_argument("--log-opt", action="append", help="log driver options KEY=VALUE")
    add_resource_flags(p)
    add_health_flags(p)
    p.add_argument("image")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")


def _add_create(p: argparse.ArgumentParser) -> None:
    _add_create_flags(p)
    p.set_defaults(func=cmd_create, daemon_error_code=125)


def _add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true", help="run in the background, print id")
    p.add_argument("--detach-keys", help="key sequence for detaching (default ctrl-p,ctrl-q)")
    _add_bool_variants(p, "--sig-proxy", "sig_proxy", True)
    _add_create_flags(p)
    p.set_defaults(func=cmd_run, daemon_error_code=125)


def _add_start(p: argparse.ArgumentParser) -> None:
    p.add_argument("containers", nargs="+")
    p.add_argument("-a", "--attach", action="store_true", help="attach stdout/stderr")
    p.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    p.add_argument("--detach-keys")
    p.set_defaults(func=cmd_start)


def _add_stop(p: argparse.ArgumentParser, func: Callable[..., int]) -> None:
    p.add_argument("containers", nargs="+")
    p.add_argument("-t", "--time", "--timeout", dest="time", type=int, help="seconds before kill")
    p.add_argument("-s", "--signal", help="signal to send")
    p.set_defaults(func=func)


def _add_kill(p: argparse.ArgumentParser) -> None:
    p.add_argument("containers", nargs="+")
    p.add_argument("-s", "--signal", help="signal to send (default KILL)")
    p.set_defaults(func=cmd_kill)


def _add_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_wait)


def _add_rename(p: argparse.ArgumentParser) -> None:
    p.add_argument("old")
    p.add_argument("new")
    p.set_defaults(func=cmd_rename)


def _add_rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("containers", nargs="+")
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("-v", "--volumes", action="store_true", help="remove anonymous volumes")
    p.set_defaults(func=cmd_rm)


def _add_prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="do not prompt")
    p.add_argument("--filter", action="append", help="until=..., label=K[=V]")
    p.set_defaults(func=cmd_prune)


def _add_ps(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="show all containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-n", "--last", type=int, help="show the n last created containers")
    p.add_argument("-l", "--latest", action="store_true", help="show the latest container")
    p.add_argument("-f", "--filter", action="append", help="KEY=VALUE")
    p.add_argument("--format", help="table | json | Go template")
    p.add_argument("-s", "--size", action="store_true", help="show sizes")
    p.set_defaults(func=cmd_ps)


def _add_inspect(p: argparse.ArgumentParser, kind: str | None) -> None:
    p.add_argument("names", nargs="+")
    p.add_argument("-f", "--format", help="Go template")
    p.add_argument("-s", "--size", action="store_true", help="accepted for compatibility")
    if kind is None:
        p.add_argument("--type", choices=list(INSPECTORS))
    else:
        p.set_defaults(type=kind)
    p.set_defaults(func=cmd_inspect)


def _add_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("container")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail", default="all", help="lines from the end (or all)")
    p.add_argument("--since", help="RFC 3339 time, unix seconds or duration (10m)")
    p.add_argument("--until", help="RFC 3339 time, unix seconds or duration (10m)")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--details", action="store_true", help="show the attributes of each line")
    p.set_defaults(func=cmd_logs)


def _add_top(p: argparse.ArgumentParser) -> None:
    p.add_argument("container")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_top)


def _add_exec(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-e", "--env", action="append")
    p.add_argument("--env-file", action="append")
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("--privileged", action="store_true")
    p.add_argument("--detach-keys")
    p.add_argument("container")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")
    p.set_defaults(func=cmd_exec)


def _add_attach(p: argparse.ArgumentParser) -> None:
    p.add_argument("container")
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--detach-keys")
    _add_bool_variants(p, "--sig-proxy", "sig_proxy", True)
    p.set_defaults(func=cmd_attach)


def register(sub: argparse._SubParsersAction, group: argparse._SubParsersAction) -> None:
    """Top-level commands (docker run) and the `container` group (docker container run)."""
    no_help = {"add_help": False}  # -h is --hostname for run/create, as in docker
    commands: list[tuple[str, list[str], str, Callable[[argparse.ArgumentParser], None]]] = [
        ("run", [], "create and start a container", _add_run),
        ("create", [], "create a container", _add_create),
        ("start", [], "start containers", _add_start),
        ("stop", [], "stop containers", lambda p: _add_stop(p, cmd_stop)),
        ("restart", [], "restart containers", lambda p: _add_stop(p, cmd_restart)),
        ("kill", [], "kill containers", _add_kill),
        ("wait", [], "wait for containers to stop, print exit codes", _add_wait),
        ("rename", [], "rename a container", _add_rename),
        ("rm", ["remove"], "remove containers", _add_rm),
        ("logs", [], "show a container's logs", _add_logs),
        ("top", [], "show a container's processes", _add_top),
        ("exec", [], "run a command in a running container", _add_exec),
        ("attach", [], "attach to a running container", _add_attach),
    ]
    for name, aliases, text, add in commands:
        extra = no_help if name in ("run", "create") else {}
        add(sub.add_parser(name, help=text, **extra))
        add(group.add_parser(name, aliases=aliases, help=text, **extra))
    _add_ps(sub.add_parser("ps", help="list containers"))
    _add_ps(group.add_parser("ls", aliases=["ps", "list"], help="list containers"))
    _add_prune(group.add_parser("prune", help="remove stopped containers"))
    _add_inspect(sub.add_parser("inspect", help="show containers or images"), None)
    _add_inspect(group.add_parser("inspect", help="show containers"), "container")
    cp.register(sub, group)

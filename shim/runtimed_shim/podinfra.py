"""The pod infra process: PID 1 of a pod's shared pid namespace, without a pause image.

Network, IPC and UTS namespaces of a pod are pinned by bind mounts, but a pid
namespace cannot be: once its init exits the kernel kills every process in it
and lets no new one in. So a pod whose containers share their processes (CRI
NamespaceMode POD) gets this process as the init of its pid namespace. The
launcher forks it (it shares the launcher's pages and costs little memory of
its own); it reaps every orphan the pod's containers leave behind and exits on
SIGTERM or SIGINT sent from outside the pod. The pod's own processes cannot
take it down: signals from inside the namespace are ignored, as the kernel
already ignores their SIGKILL.

Its pid and the inode of its pid namespace go into a pid file before the
launcher answers, so a daemon restarted after kill -9 finds it again (`find`)
and never mistakes a recycled pid for it. When it exits the kernel kills
whatever still runs in the namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal

from runtimed_shim.atomicfile import replace_file
from runtimed_shim.host import libc, libc_error, reaped, set_name, state

TYPE_CHECKING = False  # typing costs every shim ~2 MB; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

CLONE_NEWPID = 0x20000000
PROCESS_NAME = "pod-infra"
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_WATCHED = {signal.SIGCHLD, *_STOP_SIGNALS}


def start(pid_file: str, report_fd: int, shed: Callable[[], None]) -> NoReturn:
    """In a child of the launcher: make a pid namespace, fork its init, record, report, exit.

    `shed` closes what the init must not keep of the launcher's (sockets, the
    report pipe) and points stdio at /dev/null. The report written to
    `report_fd` is {"ok": true, "pid": N} or {"ok": false, "error": "..."}.
    """
    report: dict[str, object]
    try:
        os.setsid()
        if libc.unshare(CLONE_NEWPID) != 0:
            raise libc_error("unshare(CLONE_NEWPID)")
        # Blocked before the fork: a SIGTERM sent right after we report is not lost,
        # and a namespace's init ignores SIGTERM at its default disposition.
        signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
        pid = os.fork()
        if pid == 0:
            try:
                shed()
                _serve()
            finally:
                os._exit(1)
        try:
            record = {"pid": pid, "pid_ns": os.stat(f"/proc/{pid}/ns/pid").st_ino}
            replace_file(pid_file, json.dumps(record).encode() + b"\n", 0o600)
        except OSError:
            os.kill(pid, signal.SIGKILL)
            raise
        report = {"ok": True, "pid": pid}
    except OSError as exc:
        report = {"ok": False, "error": f"cannot start the pod infra process: {exc}"}
    with contextlib.suppress(OSError):
        os.write(report_fd, json.dumps(report).encode())
    os._exit(0)


def _serve() -> NoReturn:
    """PID 1 of the pod: reap whatever ends, until told to stop from outside."""
    set_name(PROCESS_NAME)
    _retitle(PROCESS_NAME)
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)  # the launcher ignores SIGINT; sigwait needs it
    while True:
        info = signal.sigwaitinfo(_WATCHED)
        # si_pid is 0 when the sender is outside our namespace (the daemon, the user).
        if info.si_signo in _STOP_SIGNALS and info.si_pid == 0:
            os._exit(0)
        _reap()


def _retitle(title: str) -> None:
    """Make `title` our whole command line, as setproctitle(3) does: the pod's `ps` would
    show the launcher's otherwise, host paths and all."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        # arg_start and arg_end are fields 48 and 49; the list starts at field 3.
        start, end = int(fields[45]), int(fields[46])
        text = title.encode()[: max(0, end - start - 2)]
        # A last byte that is not NUL tells the kernel to stop at our first NUL.
        area = text + b"\0" * (end - start - len(text) - 1) + b"."
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(area)
    except (OSError, ValueError, IndexError):
        pass  # cosmetic only


def _reap() -> None:
    for _ in reaped():
        pass


# --- the daemon's side ------------------------------------------------------------


def find(pid_file: str) -> int | None:
    """The pid of the live infra process `pid_file` records, or None.

    Live means: the process exists, is not a zombie, is ours, and its pid
    namespace is still the one recorded (a recycled pid is someone else).
    """
    try:
        with open(pid_file, "rb") as f:
            record = json.loads(f.read())
        pid, pid_ns = int(record["pid"]), int(record["pid_ns"])
        if pid <= 0:
            return None
        process_state = state(pid)
        owner = os.stat(f"/proc/{pid}").st_uid
        current_ns = os.stat(f"/proc/{pid}/ns/pid").st_ino
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if process_state in (b"Z", b"X") or owner != os.getuid() or current_ns != pid_ns:
        return None
    return pid


def stop(pid_file: str, timeout: float = 5.0) -> bool:
    """SIGTERM the infra process `pid_file` records, SIGKILL after `timeout`; wait for it.

    Returns True if one was running. A pid file naming anything else is left alone.
    """
    pid = find(pid_file)
    if pid is None:
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        # Checked again through the pidfd: the pid cannot be recycled under us now.
        if find(pid_file) != pid:
            return False
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, sig)
            ready, _, _ = select.select([pidfd], [], [], wait)
            if ready:  # it has exited (its parent reaps it)
                break
    finally:
        os.close(pidfd)
    return True

"""The client end of Attach and Exec: a terminal or pipes joined to a process in a container.

The gRPC stub is synchronous, so three threads share the work: the main
thread reads output and runs signal handlers, a pump thread reads stdin and
queues input, and gRPC's own thread drains the request queue onto the wire.
Signal handlers only put into a SimpleQueue (reentrant) or raise, so they
never deadlock on a lock the interrupted code holds.

With a tty and stdin attached the local terminal goes raw (the container's
pty does the line editing) and is restored on every way out: normal exit,
exceptions, SIGTERM/SIGHUP, detach.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal
import sys
import termios
import threading
import time
import tty as ttymod
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, NamedTuple

from runtimed.cli.rpc import RpcError, StatusCode
from runtimed.detachkeys import DetachScanner
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

# After a detach: at most this long for queued input to be sent, then this long for
# the daemon to take it, before the call is cancelled (unless the daemon ends it first).
DETACH_GRACE = 1.0
DETACH_SETTLE = 0.1
READ_SIZE = 32 * 1024
STDIN_WINDOW = 64

# What `--sig-proxy` forwards; SIGWINCH is a resize, SIGCHLD/SIGPIPE are ours.
PROXIED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


class StdioResult(NamedTuple):  # not a dataclass: that import alone costs runtimectl 5 ms
    """exit_code is None when the user detached or the stream ended without an exit."""

    exit_code: int | None
    detached: bool = False
    reason: str = ""


class Terminated(Exception):
    """SIGTERM/SIGHUP while the terminal is raw: unwind so it gets restored."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


_END = object()


def terminal_size(*fds: int) -> tuple[int, int] | None:
    """(rows, cols) of the first fd that is a terminal."""
    for fd in fds:
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        return size.lines, size.columns
    return None


def stdin_fd() -> int | None:
    return _fileno(sys.stdin)


def is_tty(fd: int | None) -> bool:
    return fd is not None and os.isatty(fd)


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    saved = termios.tcgetattr(fd)
    # TCSANOW: keys typed ahead stay in the input queue and reach the container.
    ttymod.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        # A hung-up terminal cannot be restored, and must not hide the real error.
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write(stream: Any, data: bytes) -> None:
    out = getattr(stream, "buffer", stream)
    out.write(data)
    out.flush()


class StdioSession:
    """One Attach or Exec call, from the options message to the exit message.

    call: the stub method (`client.engine.Attach` or `.Exec`).
    first: the StdioInput carrying the options.
    stdin: the fd to forward, or None. tty: the process has a terminal.
    detach_keys: parsed keys, honoured only with a tty and stdin (docker's rule).
    on_ready: runs once the daemon says input reaches the process (run starts the
    container here, so no output is lost). forward_signal: sig-proxy.
    """

    def __init__(
        self,
        call: Callable[[Iterator[pb.StdioInput]], Any],
        first: pb.StdioInput,
        *,
        stdin: int | None = None,
        tty: bool = False,
        detach_keys: bytes | None = None,
        on_ready: Callable[[], None] | None = None,
        forward_signal: Callable[[int], None] | None = None,
    ) -> None:
        self._call_fn = call
        self._first = first
        self.stdin = stdin
        self.tty = tty
        self.scanner = (
            DetachScanner(detach_keys) if detach_keys and tty and stdin is not None else None
        )
        self.on_ready = on_ready
        self.forward_signal = forward_signal
        self.detached = False
        self.exited = False  # an exit message arrived: the process is gone
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._signals: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        # Bounds what a fast stdin (a big file) can queue ahead of the network.
        self._stdin_credit = threading.Semaphore(STDIN_WINDOW)
        self._stopping = threading.Event()
        self._drained = threading.Event()
        self._call: Any = None
        self._threads: list[threading.Thread] = []

    # --- the request side ---

    def _request_iter(self) -> Iterator[pb.StdioInput]:
        yield self._first
        while True:
            item = self._requests.get()
            if item is _END:
                self._drained.set()  # everything queued before has been sent
                return
            yield item
            if item.WhichOneof("msg") == "stdin":
                self._stdin_credit.release()  # sent: the pump may read more

    def send_resize(self) -> None:
        if not self.tty:
            return
        fds = [fd for fd in (_fileno(sys.stdout), self.stdin) if fd is not None]
        if size := terminal_size(*fds):
            rows, cols = size
            self._requests.put(pb.StdioInput(resize=pb.Resize(rows=rows, cols=cols)))

    def _pump(self) -> None:
        fd = self.stdin
        assert fd is not None
        while True:
            try:
                ready, _, _ = select.select([fd, self._wake_r], [], [])
            except OSError:
                ready = [fd]
            if self._wake_r in ready:
                return
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:
                data = b""
            if self.scanner is not None:
                forward, detach = self.scanner.feed(data) if data else (self.scanner.flush(), False)
            else:
                forward, detach = data, False
            if forward:
                if not self._take_credit():
                    return
                self._requests.put(pb.StdioInput(stdin=forward))
            if detach:
                self._detach()
                return
            if not data:
                self._requests.put(pb.StdioInput(close_stdin=True))
                return

    def _take_credit(self) -> bool:
        """Wait until fewer than STDIN_WINDOW reads are unsent; False once shutting down."""
        while not self._stdin_credit.acquire(timeout=0.1):
            if self._stopping.is_set():
                return False
        return True

    def _detach(self) -> None:
        """End our half of the stream: what was typed before the keys still gets there, and
        the daemon ends the call without an exit message. Cancel if it does not, shortly."""
        self.detached = True
        self._requests.put(_END)

        def cancel_later() -> None:
            if self._drained.wait(DETACH_GRACE):
                time.sleep(DETACH_SETTLE)
            self._cancel()

        self._start_thread(cancel_later, "detach")

    def _cancel(self) -> None:
        if self._call is not None:
            self._call.cancel()

    def _forwarder(self) -> None:
        while (signum := self._signals.get()) is not None:
            with contextlib.suppress(Exception):
                assert self.forward_signal is not None
                self.forward_signal(signum)

    def _start_thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # --- signals and terminal ---

    def _install_signals(self, stack: contextlib.ExitStack, raw: bool) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread

        def install(signum: int, handler: Callable[[int, FrameType | None], None]) -> None:
            previous = signal.signal(signum, handler)
            stack.callback(signal.signal, signum, previous)

        if self.forward_signal is not None:
            self._start_thread(self._forwarder, "sig-proxy")
            stack.callback(self._signals.put, None)
            for signum in PROXIED_SIGNALS:
                install(signum, lambda s, _f: self._signals.put(s))
        elif raw:

            def terminate(signum: int, _frame: FrameType | None) -> None:
                raise Terminated(signum)

            install(signal.SIGTERM, terminate)
            install(signal.SIGHUP, terminate)
        if self.tty:
            install(signal.SIGWINCH, lambda _s, _f: self.send_resize())

    # --- the whole exchange ---

    def run(self) -> StdioResult:
        raw = self.tty and self.stdin is not None and is_tty(self.stdin)
        with contextlib.ExitStack() as stack:
            stack.callback(self._shutdown)
            self._install_signals(stack, raw)
            self._call = self._call_fn(self._request_iter())
            try:
                for message in self._call:
                    kind = message.WhichOneof("msg")
                    if self.detached:
                        continue  # the user has left: show nothing, wait for the call to end
                    if kind == "stdout":
                        _write(sys.stdout, message.stdout)
                    elif kind == "stderr":
                        _write(sys.stdout if self.tty else sys.stderr, message.stderr)
                    elif kind == "ready":
                        if raw:
                            assert self.stdin is not None
                            stack.enter_context(raw_terminal(self.stdin))
                        # The pty gets the right size before the process first draws.
                        self.send_resize()
                        if self.on_ready is not None:
                            self.on_ready()
                        if self.stdin is not None:
                            self._start_thread(self._pump, "stdin-pump")
                    elif kind == "exit":
                        self.exited = True
                        return StdioResult(message.exit.exit_code, reason=message.exit.reason)
            except RpcError as exc:
                if self.detached and exc.code() == StatusCode.CANCELLED:
                    return StdioResult(None, detached=True)
                raise
            return StdioResult(None, detached=self.detached)
        raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow

    def _shutdown(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._requests.put(_END)
        self._cancel()
        for thread in self._threads:
            if thread.name == "stdin-pump":
                thread.join(timeout=1)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


def _fileno(stream: Any) -> int | None:
    try:
        return int(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return None

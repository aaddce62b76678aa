"""The stdio of one process as the shim holds it: a stdin sink and output sources.

Output fds are read when readable and handed to a sink callback; stdin is
written without blocking from a bounded buffer (when it is full, the clients
that feed it are paused, so a container that does not read stdin slows only
its writer). With a tty one pty master fd plays both parts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from runtimed_shim.loop import Loop
from runtimed_shim.protocol import STDOUT

STDIN_LIMIT = 1 << 20
READ_SIZE = 65536

OutputSink = Callable[[int, bytes], None]
EndSink = Callable[[int], None]


class ProcessIo:
    __slots__ = (
        "loop",
        "tty",
        "stdin_fd",
        "pending",
        "close_after_flush",
        "outputs",
        "on_output",
        "on_end",
        "paused",
    )

    def __init__(self, loop: Loop, on_output: OutputSink, on_end: EndSink) -> None:
        self.loop = loop
        self.tty = -1
        self.stdin_fd = -1
        self.pending = bytearray()
        self.close_after_flush = False
        self.outputs: dict[int, int] = {}  # fd -> stream type
        self.on_output = on_output
        self.on_end = on_end
        self.paused: list[Callable[[], None]] = []  # resumes paused stdin writers

    # -- setup -----------------------------------------------------------------

    def add_output(self, fd: int, kind: int) -> None:
        os.set_blocking(fd, False)
        self.outputs[fd] = kind
        self.loop.set_reader(fd, lambda: self._read(fd))

    def set_stdin(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.stdin_fd = fd

    def set_tty(self, master: int) -> None:
        """The pty master carries all output (as stdout) and takes stdin."""
        self.tty = master
        self.stdin_fd = master
        self.add_output(master, STDOUT)

    # -- output ----------------------------------------------------------------

    def _read(self, fd: int) -> bool:
        """Read once; True if data came (EOF, or EIO from a pty whose slave closed, ends it)."""
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        kind = self.outputs.get(fd)
        if kind is None:
            return False
        if data:
            self.on_output(kind, data)
            return True
        self._close_output(fd)
        self.on_end(kind)
        return False

    def pause_output(self) -> None:
        """Stop reading output: a blocking log driver is full (the process waits on write)."""
        for fd in self.outputs:
            self.loop.set_reader(fd, None)

    def resume_output(self) -> None:
        for fd in self.outputs:
            self.loop.set_reader(fd, lambda fd=fd: self._read(fd))

    def drain(self, max_reads: int = 256) -> None:
        """Read what is already written: the process is gone, its last words must not be.

        Bounded, because something else may still hold the write end and keep writing.
        """
        for fd in list(self.outputs):
            for _ in range(max_reads):
                if fd not in self.outputs or not self._read(fd):
                    break

    def _close_output(self, fd: int) -> None:
        self.outputs.pop(fd, None)
        self.loop.set_reader(fd, None)
        if fd == self.tty:
            # The master is also stdin: it goes when output ends.
            self.loop.forget(fd)
            self.tty = -1
            self.stdin_fd = -1
            self.pending.clear()
        with contextlib.suppress(OSError):
            os.close(fd)

    # -- stdin -----------------------------------------------------------------

    @property
    def has_stdin(self) -> bool:
        return self.stdin_fd >= 0 and not self.close_after_flush

    @property
    def stdin_full(self) -> bool:
        return len(self.pending) >= STDIN_LIMIT

    def write_stdin(self, data: bytes) -> None:
        if not self.has_stdin or not data:
            return
        if not self.pending:
            try:
                n = os.write(self.stdin_fd, data)
            except BlockingIOError:
                n = 0
            except OSError:
                self._drop_stdin()
                return
            data = data[n:]
            if not data:
                return
        self.pending += data
        self.loop.set_writer(self.stdin_fd, self._flush_stdin)

    def _flush_stdin(self) -> None:
        try:
            n = os.write(self.stdin_fd, self.pending)
        except BlockingIOError:
            return
        except OSError:
            self._drop_stdin()
            return
        del self.pending[:n]
        if self.pending:
            return
        self.loop.set_writer(self.stdin_fd, None)
        if self.close_after_flush:
            self._drop_stdin()
        self._resume()

    def close_stdin(self) -> None:
        """No more input: close the pipe once what is buffered has been written."""
        if self.stdin_fd < 0 or self.stdin_fd == self.tty:
            return
        self.close_after_flush = True
        if not self.pending:
            self._drop_stdin()

    def _drop_stdin(self) -> None:
        fd = self.stdin_fd
        self.pending.clear()
        if fd < 0:
            return
        self.loop.set_writer(fd, None)
        if fd != self.tty:
            self.stdin_fd = -1
            with contextlib.suppress(OSError):
                os.close(fd)
        self._resume()

    def _resume(self) -> None:
        paused, self.paused = self.paused, []
        for resume in paused:
            resume()

    def close(self) -> None:
        self._drop_stdin()
        for fd in list(self.outputs):
            self._close_output(fd)

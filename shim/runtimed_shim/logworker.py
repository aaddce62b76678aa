"""The thread that feeds a log driver which may be slow or away.

The shim's loop puts chunks of output (stream, runs, time) in a queue and
never waits; this thread takes them, lets the driver encode them (in order,
once each) and delivers them, retrying while the receiver is unreachable.

Queue policies:
- "block" (mode=blocking): the queue may hold `max_bytes`; past that it is
  `congested` and the shim stops reading the container's output until the
  thread has taken the queue (it writes a byte to `wake_w` then).
- "drop-oldest" (mode=non-blocking): past `max_bytes` the oldest chunks go.
- "drop-newest" (a driver with its own bounded buffer, fluentd-async): past
  `max_lines` new output is refused.
What is dropped is counted in lines and bytes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque

from runtimed_shim.logdriver import Undelivered

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _default_delay(attempt: int) -> float:
    return min(0.1 * 2**attempt, 5.0)


class Worker:
    def __init__(self, driver: Any, *, policy: str, max_bytes: int, max_lines: int = 0) -> None:
        self.driver = driver
        self.policy = policy
        self.max_bytes = max(1, max_bytes)
        self.max_lines = max_lines
        self.cond = threading.Condition()
        self.queue: deque[tuple[str, list[Any], int, int, int]] = deque()
        self.queued_bytes = 0
        self.queued_lines = 0
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self.closing = False
        self.stopping = threading.Event()  # wakes retry sleeps at close, not on new output
        self.flush_now = False
        self.deadline = 0.0
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wanted_wake = False
        self.lock = threading.Lock()  # the driver: emit/encode/send vs reopen
        self.synchronous = not hasattr(driver, "send")
        self.flush_interval = float(getattr(driver, "flush_interval", 0) or 0)
        self.max_pending = int(getattr(driver, "max_pending", 0) or 0)
        self.thread = threading.Thread(target=self._run, name="log-driver", daemon=True)
        self.thread.start()

    # -- the shim's side ---------------------------------------------------------

    def put(self, stream: str, runs: list[Any], time_ns: int) -> None:
        lines = sum(len(pieces) for pieces, _ in runs)
        size = sum(sum(map(len, pieces)) for pieces, _ in runs) + lines  # with the newlines
        with self.cond:
            if (
                self.policy == "drop-newest"
                and self.max_lines
                and (self.queued_lines + lines > self.max_lines)
            ):
                self.dropped_lines += lines
                self.dropped_bytes += size
                return
            self.queue.append((stream, runs, time_ns, size, lines))
            self.queued_bytes += size
            self.queued_lines += lines
            if self.policy == "drop-oldest":
                while self.queued_bytes > self.max_bytes and len(self.queue) > 1:
                    _, _, _, old_size, old_lines = self.queue.popleft()
                    self.queued_bytes -= old_size
                    self.queued_lines -= old_lines
                    self.dropped_bytes += old_size
                    self.dropped_lines += old_lines
            self.cond.notify()

    @property
    def takes_blocks(self) -> bool:
        """Whole blocks of lines can be queued (see put_block): blocking mode, no line limit,
        and a driver that encodes blocks."""
        blocks = hasattr(self.driver, "encode_block")
        return self.policy == "block" and not self.max_lines and blocks

    def put_block(self, stream: str, block: bytes, time_ns: int) -> None:
        """Complete lines joined by newlines (LineSplitter.feed_block): no list of lines is
        made in the shim's loop, and the driver may frame them all at once."""
        size = len(block) + 1
        with self.cond:
            self.queue.append((stream, block, time_ns, size, 0))
            self.queued_bytes += size
            self.cond.notify()

    @property
    def congested(self) -> bool:
        if self.policy != "block":
            return False
        # Under the lock: the thread must see wanted_wake before it empties the queue,
        # or the shim would wait for a wake-up that never comes.
        with self.cond:
            full = self.queued_bytes >= self.max_bytes or (
                self.max_lines > 0 and self.queued_lines >= self.max_lines
            )
            if full:
                self.wanted_wake = True
            return full

    def flush(self) -> None:
        with self.cond:
            self.flush_now = True
            self.cond.notify()

    def reopen(self) -> None:
        reopen = getattr(self.driver, "reopen", None)
        if reopen is not None:
            with self.lock:
                reopen()

    def close(self, timeout: float) -> None:
        with self.cond:
            self.closing = True
            self.deadline = time.monotonic() + timeout
            self.cond.notify()
        self.stopping.set()
        self.thread.join(timeout + 1.0)
        with self.lock, contextlib.suppress(Exception):
            self.driver.close()
        for fd in (self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the thread --------------------------------------------------------------

    def _take(self) -> list[tuple[str, list[Any], int, int, int]] | None:
        """Wait for work; None when closing and nothing is left."""
        with self.cond:
            while not self.queue and not self.closing and not self.flush_now:
                if not self.cond.wait(self._wait_time()):
                    break  # a batching driver's interval passed
            chunks = list(self.queue)
            self.queue.clear()
            self.queued_bytes = 0
            self.queued_lines = 0
            if self.wanted_wake:
                self.wanted_wake = False
                with contextlib.suppress(OSError):
                    os.write(self.wake_w, b"x")
            if not chunks and self.closing:
                return None
            return chunks

    def _wait_time(self) -> float | None:
        if self.pending and self.flush_interval:
            return max(0.0, self.pending_since + self.flush_interval - time.monotonic())
        poll = getattr(self.driver, "poll_interval", 0)
        return float(poll) if poll else None

    def _run(self) -> None:
        self.pending: list[Any] = []
        self.pending_since = 0.0
        while True:
            chunks = self._take()
            if chunks is None:
                break
            try:
                self._handle(chunks)
            except Exception:  # noqa: BLE001 - a driver bug must not kill the output path
                self.dropped_lines += sum(c[4] for c in chunks)
                self.dropped_bytes += sum(c[3] for c in chunks)
        with contextlib.suppress(Exception):
            self._deliver_pending(final=True)

    def _handle(self, chunks: list[tuple[str, list[Any], int, int, int]]) -> None:
        if self.synchronous:
            with self.lock:
                for stream, runs, time_ns, _, _ in chunks:
                    self.driver.emit(stream, runs, time_ns)
            return
        with self.lock:
            for stream, runs, time_ns, _, _ in chunks:
                if isinstance(runs, bytes):  # a block from put_block
                    items = self.driver.encode_block(stream, runs, time_ns)
                else:
                    items = self.driver.encode(stream, runs, time_ns)
                if items and not self.pending:
                    self.pending_since = time.monotonic()
                self.pending.extend(items)
            poll = getattr(self.driver, "poll", None)
            if poll is not None:
                items = poll()
                if items and not self.pending:
                    self.pending_since = time.monotonic()
                self.pending.extend(items)
        if self.flush_now or self.closing:
            self.flush_now = False
            self._deliver_pending(final=True)
        elif (
            not self.flush_interval
            or time.monotonic() >= self.pending_since + self.flush_interval
            or (self.max_pending and len(self.pending) >= self.max_pending)
        ):
            self._deliver_pending(final=False)

    def _deliver_pending(self, *, final: bool) -> None:
        if final:
            drain = getattr(self.driver, "drain", None)
            if drain is not None:
                with self.lock:
                    self.pending.extend(drain())
        items, self.pending = self.pending, []
        attempt = 0
        while items:
            try:
                with self.lock:
                    self.driver.send(items)
                return
            except Undelivered as exc:
                items = items[exc.done :]
            except OSError:
                pass
            delay = self._retry_delay(attempt)
            attempt += 1
            if delay is None or self._stop_retrying(delay):
                self.dropped_lines += len(items)
                self.dropped_bytes += sum(_size(i) for i in items)
                return

    def _retry_delay(self, attempt: int) -> float | None:
        policy = getattr(self.driver, "retry_delay", None)
        return policy(attempt) if policy is not None else _default_delay(attempt)

    def _stop_retrying(self, delay: float) -> bool:
        """Sleep before the next attempt; True once closing and its deadline has passed."""
        if self.closing:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(delay, left))
            return False
        self.stopping.wait(delay)  # close() cuts the sleep short
        return False


def _size(item: Any) -> int:
    with contextlib.suppress(TypeError):
        return len(item)
    return 0

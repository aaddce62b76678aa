"""Daemon events, as Docker has them: one bus every service publishes to, read by
`runtimectl events` (Engine.Events), kubelet (CRI GetContainerEvents) and, later,
the Docker API, so all of them see one stream in one order.

Publishing is one call, from any service holding the bus (`self.events`; the
daemon hands every service the same one):

    self.events.publish("image", "save", image_id, {"name": "busybox:1.36"})

The event gets its time and a sequence number, goes into the on-disk ring
(store/events.py, so `--since` reaches back across restarts) and to every live
subscriber. Publishing never blocks on a subscriber: one that falls more than
QUEUE_LIMIT events behind catches up from the ring.

Types and actions (Docker's names). Emitted today: container create, start,
restart, attach, kill (signal), die (exitCode, execDuration), oom (when the exit
reason is OOMKilled), stop, rename (oldName), destroy, pause, unpause,
health_status, exec_create, exec_start, exec_die (execID, exitCode), commit;
image pull, push, tag, untag, delete, import, save, load; network create,
destroy, connect and disconnect (container); volume create, mount and unmount
(container, destination, ...), destroy. The other kinds below belong to
features that publish them when they land (update, config reload, plugins).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from runtimed.errors import RuntimedError, Unavailable
from runtimed.records import Event

if TYPE_CHECKING:
    from runtimed.core.model import Container

CONTAINER, IMAGE, VOLUME, NETWORK, DAEMON, PLUGIN = (
    "container",
    "image",
    "volume",
    "network",
    "daemon",
    "plugin",
)

ACTIONS: dict[str, tuple[str, ...]] = {
    CONTAINER: (
        "attach",
        "commit",
        "create",
        "destroy",
        "die",
        "exec_create",
        "exec_die",
        "exec_start",
        "health_status",
        "kill",
        "oom",
        "pause",
        "rename",
        "restart",
        "start",
        "stop",
        "unpause",
        "update",
    ),
    IMAGE: ("delete", "import", "load", "pull", "push", "save", "tag", "untag"),
    NETWORK: ("create", "connect", "disconnect", "destroy", "remove"),
    VOLUME: ("create", "mount", "unmount", "destroy"),
    DAEMON: ("reload",),
    PLUGIN: ("enable", "disable", "install", "remove"),
}

# CRI containers carry their pod's id, as dockershim labelled its containers.
SANDBOX_ATTRIBUTE = "io.kubernetes.sandbox.id"

log = structlog.get_logger(__name__)

QUEUE_LIMIT = 4096
MEMORY_EVENTS = 1024  # kept by a bus without a ring (services built alone, in tests)


class Ring(Protocol):
    """Where published events are kept (store.events.EventRing)."""

    def append(self, event: Event) -> int: ...

    def last_seq(self) -> int: ...

    def close(self) -> None: ...

    def read(
        self,
        *,
        since_ns: int = 0,
        until_ns: int | None = None,
        after_seq: int = 0,
        upto_seq: int | None = None,
    ) -> list[Event]: ...


def docker_message(event: Event) -> dict[str, Any]:
    """Docker's JSON event message (events.Message), legacy fields and key order included."""
    message: dict[str, Any] = {}
    if event.type in (CONTAINER, IMAGE):
        message["status"] = event.action
        message["id"] = event.actor_id
        if event.type == CONTAINER and event.attributes.get("image"):
            message["from"] = event.attributes["image"]
    message["Type"] = event.type
    message["Action"] = event.action
    message["Actor"] = {"ID": event.actor_id, "Attributes": dict(event.attributes)}
    message["scope"] = event.scope
    message["time"] = event.time_ns // 1_000_000_000
    message["timeNano"] = event.time_ns
    return message


def container_attributes(container: Container, **extra: str) -> dict[str, str]:
    """What Docker attaches to a container's events: its labels, image and name."""
    attributes = dict(container.config.labels)
    attributes["image"] = container.config.image
    attributes["name"] = container.name
    if container.sandbox_id != container.id:
        attributes[SANDBOX_ATTRIBUTE] = container.sandbox_id
    attributes.update(extra)
    return attributes


class _Subscriber:
    __slots__ = ("overflowed", "pending", "wake")

    def __init__(self) -> None:
        self.pending: deque[Event] = deque()
        self.wake = asyncio.Event()
        self.overflowed = False


class EventBus:
    def __init__(self, ring: Ring | None = None, *, queue_limit: int = QUEUE_LIMIT) -> None:
        self._ring = ring
        self._memory: deque[Event] = deque(maxlen=MEMORY_EVENTS)
        self._queue_limit = queue_limit
        self._subscribers: set[_Subscriber] = set()
        self._outbox: deque[Event] = deque()  # published, not yet handed to subscribers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._lock = threading.Lock()  # time and seq of concurrent publishers agree
        self._seq = ring.last_seq() if ring is not None else 0
        self._closed = False

    # -- publishing --------------------------------------------------------------

    def publish(
        self,
        type_: str,
        action: str,
        actor_id: str,
        attributes: Mapping[str, str] | None = None,
        *,
        scope: str = "local",
    ) -> Event:
        """Record one event and hand it to every subscriber; callable from any thread."""
        with self._lock:
            event = Event(type_, action, actor_id, dict(attributes or {}), time.time_ns(), scope)
            seq = self._keep(event)
            event = replace(event, seq=seq)
            self._seq = seq
            if self._ring is None:
                self._memory.append(event)
            deliver = bool(self._subscribers) and self._loop is not None
            if deliver:
                self._outbox.append(event)
        if deliver:
            if threading.get_ident() == self._loop_thread:
                self._drain()
            else:
                self._loop.call_soon_threadsafe(self._drain)  # type: ignore[union-attr]
        return event

    def _keep(self, event: Event) -> int:
        """The event's number, from the ring that keeps it; a ring that cannot write (a
        full disk) must not fail what the event tells of: live subscribers still get it."""
        if self._ring is None:
            return self._seq + 1
        try:
            return self._ring.append(event)
        except (RuntimedError, OSError, sqlite3.Error) as exc:
            log.warning("event_not_kept", action=event.action, error=str(exc))
            return self._seq + 1

    def _drain(self) -> None:
        """Hand out what was published, in publish order (a thread's event may have been
        numbered before one the loop published since)."""
        with self._lock:
            events = list(self._outbox)
            self._outbox.clear()
        for event in events:
            for sub in self._subscribers:
                if len(sub.pending) >= self._queue_limit:
                    sub.overflowed = True  # it reads the rest from the ring
                elif not sub.overflowed:
                    sub.pending.append(event)
                sub.wake.set()

    # -- reading -----------------------------------------------------------------

    def history(
        self,
        *,
        since_ns: int = 0,
        until_ns: int | None = None,
        after_seq: int = 0,
        upto_seq: int | None = None,
    ) -> list[Event]:
        """Kept events in publish order, within the bounds (inclusive but after_seq)."""
        if self._ring is not None:
            return self._ring.read(
                since_ns=since_ns, until_ns=until_ns, after_seq=after_seq, upto_seq=upto_seq
            )
        return [
            e
            for e in self._memory
            if e.seq > after_seq
            and e.time_ns >= since_ns
            and (until_ns is None or e.time_ns <= until_ns)
            and (upto_seq is None or e.seq <= upto_seq)
        ]

    async def stream(
        self,
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
        match: Callable[[Event], bool] | None = None,
    ) -> AsyncIterator[Event]:
        """Docker's subscription: kept events from `since_ns` (when either bound is given),
        then live ones, until `until_ns` passes (never, without it) or the caller stops.

        Past events are those already published when the call starts; every later one
        comes live, none twice, none lost.
        """
        self._bind_loop()
        if self._closed:
            raise Unavailable("runtimed is shutting down")
        sub = _Subscriber()
        self._subscribers.add(sub)
        try:
            last = self._seq
            if since_ns is not None or until_ns is not None:
                bounds = {"since_ns": since_ns or 0, "until_ns": until_ns, "upto_seq": last}
                if self._ring is not None:  # up to 10,000 rows: off the event loop
                    past = await asyncio.to_thread(functools.partial(self.history, **bounds))
                else:
                    past = self.history(**bounds)
                for event in past:
                    if match is None or match(event):
                        yield event
            while True:
                if not sub.pending:
                    if self._closed:
                        raise Unavailable("runtimed is shutting down")
                    if sub.overflowed:
                        sub.overflowed = False
                        sub.pending.extend(self.history(after_seq=last, upto_seq=self._seq))
                        continue
                    sub.wake.clear()
                    timeout = None
                    if until_ns is not None:
                        timeout = (until_ns - time.time_ns()) / 1e9
                        if timeout <= 0:
                            return
                    try:
                        await asyncio.wait_for(sub.wake.wait(), timeout)
                    except TimeoutError:
                        return
                    continue
                event = sub.pending.popleft()
                if event.seq <= last:
                    continue
                last = event.seq
                if until_ns is not None and event.time_ns > until_ns:
                    return
                if match is None or match(event):
                    yield event
        finally:
            self._subscribers.discard(sub)

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._loop_thread = threading.get_ident()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def shutdown(self) -> None:
        """The daemon is stopping: live streams end (UNAVAILABLE) instead of holding it up."""
        self._closed = True
        for sub in self._subscribers:
            sub.wake.set()

    def close(self) -> None:
        """Close the ring; whatever is published after this is kept in memory only."""
        self.shutdown()
        with self._lock:
            ring, self._ring = self._ring, None
        if ring is not None:
            ring.close()

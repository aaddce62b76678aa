"""The event bus, its on-disk ring, Docker's filters and message shape, and how
runtimectl prints events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from runtimed.api.engine_events import parse_bound
from runtimed.cli import events as cli_events
from runtimed.cli.client import CliError
from runtimed.cli.format import inspect_template, run_template
from runtimed.core.eventfilter import event_filter
from runtimed.core.events import Event, EventBus, docker_message
from runtimed.errors import FailedPrecondition, InvalidArgument, Unavailable
from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from runtimed.store.events import EventRing


def container_event(action: str, cid: str = "c1" * 32, **attrs: str) -> Event:
    base = {"image": "busybox:1.36", "name": "web"}
    return Event("container", action, cid, {**base, **attrs}, 1_700_000_000_123_456_789)


async def collect(stream, count: int) -> list[Event]:
    got = []
    async with contextlib.aclosing(stream):
        async for event in stream:
            got.append(event)
            if len(got) == count:
                break
    return got


# -- the ring --------------------------------------------------------------------------


def test_ring_keeps_events_across_reopen_and_drops_the_oldest(tmp_path: Path) -> None:
    ring = EventRing(tmp_path / "events.db", capacity=300)
    for i in range(700):
        ring.append(Event("container", "start", f"id{i}", {"n": str(i)}, time_ns=1000 + i))
    ring.close()
    ring = EventRing(tmp_path / "events.db", capacity=300)
    kept = ring.read()
    assert len(kept) == 300 == ring.count()
    assert [e.actor_id for e in kept] == [f"id{i}" for i in range(400, 700)]
    assert kept[-1].seq == ring.last_seq() == 700 and kept[-1].attributes == {"n": "699"}
    window = ring.read(since_ns=1000 + 650, until_ns=1000 + 652)
    assert [e.actor_id for e in window] == ["id650", "id651", "id652"]
    # Numbering goes on after a reopen: a subscriber never sees a number twice.
    assert ring.append(Event("image", "pull", "busybox:1.36", {}, time_ns=5)) == 701


def test_ring_refuses_a_newer_schema(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "events.db")
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(FailedPrecondition, match="newer than this runtimed"):
        EventRing(tmp_path / "events.db")


# -- the bus ---------------------------------------------------------------------------


async def test_history_then_live_in_order_without_gaps_or_repeats(tmp_path: Path) -> None:
    bus = EventBus(EventRing(tmp_path / "events.db"))
    first = bus.publish("container", "create", "a")
    stream = bus.stream(since_ns=first.time_ns)
    got = asyncio.create_task(collect(stream, 4))
    await asyncio.sleep(0)
    bus.publish("container", "start", "a")
    # From another thread too (a service working in asyncio.to_thread).
    worker = threading.Thread(target=bus.publish, args=("image", "tag", "sha256:x"))
    worker.start()
    worker.join()
    bus.publish("container", "die", "a", {"exitCode": "0"})
    events = await asyncio.wait_for(got, 5)
    assert [(e.type, e.action) for e in events] == [
        ("container", "create"),
        ("container", "start"),
        ("image", "tag"),
        ("container", "die"),
    ]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert bus.subscribers == 0  # the stream closed with the consumer


async def test_without_since_only_new_events_come() -> None:
    bus = EventBus()
    bus.publish("container", "create", "old")
    got = asyncio.create_task(collect(bus.stream(), 1))
    await asyncio.sleep(0)
    bus.publish("container", "create", "new")
    assert [e.actor_id for e in await asyncio.wait_for(got, 5)] == ["new"]


async def test_until_in_the_past_gives_history_and_ends() -> None:
    bus = EventBus()
    a = bus.publish("volume", "create", "a")
    b = bus.publish("volume", "create", "b")
    bus.publish("volume", "create", "c")
    events = [e async for e in bus.stream(since_ns=a.time_ns, until_ns=b.time_ns)]
    assert [e.actor_id for e in events] == ["a", "b"]


async def test_until_in_the_future_ends_the_live_stream() -> None:
    bus = EventBus()
    until = time.time_ns() + 300_000_000
    task = asyncio.create_task(collect(bus.stream(until_ns=until), 10))
    await asyncio.sleep(0)
    bus.publish("network", "create", "n1")
    events = await asyncio.wait_for(task, 5)  # ends by itself, with fewer than 10
    assert [e.actor_id for e in events] == ["n1"]


async def test_a_slow_subscriber_catches_up_from_the_ring(tmp_path: Path) -> None:
    bus = EventBus(EventRing(tmp_path / "events.db"), queue_limit=5)
    stream = bus.stream(match=lambda e: e.action == "start")
    task = asyncio.create_task(collect(stream, 50))
    await asyncio.sleep(0)
    for i in range(100):  # no await: the subscriber cannot run meanwhile
        bus.publish("container", "start" if i % 2 else "create", f"c{i}")
    events = await asyncio.wait_for(task, 5)
    assert [e.actor_id for e in events] == [f"c{i}" for i in range(1, 100, 2)]


async def test_shutdown_ends_live_streams_unavailable() -> None:
    bus = EventBus()
    task = asyncio.create_task(collect(bus.stream(), 1))
    await asyncio.sleep(0)
    bus.shutdown()
    with pytest.raises(Unavailable, match="shutting down"):
        await asyncio.wait_for(task, 5)


# -- Docker's filters ------------------------------------------------------------------


def passes(pairs: list[tuple[str, str]], event: Event) -> bool:
    match = event_filter(pairs)
    return match is None or match(event)


def test_filters_combine_as_dockers() -> None:
    start = container_event("start", label_a="1", app="db")
    net = Event("network", "connect", "n" * 64, {"name": "appnet", "container": "c1" * 32})
    assert passes([], start)
    assert passes([("type", "container"), ("type", "network")], net)  # OR within a key
    assert not passes([("type", "container"), ("event", "die")], start)  # AND across keys
    assert passes([("container", "web")], start) and passes([("container", "c1c1")], start)
    assert not passes([("container", "web")], net)  # the actor, not an attribute
    assert passes([("network", "appnet")], net) and passes([("network", "nnn")], net)
    assert passes([("label", "app=db"), ("label", "label_a")], start)
    assert not passes([("label", "app=db"), ("label", "missing")], start)  # labels: AND
    assert not passes([("label", "app=web")], start)


def test_image_filter_matches_with_or_without_the_tag() -> None:
    start = container_event("start")
    pull = Event("image", "pull", "busybox:1.36", {"name": "busybox"})
    tag = Event("image", "tag", "sha256:" + "a" * 64, {"name": "mine:dev"})
    assert passes([("image", "busybox")], start) and passes([("image", "busybox:1.36")], start)
    assert not passes([("image", "busybox:1.35")], start)
    assert passes([("image", "busybox")], pull)
    assert passes([("image", "mine")], tag) and passes([("image", "sha256:" + "a" * 64)], tag)
    assert not passes([("image", "busybox")], Event("volume", "create", "v", {}))


def test_exec_actions_match_by_prefix_others_exactly() -> None:
    exec_start = container_event("exec_start: sh -c true", execID="e1")
    assert passes([("event", "exec_start")], exec_start)
    assert not passes([("event", "exec")], exec_start)
    assert not passes([("event", "star")], container_event("start"))


def test_bad_filters_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        event_filter([("colour", "red")])
    with pytest.raises(InvalidArgument, match="type=pod"):
        event_filter([("type", "pod")])


def test_since_until_take_dockers_forms() -> None:
    now = 1_700_000_000 * 10**9
    assert parse_bound("", now) is None
    assert parse_bound("0", now) == 0  # the epoch: everything kept
    assert parse_bound("10m", now) == now - 600 * 10**9
    assert parse_bound("1700000000.5", now) == 1_700_000_000_500_000_000
    assert parse_bound("2023-11-14T22:13:20Z", now) == now


# -- Docker's message and runtimectl's lines -------------------------------------------


def test_docker_message_shape() -> None:
    msg = docker_message(container_event("die", exitCode="3"))
    assert list(msg) == [
        "status",
        "id",
        "from",
        "Type",
        "Action",
        "Actor",
        "scope",
        "time",
        "timeNano",
    ]
    assert msg["status"] == "die" and msg["from"] == "busybox:1.36"
    assert msg["Actor"]["Attributes"]["exitCode"] == "3"
    assert msg["time"] == 1_700_000_000 and msg["timeNano"] == 1_700_000_000_123_456_789
    net = docker_message(Event("network", "create", "n1", {"name": "x", "type": "bridge"}, 5))
    assert list(net) == ["Type", "Action", "Actor", "scope", "time", "timeNano"]


def pb_event(action: str = "start", **attrs: str) -> pb.Event:
    return pb.Event(
        type="container",
        action=action,
        actor=pb.EventActor(id="abc", attributes={"name": "web", "image": "busybox", **attrs}),
        scope="local",
        time_nano=1_700_000_000_000_000_042,
    )


def test_default_line_is_dockers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    assert cli_events.pretty_line(pb_event(exitCode="0", action="die")) == (
        "2023-11-14T22:13:20.000000042Z container die abc (exitCode=0, image=busybox, name=web)"
    )
    bare = pb.Event(type="daemon", action="reload", actor=pb.EventActor(id="d"), time_nano=0)
    assert cli_events.pretty_line(bare).endswith(" daemon reload d")


def render(template: str, value: object) -> str:
    compiled = inspect_template(template)
    assert compiled is not None
    return run_template(compiled, value)


def test_format_json_and_go_field_names() -> None:
    msg = cli_events.message(pb_event())
    doc = json.loads(render("{{json .}}", msg))
    assert doc["status"] == "start" and doc["id"] == "abc" and doc["scope"] == "local"
    assert doc["Actor"] == {"ID": "abc", "Attributes": {"name": "web", "image": "busybox"}}
    assert render("{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Scope}}", msg) == (
        "container start web local"
    )
    assert render("{{.ID}} {{.TimeNano}}", msg) == "abc 1700000000000000042"


def test_filter_flags_need_a_value() -> None:
    assert [(f.key, f.value) for f in cli_events.parse_filters(["type=container"])] == [
        ("type", "container")
    ]
    with pytest.raises(CliError, match="bad format of filter"):
        cli_events.parse_filters(["container"])

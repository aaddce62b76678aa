"""`runtimectl events`: the daemon's event stream, printed as docker prints it.

Without --since/--until it shows what happens from now on; with them, kept
events first (across daemon restarts). It ends when --until passes, or at
Ctrl-C. `--format '{{json .}}'` gives Docker's JSON message, legacy fields
(status, id, from) included.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterable
from typing import Any

from runtimed.cli.client import Client, CliError
from runtimed.cli.format import inspect_template, run_template
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

# Go field names a template may use for Docker's message, and the JSON keys they are.
_GO_FIELDS = {"Status": "status", "ID": "id", "From": "from", "Scope": "scope"}
_GO_FIELDS |= {"Time": "time", "TimeNano": "timeNano"}


class _Message(dict):
    """The JSON message, whose fields a template reaches by their Go names too
    ({{.Scope}} as well as {{json .}}'s "scope")."""

    def __getitem__(self, key: str) -> Any:
        if not dict.__contains__(self, key) and key in _GO_FIELDS:
            return dict.get(self, _GO_FIELDS[key], "")
        return dict.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in _GO_FIELDS


def local_rfc3339_nano(time_nano: int) -> str:
    """Go's RFC3339NanoFixed in local time: 2024-03-01T12:00:00.000000000Z (or +01:00)."""
    seconds, nanos = divmod(time_nano, 1_000_000_000)
    stamp = dt.datetime.fromtimestamp(seconds).astimezone()
    offset = stamp.strftime("%z")
    zone = "Z" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{nanos:09d}{zone}"


def pretty_line(event: pb.Event) -> str:
    """docker's default line: time, type, action, actor and its attributes sorted."""
    line = f"{local_rfc3339_nano(event.time_nano)} {event.type} {event.action} {event.actor.id}"
    attributes = event.actor.attributes
    if attributes:
        line += " (" + ", ".join(f"{k}={attributes[k]}" for k in sorted(attributes)) + ")"
    return line


def message(event: pb.Event) -> dict[str, Any]:
    from runtimed.core.events import Event, docker_message  # only `events` pays for it

    core = Event(
        type=event.type,
        action=event.action,
        actor_id=event.actor.id,
        attributes=dict(event.actor.attributes),
        time_ns=event.time_nano,
        scope=event.scope,
    )
    return _Message(docker_message(core))


def parse_filters(values: Iterable[str]) -> list[pb.Filter]:
    filters = []
    for value in values:
        key, sep, wanted = value.partition("=")
        if not sep or not key:
            raise CliError(
                f'invalid argument "{value}" for "-f, --filter" flag: '
                "bad format of filter (expected name=value)",
                125,
            )
        filters.append(pb.Filter(key=key.strip().lower(), value=wanted))
    return filters


def cmd_events(client: Client, args: argparse.Namespace) -> int:
    template = "{{json .}}" if args.format == "json" else args.format
    request = pb.EventsRequest(
        since=args.since or "", until=args.until or "", filters=parse_filters(args.filter)
    )
    compiled = inspect_template(template)
    call = client.engine.Events(request)
    try:
        for event in call:
            line = run_template(compiled, message(event)) if compiled else pretty_line(event)
            print(line, flush=True)
    finally:
        call.cancel()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("events", help="stream the daemon's events (docker events)")
    p.add_argument("--since", help="kept events from this time (RFC 3339, unix time, 10m)")
    p.add_argument("--until", help="stop when this time passes")
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="type, event, container, image, label, network, volume, daemon",
    )
    p.add_argument("--format", help="a Go template, e.g. '{{json .}}' (or json)")
    p.set_defaults(func=cmd_events)

"""Docker's event filters: which events a `--filter k=v ...` subscription gets.

Keys combine with AND, the values of one key with OR (label values with AND, as
Docker's). Names and ids match by prefix on the actor's id or its `name`
attribute; `image` matches an image event's id or name, or a container event's
image, with or without the tag; `event` matches the action exactly, except
that health_status, exec_create and exec_start also match the actions Docker
suffixes (`exec_start: sh -c ...`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from runtimed.core.events import ACTIONS, IMAGE, Event
from runtimed.errors import InvalidArgument, RuntimedError
from runtimed.images.reference import parse_reference

KEYS = frozenset(
    {
        "config",
        "container",
        "daemon",
        "event",
        "image",
        "label",
        "network",
        "node",
        "plugin",
        "scope",
        "secret",
        "service",
        "type",
        "volume",
    }
)
# Keys matched by prefix against the actor of events of the same type.
_NAMED = ("container", "daemon", "network", "plugin", "volume", "node", "service", "secret")
_SUFFIXED_ACTIONS = frozenset({"health_status", "exec_create", "exec_start"})
_TYPES = frozenset([*ACTIONS, "service", "node", "secret", "config"])


def event_filter(pairs: Iterable[tuple[str, str]]) -> Callable[[Event], bool] | None:
    """A predicate for `pairs` (None: every event passes); unknown keys are refused."""
    wanted: dict[str, set[str]] = {}
    for key, value in pairs:
        if key not in KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "type" and value not in _TYPES:
            raise InvalidArgument(
                f"invalid filter 'type={value}': the types are {', '.join(sorted(ACTIONS))}"
            )
        if key == "scope" and value not in ("local", "swarm"):
            raise InvalidArgument(f"invalid filter 'scope={value}': local or swarm")
        wanted.setdefault(key, set()).add(value)
    if not wanted:
        return None
    images = wanted.get("image", set())

    def match(event: Event) -> bool:
        if not _exact(wanted, "type", event.type) or not _exact(wanted, "scope", event.scope):
            return False
        if not _match_action(wanted.get("event"), event.action):
            return False
        name = event.attributes.get("name", "")
        for key in _NAMED:
            if key in wanted and not (
                _prefix(wanted[key], event.actor_id) or _prefix(wanted[key], name)
            ):
                return False
        if images and not _match_image(images, event):
            return False
        return all(_has_label(event.attributes, want) for want in wanted.get("label", ()))

    return match


def _exact(wanted: dict[str, set[str]], key: str, value: str) -> bool:
    return key not in wanted or value in wanted[key]


def _prefix(values: set[str], source: str) -> bool:
    return source in values or any(source.startswith(v) for v in values if v)


def _match_action(values: set[str] | None, action: str) -> bool:
    if not values:
        return True
    if values & _SUFFIXED_ACTIONS:
        return _prefix(values, action)
    return action in values


def _match_image(values: set[str], event: Event) -> bool:
    name = event.attributes.get("name" if event.type == IMAGE else "image", "")
    candidates = {event.actor_id, name, _strip_tag(event.actor_id), _strip_tag(name)}
    return bool(values & (candidates - {""}))


def _strip_tag(text: str) -> str:
    """busybox:1.36 -> busybox, as Docker's familiar name; anything else stays as it is."""
    if not text or text.startswith("sha256:"):
        return text
    try:
        return parse_reference(text).familiar_name()
    except RuntimedError:
        return text


def _has_label(attributes: Mapping[str, str], want: str) -> bool:
    key, sep, value = want.partition("=")
    return key in attributes and (not sep or attributes[key] == value)

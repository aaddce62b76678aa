"""Every name rule matches the whole name: a trailing newline (which `$` lets through)
or any other trailing character is refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from runtimed_shim.logdriver import OptionError, from_human_size, parse_int

from runtimed.core.names import validate_name
from runtimed.errors import InvalidArgument
from runtimed.images.reference import parse_reference, validate_digest
from runtimed.network.networks import CreateNetwork, plan
from runtimed.network.request import NetRequest
from runtimed.snapshots.base import check_key
from runtimed.store.content import parse_digest
from runtimed.volumes.names import check_name

HEX = "a" * 64


def _network(name: str) -> object:
    return plan(CreateNetwork(name=name), [], [])


def _alias(name: str) -> None:
    NetRequest(network="appnet", aliases=[name]).check()


RULES: list[tuple[str, Callable[[str], object], str]] = [
    ("container", validate_name, "web"),
    ("container", validate_name, "/web"),
    ("volume", check_name, "data"),
    ("network", _network, "appnet"),
    ("network alias", _alias, "store"),
    ("image", parse_reference, "busybox:1.36"),
    ("image", parse_reference, f"busybox@sha256:{HEX}"),
    ("image", parse_reference, "registry.local:5000/team/app"),
    ("digest", validate_digest, f"sha256:{HEX}"),
    ("blob digest", parse_digest, f"sha256:{HEX}"),
    ("snapshot key", check_key, "abc"),
]


@pytest.mark.parametrize(("what", "check", "good"), RULES)
@pytest.mark.parametrize("tail", ["\n", "\r\n", " ", "\t", "\x00"])
def test_a_name_with_anything_after_it_is_refused(
    what: str, check: Callable[[str], object], good: str, tail: str
) -> None:
    check(good)
    with pytest.raises(InvalidArgument):
        check(good + tail)


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_int, "3\n"),
        (parse_int, "\u0663"),
        (from_human_size, "10m\n"),
        (from_human_size, "1\u0660k"),
    ],
)
def test_log_option_numbers_are_ascii_digits_and_nothing_else(
    parse: Callable[[str], int], text: str
) -> None:
    with pytest.raises(OptionError):
        parse(text)

"""Names for containers nobody named: two words, as docker makes them (`jolly_turing`)."""

from __future__ import annotations

import re
import secrets

from runtimed.errors import InvalidArgument, shown

_ADJECTIVES = [
    "agile",
    "brave",
    "bright",
    "calm",
    "clever",
    "cosmic",
    "crisp",
    "curious",
    "daring",
    "deft",
    "eager",
    "elegant",
    "epic",
    "fair",
    "fancy",
    "fervent",
    "festive",
    "gentle",
    "glad",
    "golden",
    "happy",
    "hardy",
    "humble",
    "jolly",
    "keen",
    "kind",
    "lively",
    "lucid",
    "merry",
    "mighty",
    "modest",
    "nimble",
    "noble",
    "patient",
    "peaceful",
    "plucky",
    "polite",
    "proud",
    "quick",
    "quiet",
    "radiant",
    "rapid",
    "serene",
    "sharp",
    "shiny",
    "silent",
    "sleepy",
    "smart",
    "snappy",
    "solid",
    "spry",
    "steady",
    "stoic",
    "sunny",
    "swift",
    "tender",
    "tidy",
    "trusty",
    "upbeat",
    "vibrant",
    "vivid",
    "warm",
    "wise",
    "witty",
    "zealous",
]
# People whose work made computing what it is.
_NAMES = [
    "allen",
    "babbage",
    "backus",
    "bartik",
    "berners",
    "boole",
    "cerf",
    "clarke",
    "codd",
    "conway",
    "dijkstra",
    "engelbart",
    "euler",
    "floyd",
    "gauss",
    "goldberg",
    "hamilton",
    "hopper",
    "hoare",
    "johnson",
    "kahan",
    "karp",
    "kay",
    "knuth",
    "lamport",
    "liskov",
    "lovelace",
    "mccarthy",
    "minsky",
    "moore",
    "naur",
    "neumann",
    "noether",
    "perlman",
    "pike",
    "postel",
    "ritchie",
    "shannon",
    "shaw",
    "sutherland",
    "tarjan",
    "thompson",
    "torvalds",
    "turing",
    "wing",
    "wirth",
    "yao",
]

_VALID = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+")
# Room for any name people give, far below what an error message can carry back.
MAX_NAME = 255


def random_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NAMES)}"


def validate_name(name: str) -> str:
    """docker's rule for container names; a leading slash is accepted and dropped."""
    if not _VALID.fullmatch(name):
        raise InvalidArgument(
            f"Invalid container name ({shown(name)}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    if len(name.lstrip("/")) > MAX_NAME:
        raise InvalidArgument(
            f"Invalid container name ({shown(name)}): at most {MAX_NAME} characters are allowed"
        )
    return name.lstrip("/")

"""Path patterns: Go's filepath.Match (COPY/ADD wildcards) and `.dockerignore` rules.

filepath.Match: `*` is any run of non-`/` characters, `?` one non-`/`
character, `[a-z]` / `[^a-z]` a class, `\\x` the character x. A malformed
pattern is an error, as Go's ErrBadPattern.

`.dockerignore` (Docker's patternmatcher): one pattern a line, `#` comments,
paths cleaned and a leading `/` dropped, `**` any number of directories
(none included), `!` re-includes what earlier lines excluded, and a pattern
that matches a directory covers everything below it. The last matching line
decides.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from functools import lru_cache

from runtimed.errors import InvalidArgument


def _class(pattern: str, i: int) -> tuple[str, int]:
    """The regex of the class whose '[' is just before pattern[i]; (regex, index after ']')."""
    negated = i < len(pattern) and pattern[i] == "^"
    if negated:
        i += 1
    items: list[str] = []
    first = True
    while True:
        if i >= len(pattern):
            raise ValueError("unterminated character class")
        ch = pattern[i]
        if ch == "]" and not first:
            i += 1
            break
        first = False
        if ch == "\\":
            i += 1
            if i >= len(pattern):
                raise ValueError("trailing escape in class")
            ch = pattern[i]
        lo = ch
        i += 1
        if i + 1 < len(pattern) and pattern[i] == "-" and pattern[i + 1] != "]":
            hi = pattern[i + 1]
            i += 2
            if hi == "\\":
                if i >= len(pattern):
                    raise ValueError("trailing escape in class")
                hi = pattern[i]
                i += 1
            if hi < lo:
                raise ValueError("bad range in class")
            items.append(f"{re.escape(lo)}-{re.escape(hi)}")
        else:
            items.append(re.escape(lo))
    body = "".join(items)
    # A class never matches the separator, negated or not.
    return (f"[^/{body}]" if negated else f"(?!/)[{body}]"), i


def _translate(pattern: str, *, globstar: bool, kind: str) -> re.Pattern[str]:
    """A glob as a regex: Go's filepath.Match, or with `globstar` .dockerignore's (where
    `**` also spans directories)."""
    out: list[str] = []
    i = 0
    try:
        while i < len(pattern):
            ch = pattern[i]
            i += 1
            if ch == "*":
                if globstar and i < len(pattern) and pattern[i] == "*":
                    i += 1
                    if i < len(pattern) and pattern[i] == "/":
                        i += 1
                    if i >= len(pattern):
                        out.append(".*")
                    else:
                        out.append("(?:.*/)?")
                else:
                    out.append("[^/]*")
            elif ch == "?":
                out.append("[^/]")
            elif ch == "[":
                piece, i = _class(pattern, i)
                out.append(piece)
            elif ch == "\\":
                if i >= len(pattern):
                    raise ValueError("trailing escape")
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append(re.escape(ch))
    except ValueError as exc:
        raise InvalidArgument(f"syntax error in {kind} {pattern!r}: {exc}") from None
    return re.compile("".join(out) + r"\Z", re.DOTALL)


@lru_cache(maxsize=512)
def _go_regex(pattern: str) -> re.Pattern[str]:
    return _translate(pattern, globstar=False, kind="pattern")


def go_match(pattern: str, name: str) -> bool:
    """Go's filepath.Match(pattern, name)."""
    return _go_regex(pattern).match(name) is not None


def has_wildcards(pattern: str) -> bool:
    return any(c in pattern for c in "*?[\\")


# -- .dockerignore ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    text: str
    regex: re.Pattern[str]
    exclusion: bool
    dirs: tuple[str, ...]  # the pattern's components, to tell when a directory can be skipped


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    return _translate(pattern, globstar=True, kind=".dockerignore pattern")


def _clean(pattern: str) -> str:
    cleaned = posixpath.normpath(pattern)
    if len(cleaned) > 1 and cleaned.startswith("/"):
        cleaned = cleaned.lstrip("/") or "/"
    return cleaned


class IgnoreRules:
    """A parsed `.dockerignore`; `ignored("a/b")` for context-relative paths."""

    def __init__(self, patterns: list[str]) -> None:
        self.rules: list[_Rule] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            exclusion = text.startswith("!")
            if exclusion:
                text = text[1:].strip()
                if not text:
                    raise InvalidArgument('illegal exclusion pattern: "!"')
            cleaned = _clean(text)
            self.rules.append(
                _Rule(cleaned, _ignore_regex(cleaned), exclusion, tuple(cleaned.split("/")))
            )
        self.has_exclusions = any(r.exclusion for r in self.rules)

    @classmethod
    def parse(cls, text: str) -> IgnoreRules:
        lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
        return cls(lines)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def ignored(self, path: str) -> bool:
        """Whether the context path is left out (it, or a parent directory of it, matched)."""
        path = path.strip("/")
        parents = _parents(path)
        matched = False
        for rule in self.rules:
            if matched == (not rule.exclusion):
                continue  # cannot change the outcome
            hit = rule.regex.match(path) is not None or any(
                rule.regex.match(p) is not None for p in parents
            )
            if hit:
                matched = not rule.exclusion
        return matched

    def may_reinclude_below(self, directory: str) -> bool:
        """Whether some `!` rule could bring back a path below an ignored directory."""
        if not self.has_exclusions:
            return False
        depth = len(directory.strip("/").split("/"))
        for rule in self.rules:
            if not rule.exclusion:
                continue
            if "**" in rule.text:
                return True
            prefix = "/".join(rule.dirs[:depth])
            if len(rule.dirs) > depth and _ignore_regex(prefix).match(directory.strip("/")):
                return True
        return False


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]

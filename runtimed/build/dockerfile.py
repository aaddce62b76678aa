"""The Dockerfile parser: directives, comments, continuations, flags, heredocs.

Written here rather than taken from `dockerfile-parse` (PyPI): that library
reads heredoc bodies as instructions of their own, gets `${VAR:-word}`
wrong, and knows no flags; Docker's own rules are these:

- Parser directives (`# syntax=`, `# escape=`, `# check=`) count only at the
  very top, before any comment, blank line or instruction; `escape` sets the
  escape character (`\\` or a backtick).
- A line ending in the escape character (blanks after it allowed) continues
  on the next; comment and blank lines inside a continuation are dropped.
- `--name=value` words right after the instruction are its flags.
- RUN, COPY and ADD take heredocs (`<<EOF`, `<<-EOF` strips leading tabs,
  a quoted delimiter turns expansion off): their bodies follow the line.
- Arguments that parse as a JSON array of strings are the exec form.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from runtimed.errors import InvalidArgument

KNOWN_DIRECTIVES = ("syntax", "escape", "check")
HEREDOC_INSTRUCTIONS = ("RUN", "COPY", "ADD")
JSON_INSTRUCTIONS = ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME")
INSTRUCTIONS = (
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
)

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$")
_FLAG = re.compile(r"^--([a-zA-Z][a-zA-Z0-9-]*)(?:=(\S*))?(?:\s+|$)")
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([a-zA-Z_][a-zA-Z0-9_]*)\2")


@dataclass(frozen=True)
class Heredoc:
    name: str
    content: str
    expand: bool  # an unquoted delimiter: variables in the body are expanded
    chomp: bool  # <<-: leading tabs stripped


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # after the keyword and its flags, continuations joined
    line: int  # 1-based line of the keyword
    text: str  # keyword, flags and args as written (what `Step N/M :` shows)
    flags: list[tuple[str, str | None]] = field(default_factory=list)
    heredocs: list[Heredoc] = field(default_factory=list)
    json_args: list[str] | None = None  # the exec (JSON) form

    def flag(self, name: str) -> str | None:
        """The last value given for --name (None when absent; "" for a bare --name)."""
        found = None
        for key, value in self.flags:
            if key == name:
                found = "" if value is None else value
        return found

    def flag_values(self, name: str) -> list[str]:
        return [v or "" for k, v in self.flags if k == name]


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)


def _directives(lines: list[str]) -> tuple[dict[str, str], int]:
    """The directives at the top, and the index of the first line after them."""
    found: dict[str, str] = {}
    for i, line in enumerate(lines):
        match = _DIRECTIVE.match(line.strip()) if line.strip().startswith("#") else None
        if match is None:
            return found, i
        name = match.group(1).lower()
        if name not in KNOWN_DIRECTIVES:
            return found, i  # an unknown directive is a comment, and ends the directives
        if name in found:
            raise InvalidArgument(f"only one {name} parser directive can be used")
        found[name] = match.group(2)
    return found, len(lines)


def _continues(line: str, escape: str) -> str | None:
    """The line without its trailing escape when it continues, else None."""
    stripped = line.rstrip(" \t")
    if stripped.endswith(escape):
        # An escaped escape character at the end does not continue the line.
        body = stripped[: -len(escape)]
        run = len(body) - len(body.rstrip(escape))
        if run % 2 == 0:
            return body
    return None


def _is_comment_or_blank(line: str) -> bool:
    stripped = line.lstrip(" \t")
    return not stripped or stripped.startswith("#")


def _split_flags(rest: str) -> tuple[list[tuple[str, str | None]], str]:
    flags: list[tuple[str, str | None]] = []
    while rest.startswith("--"):
        match = _FLAG.match(rest)
        if match is None:
            break
        flags.append((match.group(1).lower(), match.group(2)))
        rest = rest[match.end() :]
    return flags, rest.strip()


def parse_json_array(text: str) -> list[str] | None:
    """The exec form: a JSON array of strings, or None when `text` is not one."""
    stripped = text.strip()
    if not stripped.startswith("["):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _read_heredocs(
    lines: list[str], start: int, markers: list[re.Match[str]]
) -> tuple[list[Heredoc], int]:
    docs: list[Heredoc] = []
    i = start
    for marker in markers:
        chomp, quote, name = marker.group(1) == "-", marker.group(2), marker.group(3)
        body: list[str] = []
        while True:
            if i >= len(lines):
                raise InvalidArgument(
                    f"unterminated heredoc {name}: no line {name!r} ends it before the file ends"
                )
            line = lines[i]
            i += 1
            candidate = line.lstrip("\t") if chomp else line
            if candidate == name:
                break
            body.append(candidate)
        content = "".join(f"{b}\n" for b in body)
        docs.append(Heredoc(name=name, content=content, expand=not quote, chomp=chomp))
    return docs, i


def parse(text: str | bytes) -> Dockerfile:
    """Parse a Dockerfile; errors name the line."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"the Dockerfile is not UTF-8 text: {exc}") from None
    text = text.removeprefix("\ufeff")
    lines = [line.rstrip("\r") for line in text.split("\n")]
    directives, i = _directives(lines)
    escape = directives.get("escape", "\\") or "\\"
    if escape not in ("\\", "`"):
        raise InvalidArgument(f"invalid escape token {escape!r} does not match ` or \\")
    instructions: list[Instruction] = []
    while i < len(lines):
        line = lines[i]
        i += 1
        if _is_comment_or_blank(line):
            continue
        first = i
        parts: list[str] = []
        body = _continues(line, escape)
        while body is not None:
            parts.append(body)
            body = None
            while i < len(lines) and _is_comment_or_blank(lines[i]):
                i += 1  # dropped inside a continuation
            if i >= len(lines):
                break
            line = lines[i]
            i += 1
            body = _continues(line, escape)
        else:
            parts.append(line)
        joined = "".join(parts).strip()
        keyword, _, rest = joined.partition(" ")
        if "\t" in keyword:
            keyword, _, more = keyword.partition("\t")
            rest = f"{more} {rest}"
        keyword = keyword.upper()
        if keyword not in INSTRUCTIONS:
            raise InvalidArgument(
                f"dockerfile parse error on line {first}: unknown instruction: {keyword}"
            )
        flags, args = _split_flags(rest.strip())
        inst = Instruction(keyword=keyword, args=args, line=first, text=joined, flags=flags)
        heredoc_keyword = keyword
        if keyword == "ONBUILD":
            heredoc_keyword = args.partition(" ")[0].upper()
        if heredoc_keyword in HEREDOC_INSTRUCTIONS and parse_json_array(args) is None:
            markers = list(_HEREDOC.finditer(args))
            if markers:
                inst.heredocs, i = _read_heredocs(lines, i, markers)
        if keyword in JSON_INSTRUCTIONS:
            inst.json_args = parse_json_array(args)
        if not args and not inst.heredocs:
            raise InvalidArgument(
                f"dockerfile parse error on line {first}: {keyword} requires at least one argument"
            )
        instructions.append(inst)
    return Dockerfile(instructions=instructions, escape=escape, directives=directives)


def parse_instruction_line(text: str, line: int = 0) -> Instruction:
    """One instruction written on one line (ONBUILD's trigger, `--change`)."""
    parsed = parse(text)
    if len(parsed.instructions) != 1:
        raise InvalidArgument(f"expected one instruction, got {text!r}")
    inst = parsed.instructions[0]
    inst.line = line
    return inst

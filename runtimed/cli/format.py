"""Docker's ways of showing things: human sizes and ages, tab-aligned tables, --format templates.

Templates are Go's text/template (runtimed.cli.gotemplate), imported only when a
command is given one.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runtimed.cli.client import CliError
from runtimed.humanize import human_duration, human_size

if TYPE_CHECKING:
    from runtimed.cli.gotemplate.template import Template

__all__ = [
    "ago",
    "format_rows",
    "human_duration",
    "human_size",
    "inspect_template",
    "print_docs",
    "render",
    "table",
    "tabwrite",
]

# docker exits 64 when inspect's --format does not parse (cli.StatusError{StatusCode: 64}).
TEMPLATE_USAGE_ERROR = 64


def ago(timestamp: float) -> str:
    if timestamp <= 0:
        return "N/A"
    return human_duration(time.time() - timestamp) + " ago"


# --- tables ---------------------------------------------------------------------------------


def tabwrite(text: str, *, minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter as docker sets it up (minwidth 10, padding 3, spaces).

    Cells end at tabs; a line's last cell is not part of a column. A column's width
    holds for a block of consecutive lines that have that column, as in Go.
    """
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[str] = []
    widths: list[int] = []

    def write(first: int, last: int) -> None:
        for line in lines[first:last]:
            cells = [
                cell.ljust(widths[j]) if j < len(widths) else cell for j, cell in enumerate(line)
            ]
            out.append("".join(cells))

    def block(first: int, last: int) -> None:
        column = len(widths)
        start = row = first
        while row < last:
            if column >= len(lines[row]) - 1:
                row += 1
                continue
            write(start, row)
            start = row
            width = minwidth
            while row < last and column < len(lines[row]) - 1:
                width = max(width, len(lines[row][column]) + padding)
                row += 1
            widths.append(width)
            block(start, row)
            widths.pop()
            start = row
        write(start, last)

    block(0, len(lines))
    return "\n".join(out)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A fixed table: headers and rows through tabwrite, trailing blanks cut."""
    text = "\n".join("\t".join(row) for row in [headers, *rows])
    return "\n".join(line.rstrip() for line in tabwrite(text).split("\n"))


# --- templates ------------------------------------------------------------------------------


def _parse(text: str, prefix: str, exit_code: int) -> Template:
    from runtimed.cli.gotemplate.errors import TemplateError
    from runtimed.cli.gotemplate.template import Template

    try:
        return Template(text)
    except TemplateError as exc:
        raise CliError(f"{prefix}: {exc.message}", exit_code) from None


def header_name(field: str) -> str:
    """A column's header from its field name, as docker's read: CreatedAt -> CREATED AT."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", field).upper()


def format_rows(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    *,
    type_name: str,
    headers: Mapping[str, str] | None = None,
    parse_prefix: str = "template parsing error",
) -> str:
    """A list command's --format, as docker's formatter does it: `json` for `{{json .}}`,
    a `table` prefix for tab-aligned columns under a header row, `\\t` and `\\n` as tab
    and newline. Each row is a struct of `type_name` (a missing field is an error)."""
    from runtimed.cli.gotemplate.errors import ExecError
    from runtimed.cli.gotemplate.funcs import HEADER
    from runtimed.cli.gotemplate.values import GoMap, Struct

    is_table = fmt.startswith("table")
    text = "{{json .}}" if fmt == "json" else fmt[len("table") :] if is_table else fmt
    text = text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    template = _parse(text, parse_prefix, 1)
    out = []
    for row in rows:
        try:
            out.append(template.execute(Struct(type_name, row)) + "\n")
        except ExecError as exc:
            raise CliError(f"template parsing error: {exc.message}") from None
    if not is_table:
        return "".join(out)
    names = dict(headers or {})
    for field in rows[0] if rows else ():
        names.setdefault(field, header_name(field))
    try:
        head = template.execute(GoMap(names), funcs=HEADER)
    except ExecError as exc:  # docker ignores a header that fails, keeping what it wrote
        head = exc.output
    return tabwrite(head + "\n" + "".join(out))


def inspect_template(fmt: str | None) -> Template | None:
    """inspect's -f (or events' --format), parsed before anything is looked up (docker:
    exit 64 when it does not); run it on one value with run_template."""
    if not fmt:
        return None
    return _parse(fmt, "template parsing error", TEMPLATE_USAGE_ERROR)


# Fields that are Go maps in docker's inspect types (the rest are structs). A missing key
# of a map prints `<no value>` (and `index` gives the zero value) where a missing struct
# field is an error; "" is the zero value of map[string]string.
_GO_MAPS: dict[str, Any] = {
    "Labels": "",
    "Options": "",
    "DriverOpts": "",
    "Sysctls": "",
    "StorageOpt": "",
    "Annotations": "",
    "Data": "",
    "Networks": None,
    "Ports": [],
    "PortBindings": [],
    "ExposedPorts": None,
    "Volumes": None,
    "Containers": None,
    "Status": None,
}


def go_view(value: Any, key: str = "", parent: str = "") -> Any:
    """An inspect document with its Go maps marked (see _GO_MAPS)."""
    from runtimed.cli.gotemplate.values import GoMap

    if isinstance(value, dict):
        items = {k: go_view(v, k, key) for k, v in value.items()}
        if key in _GO_MAPS:
            return GoMap(items, _GO_MAPS[key])
        if key == "Config" and parent == "LogConfig":
            return GoMap(items, "")
        return items
    if isinstance(value, list):
        return [go_view(v, "", key) for v in value]
    return value


def print_docs(docs: Sequence[Mapping[str, Any]], template: Template | None) -> bool:
    """What `inspect` prints: each document through -f, else all of them as JSON.

    Like docker, a document the template fails on is reported after the others are
    printed; the return value says whether all went through.
    """
    if template is None:
        print(json.dumps(docs, indent=4))
        return True
    from runtimed.cli.gotemplate.errors import ExecError

    errors = []
    for doc in docs:
        try:
            # missingkey=error: docker's second, untyped pass over the JSON document.
            print(template.execute(go_view(doc), missingkey="error"))
        except ExecError as exc:
            errors.append(f"template parsing error: {exc.message}")
    for line in errors:
        print(line, file=sys.stderr)
    return not errors


def run_template(template: Template, value: Any) -> str:
    """The template over `value` as it is: a mapping is a Go map (keys in their order for
    {{json .}}), so a caller's Mapping can answer field names its own way."""
    from runtimed.cli.gotemplate.errors import ExecError

    try:
        return template.execute(value)
    except ExecError as exc:
        raise CliError(exc.message) from None


def render(fmt: str, data: Mapping[str, Any], type_name: str) -> str:
    """One struct through a --format template (info, version): docker exits 64 when the
    template does not parse and prints Go's error as it is when it fails to run."""
    from runtimed.cli.gotemplate.errors import ExecError
    from runtimed.cli.gotemplate.values import Struct

    template = _parse(fmt, "template parsing error", TEMPLATE_USAGE_ERROR)
    try:
        return template.execute(Struct(type_name, go_view(dict(data))))
    except ExecError as exc:
        raise CliError(exc.message) from None

"""Docker's ways of showing things: human sizes and ages, padded tables, --format templates."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from runtimed.cli.client import CliError
from runtimed.errors import InvalidArgument
from runtimed.humanize import human_duration, human_size

__all__ = ["ago", "human_duration", "human_size", "render_template", "table", "template_headers"]


def ago(timestamp: float) -> str:
    if timestamp <= 0:
        return "N/A"
    return human_duration(time.time() - timestamp) + " ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded like docker's tabwriter (min width 10, padding 3)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [headers, *rows]:
        cells = [
            cell if i == len(row) - 1 else cell.ljust(max(10, widths[i] + 3))
            for i, cell in enumerate(row)
        ]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines)


_FIELD_RE = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}")


def _lookup(data: Any, path: str) -> Any:
    value = data
    for part in [p for p in path.split(".") if p]:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            raise InvalidArgument(f"template: can't evaluate field {part}")
    return value


def _go_string(value: Any) -> str:
    """Approximate Go's %v for the values inspect documents hold."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_go_string(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_go_string(v)}" for k, v in value.items()) + "]"
    return str(value)


def render_template(template: str, data: Mapping[str, Any]) -> str:
    """The subset of Go templates people use with --format: {{.Field.Sub}} and {{json .X}}."""
    template = template.replace("\\t", "\t").replace("\\n", "\n")

    def substitute(match: re.Match[str]) -> str:
        value = _lookup(data, match.group(2))
        if match.group(1):
            return json.dumps(value, separators=(",", ":"))
        return _go_string(value)

    return _FIELD_RE.sub(substitute, template)


def render(template: str, data: Mapping[str, Any]) -> str:
    """render_template for a command: a bad template ends it with one line, exit 1."""
    try:
        return render_template(template, data)
    except InvalidArgument as exc:
        raise CliError(f"template parsing error: {exc.message}") from None


def print_docs(docs: Sequence[Mapping[str, Any]], template: str | None) -> None:
    """What `inspect` prints: each document through --format, else all of them as JSON."""
    if template:
        for doc in docs:
            print(render(template, doc))
    else:
        print(json.dumps(docs, indent=4))


def template_headers(template: str) -> list[str]:
    """Column headers for a `table {{.A}}\\t{{.B}}` format: the field names, upper-cased."""
    return [
        re.sub(r"(?<!^)(?=[A-Z])", " ", m.group(2).split(".")[-1]).upper()
        for m in _FIELD_RE.finditer(template)
    ]

"""How `ps` rows and `logs` lines are printed (docker's columns, quoting and stamps)."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Mapping, Sequence

from runtimed.cli.format import ago, human_size, render, table
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

# --- ps formatting --------------------------------------------------------------------------

PS_HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "Networks": "NETWORKS",
    "LocalVolumes": "LOCAL VOLUMES",
}
PS_DEFAULT = "\t".join(
    f"{{{{.{field}}}}}"
    for field in ("ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names")
)
_TEMPLATE_FIELD = re.compile(r"\{\{\s*(?:json\s+)?\.(\w+)[^}]*\}\}")
_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_GO_ESCAPES |= {"\v": "\\v", '"': '\\"', "\\": "\\\\"}


def go_quote(text: str) -> str:
    """Go's strconv.Quote, which docker ps applies to COMMAND."""
    out = ['"']
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def short_id(ident: str) -> str:
    return ident.removeprefix("sha256:")[:12]


def created_at(stamp: int) -> str:
    """Go's time.Time.String() in local time: 2024-02-01 18:20:02 -0500 EST."""
    return dt.datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %z %Z")


def ps_row(c: pb.ContainerSummary, *, trunc: bool) -> dict[str, str]:
    image = c.image or "<no image>"
    if trunc and image.startswith("sha256:"):
        image = short_id(image)
    return {
        "ID": short_id(c.id) if trunc else c.id,
        "Image": image,
        "Command": go_quote(ellipsis(c.command, 20) if trunc else c.command),
        "CreatedAt": created_at(c.created),
        "RunningFor": ago(c.created),
        "Ports": c.ports,
        "State": c.state,
        "Status": c.status,
        "Size": human_size(c.size_rw),
        "Names": c.name.lstrip("/"),
        "Labels": ",".join(sorted(f"{k}={v}" for k, v in c.labels.items())),
        "Mounts": "",
        "Networks": "",
        "LocalVolumes": "0",
    }


def format_ps(
    rows: Sequence[Mapping[str, str]], fmt: str | None, *, quiet: bool, size: bool
) -> str:
    """Render `ps` output: the default table, `json`, a template, or `table TEMPLATE`."""
    if quiet:
        return "\n".join(row["ID"] for row in rows)
    default = PS_DEFAULT + ("\t{{.Size}}" if size else "")
    return format_rows(rows, fmt, headers=PS_HEADERS, default=default, sort_json=True)


def format_rows(
    rows: Sequence[Mapping[str, str]],
    fmt: str | None,
    *,
    headers: Mapping[str, str],
    default: str,
    sort_json: bool = False,
) -> str:
    """docker's --format for a listing: the default table, `json`, a template, or `table T`.

    `headers` name the columns of fields (docker's, e.g. ID -> "CONTAINER ID").
    """
    if fmt == "json":
        return "\n".join(
            json.dumps(row, sort_keys=sort_json, separators=(",", ":")) for row in rows
        )
    if not fmt or fmt == "table":
        fmt = "table " + default
    is_table = fmt.startswith("table")
    template = fmt[len("table") :].lstrip() if is_table else fmt
    rendered = [render(template, row) for row in rows]
    if not is_table:
        return "\n".join(rendered)
    template = template.replace("\\t", "\t")
    titles = [
        _TEMPLATE_FIELD.sub(lambda m: headers.get(m.group(1), m.group(1).upper()), cell)
        for cell in template.split("\t")
    ]
    return table(titles, [line.split("\t") for line in rendered])


# --- logs -------------------------------------------------------------------------------------


def rfc3339_nano(time_nano: int) -> str:
    """docker logs -t: always nine fraction digits, UTC."""
    seconds, frac = divmod(time_nano, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


class LogPrinter:
    """Turns LogEntry messages into bytes per stream, stamping each line start when asked."""

    def __init__(self, timestamps: bool) -> None:
        self.timestamps = timestamps
        self.at_line_start = {"stdout": True, "stderr": True}

    def format(self, entry: pb.LogEntry) -> bytes:
        if not self.timestamps:
            return entry.data
        stamp = rfc3339_nano(entry.time_nano).encode() + b" "
        out = bytearray()
        for line in entry.data.splitlines(keepends=True):
            if self.at_line_start.get(entry.stream, True):
                out += stamp
            out += line
            self.at_line_start[entry.stream] = line.endswith(b"\n")
        return bytes(out)

"""How `ps` rows and `logs` lines are printed (docker's columns, quoting and stamps)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import Any

from runtimed.cli.format import ago, format_rows, human_size
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

__all__ = ["LogPrinter", "created_at", "ellipsis", "format_ps", "ps_row"]

# --- ps formatting --------------------------------------------------------------------------

PS_HEADERS: dict[str, Any] = {
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
    # docker heads a label's column with its last dotted part: com.example.owner -> owner
    "Label": lambda name: name.split(".")[-1].replace("-", " ").replace("_", " "),
}
PS_DEFAULT = "\t".join(
    f"{{{{.{field}}}}}"
    for field in ("ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names")
)


def ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def short_id(ident: str) -> str:
    return ident.removeprefix("sha256:")[:12]


def created_at(stamp: int) -> str:
    """Go's time.Time.String() in local time: 2024-02-01 18:20:02 -0500 EST."""
    return dt.datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %z %Z")


def ps_row(c: pb.ContainerSummary, *, trunc: bool) -> dict[str, Any]:
    """What a `ps` template sees: docker's ContainerContext fields, and its Label method."""
    from runtimed.cli.gotemplate.gofmt import go_quote  # docker quotes COMMAND with Go's %q

    image = c.image or "<no image>"
    labels = dict(c.labels)
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
        "Labels": ",".join(sorted(f"{k}={v}" for k, v in labels.items())),
        "Label": lambda name: labels.get(name, ""),
        "Mounts": "",
        "Networks": "",
        "LocalVolumes": "0",
    }


def format_ps(
    rows: Sequence[Mapping[str, Any]], fmt: str | None, *, quiet: bool, size: bool
) -> str:
    """Render `ps` output: the default table, `json`, a template, or `table TEMPLATE`."""
    if quiet:
        return "".join(row["ID"] + "\n" for row in rows)
    if not fmt or fmt == "table":
        fmt = "table " + PS_DEFAULT + ("\t{{.Size}}" if size else "")
    return format_rows(
        rows,
        fmt,
        type_name="*formatter.ContainerContext",
        headers=PS_HEADERS,
        parse_prefix="failed to parse template",
    )


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

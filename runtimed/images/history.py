"""docker history: an image's history entries, newest first, with their layers' sizes.

Each entry that made a layer gets the size of that layer's files; the rows
are then named, from the top, by the image and the images it was committed
(or built) from, one image per row as docker does; rows beyond the known
ancestors (layers pulled or loaded from elsewhere) are `<missing>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtimed.images.service import ImageService, parse_created
from runtimed.store.metadata import ImageRecord

MISSING = "<missing>"


@dataclass
class HistoryRow:
    id: str
    created: float
    created_by: str
    size: int
    comment: str
    tags: list[str] = field(default_factory=list)


def image_history(images: ImageService, record: ImageRecord) -> list[HistoryRow]:
    config = images.config(record)
    rows: list[HistoryRow] = []
    layer = 0
    for entry in config.get("history") or []:
        if not isinstance(entry, dict):
            continue
        size = 0
        if not entry.get("empty_layer"):
            if layer < len(record.chain_ids):
                found = images.metadata.get_layer(record.chain_ids[layer])
                size = found.size if found is not None else 0
            layer += 1
        rows.insert(
            0,
            HistoryRow(
                id=MISSING,
                created=parse_created(entry.get("created")),
                created_by=str(entry.get("created_by") or ""),
                size=size,
                comment=str(entry.get("comment") or ""),
            ),
        )
    current: ImageRecord | None = record
    for row in rows:
        if current is None:
            break
        row.id = current.id
        row.tags = list(current.tags)
        parent = images.metadata.parent_of(current.id)
        current = images.metadata.get_image(parent) if parent else None
    return rows

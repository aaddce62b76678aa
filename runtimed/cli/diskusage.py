"""`runtimectl system df`: docker's summary of what images, containers, local volumes and
the build cache take on disk, and with -v the tables behind it.

The rules are docker's CLI's: an image is active when a container uses it and its
reclaimable space is the layers' total minus the unique part of active images; a
container is active while it runs; a volume while a container links it; sizes in
decimal units with four significant digits (three in the -v tables).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from runtimed.cli.client import Client
from runtimed.cli.format import ago, human_size, table
from runtimed.cli.psformat import ellipsis, short_id
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

SUMMARY_HEADERS = ("TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE")
_ACTIVE_STATES = ("running", "paused", "restarting")


def _size(n: int) -> str:
    return human_size(n, 4)  # docker's units.HumanSize


def reclaimable(amount: int, total: int, *, percent: bool = True) -> str:
    """docker's RECLAIMABLE cell: the size, and its whole percentage of the total."""
    if percent and total > 0:
        return f"{_size(amount)} ({amount * 100 // total}%)"
    return _size(amount)


def summary_rows(df: pb.SystemDfResponse) -> list[list[str]]:
    images = df.images
    used = sum(i.image.size - i.shared_size for i in images if i.image.containers)
    containers = df.containers
    active_c = [c for c in containers if c.container.state in _ACTIVE_STATES]
    c_total = sum(c.container.size_rw for c in containers)
    c_active = sum(c.container.size_rw for c in active_c)
    sized = [v for v in df.volumes if v.size >= 0]
    v_total = sum(v.size for v in sized)
    v_free = sum(v.size for v in sized if not v.links)
    cache = df.build_cache
    b_total = sum(b.size for b in cache if not b.shared)
    b_free = sum(b.size for b in cache if not b.in_use and not b.shared)
    return [
        [
            "Images",
            str(len(images)),
            str(sum(1 for i in images if i.image.containers)),
            _size(df.layers_size),
            reclaimable(max(0, df.layers_size - used), df.layers_size),
        ],
        [
            "Containers",
            str(len(containers)),
            str(len(active_c)),
            _size(c_total),
            reclaimable(c_total - c_active, c_total),
        ],
        [
            "Local Volumes",
            str(len(df.volumes)),
            str(sum(1 for v in df.volumes if v.links)),
            _size(v_total),
            reclaimable(v_free, v_total),
        ],
        [
            "Build Cache",
            str(len(cache)),
            str(sum(1 for b in cache if b.in_use)),
            _size(b_total),
            reclaimable(b_free, b_total, percent=False),
        ],
    ]


def _repo_tags(image: pb.ImageSummary) -> list[tuple[str, str]]:
    """One row per repo:tag (a tag's colon comes after the last slash), as docker's."""
    pairs = []
    for name in image.repo_tags:
        repo, sep, tag = name.rpartition(":")
        pairs.append((repo, tag) if sep and "/" not in tag else (name, "<none>"))
    return pairs or [("<none>", "<none>")]


def _section(title: str, headers: Sequence[str], rows: list[list[str]]) -> str:
    return f"{title}\n\n{table(headers, rows)}\n"


def verbose(df: pb.SystemDfResponse) -> str:
    from runtimed.cli.gotemplate.gofmt import go_quote  # docker quotes COMMAND with Go's %q

    image_rows = [
        [
            repo,
            tag,
            short_id(i.image.id),
            ago(i.image.created),
            human_size(i.image.size),
            human_size(i.shared_size),
            human_size(i.image.size - i.shared_size),
            str(i.image.containers),
        ]
        for i in df.images
        for repo, tag in _repo_tags(i.image)
    ]
    container_rows = [
        [
            short_id(c.container.id),
            ellipsis(c.container.image, 20),
            go_quote(ellipsis(c.container.command, 20)),
            str(c.local_volumes),
            human_size(c.container.size_rw),
            ago(c.container.created),
            c.container.status,
            c.container.name.lstrip("/"),
        ]
        for c in df.containers
    ]
    volume_rows = [
        [v.name, str(v.links), human_size(v.size) if v.size >= 0 else "N/A"] for v in df.volumes
    ]
    cache_rows = [
        [
            b.id[:25],
            b.type,
            human_size(b.size),
            ago(b.created),
            ago(b.last_used),
            str(b.usage_count),
            "true" if b.shared else "false",
        ]
        for b in df.build_cache
    ]
    cache_total = sum(b.size for b in df.build_cache if not b.shared)
    return "\n".join(
        [
            _section(
                "Images space usage:",
                (
                    "REPOSITORY",
                    "TAG",
                    "IMAGE ID",
                    "CREATED",
                    "SIZE",
                    "SHARED SIZE",
                    "UNIQUE SIZE",
                    "CONTAINERS",
                ),
                image_rows,
            ),
            _section(
                "Containers space usage:",
                (
                    "CONTAINER ID",
                    "IMAGE",
                    "COMMAND",
                    "LOCAL VOLUMES",
                    "SIZE",
                    "CREATED",
                    "STATUS",
                    "NAMES",
                ),
                container_rows,
            ),
            _section("Local Volumes space usage:", ("VOLUME NAME", "LINKS", "SIZE"), volume_rows),
            _section(
                f"Build cache usage: {_size(cache_total)}",
                ("CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"),
                cache_rows,
            ),
        ]
    )


def cmd_df(client: Client, args: argparse.Namespace) -> int:
    df = client.engine.SystemDf(pb.SystemDfRequest())
    print(verbose(df) if args.verbose else table(SUMMARY_HEADERS, summary_rows(df)))
    return 0


def register(system_sub: argparse._SubParsersAction) -> None:
    p = system_sub.add_parser("df", help="show disk usage")
    p.add_argument("-v", "--verbose", action="store_true", help="per-item tables")
    p.set_defaults(func=cmd_df)

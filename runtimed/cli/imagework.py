"""Making and moving images: commit, diff, export, history, save, load."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from runtimed.cli.client import Client, CliError
from runtimed.cli.containers import _add_bool_variants
from runtimed.cli.format import ago, format_rows, human_size
from runtimed.cli.psformat import ellipsis, short_id
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

CHUNK = 1 << 20
MISSING = "<missing>"
HISTORY_HEADERS = {
    "ID": "IMAGE",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "CreatedBy": "CREATED BY",
    "Size": "SIZE",
    "Comment": "COMMENT",
}
HISTORY_DEFAULT = "{{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
TERMINAL_OUTPUT = "cowardly refusing to save to a terminal. Use the -o flag or redirect"


# --- commit / diff --------------------------------------------------------------------------


def cmd_commit(client: Client, args: argparse.Namespace) -> int:
    reply = client.engine.CommitContainer(
        pb.CommitContainerRequest(
            container=args.container,
            reference=args.reference or "",
            author=args.author or "",
            comment=args.message or "",
            changes=args.change or [],
            pause=args.pause,
        )
    )
    print(reply.image_id)
    return 0


def cmd_diff(client: Client, args: argparse.Namespace) -> int:
    reply = client.engine.ContainerChanges(pb.ContainerRef(id=args.container))
    for change in reply.changes:
        print(f"{change.kind} {change.path}")
    return 0


# --- history --------------------------------------------------------------------------------


def _rfc3339(stamp: int) -> str:
    """Go's time.RFC3339 in local time: 2024-02-01T18:20:02+01:00, or ...Z in UTC."""
    text = dt.datetime.fromtimestamp(stamp).astimezone().isoformat(timespec="seconds")
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def history_row(item: pb.HistoryItem, *, trunc: bool, human: bool) -> dict[str, str]:
    created = _rfc3339(item.created)
    created_by = item.created_by.replace("\t", " ")
    ident = item.id
    if trunc and ident != MISSING:
        ident = short_id(ident)
    return {
        "ID": ident,
        "CreatedSince": ago(item.created) if human else created,
        "CreatedAt": created,
        "CreatedBy": ellipsis(created_by, 45) if trunc else created_by,
        "Size": human_size(item.size) if human else str(item.size),
        "Comment": item.comment,
    }


def cmd_history(client: Client, args: argparse.Namespace) -> int:
    reply = client.engine.ImageHistory(pb.ImageHistoryRequest(reference=args.image))
    rows = [history_row(i, trunc=not args.no_trunc, human=args.human) for i in reply.items]
    if args.quiet:
        print("".join(row["ID"] + "\n" for row in rows), end="")
        return 0
    fmt = args.format if args.format and args.format != "table" else "table " + HISTORY_DEFAULT
    text = format_rows(rows, fmt, type_name="*formatter.historyContext", headers=HISTORY_HEADERS)
    print(text, end="")
    return 0


# --- byte streams out: export, save ---------------------------------------------------------


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    """-o FILE (written whole or not at all) or stdout, never a terminal."""
    if not path:
        if sys.stdout.isatty():
            raise CliError(TERMINAL_OUTPUT)
        sys.stdout.flush()
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        out = tmp.open("wb")
    except OSError as exc:
        raise CliError(f"failed to save: open {path}: {exc.strerror}") from None
    try:
        with out:
            yield out
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _write_stream(chunks: Iterable[pb.DataChunk], path: str | None) -> None:
    with _output(path) as out:
        for chunk in chunks:
            out.write(chunk.data)


def cmd_export(client: Client, args: argparse.Namespace) -> int:
    if not args.output and sys.stdout.isatty():
        raise CliError(TERMINAL_OUTPUT)
    _write_stream(client.engine.ExportContainer(pb.ContainerRef(id=args.container)), args.output)
    return 0


def cmd_save(client: Client, args: argparse.Namespace) -> int:
    if not args.output and sys.stdout.isatty():
        raise CliError(TERMINAL_OUTPUT)
    chunks = client.engine.SaveImages(pb.SaveImagesRequest(references=args.images))
    _write_stream(chunks, args.output)
    return 0


# --- load -----------------------------------------------------------------------------------


def _load_chunks(stream: IO[bytes]) -> Iterator[pb.DataChunk]:
    while data := stream.read(CHUNK):
        yield pb.DataChunk(data=data)


def cmd_load(client: Client, args: argparse.Namespace) -> int:
    if args.input:
        try:
            stream: IO[bytes] = Path(args.input).open("rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise CliError(f"open {args.input}: {exc.strerror.lower()}") from None
    else:
        if sys.stdin.isatty():
            raise CliError("requested load from stdin, but stdin is empty")
        stream = sys.stdin.buffer
    try:
        reply = client.engine.LoadImages(_load_chunks(stream))
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    for name, old in reply.replaced.items():
        print(
            f"The image {name} already exists, renaming the old one with ID {old} to empty string"
        )
    for image in reply.images:
        if not image.tags:
            print(f"Loaded image ID: {image.image_id}")
        for tag in image.tags:
            print(f"Loaded image: {tag}")
    return 0


# --- parsers --------------------------------------------------------------------------------


def _add_commit(p: argparse.ArgumentParser) -> None:
    p.add_argument("container")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-a", "--author", help='author (e.g. "Jane Doe <jane@example.com>")')
    p.add_argument("-m", "--message", help="commit message")
    p.add_argument("-c", "--change", action="append", help="apply a Dockerfile instruction")
    _add_bool_variants(p, "--pause", "pause", True)
    p.add_argument("-p", dest="pause", action="store_const", const=True, help=argparse.SUPPRESS)
    p.add_argument("--no-pause", dest="pause", action="store_const", const=False)
    p.set_defaults(func=cmd_commit)


def _add_diff(p: argparse.ArgumentParser) -> None:
    p.add_argument("container")
    p.set_defaults(func=cmd_diff)


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("container")
    p.add_argument("-o", "--output", help="write to a file instead of stdout")
    p.set_defaults(func=cmd_export)


def _add_history(p: argparse.ArgumentParser) -> None:
    p.add_argument("image")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image ids")
    p.add_argument("--format", help="json, table, table TEMPLATE or a Go template")
    _add_bool_variants(p, "--human", "human", True)
    p.add_argument("-H", dest="human", action="store_const", const=True, help=argparse.SUPPRESS)
    for word, value in (("true", True), ("false", False)):
        p.add_argument(
            f"-H={word}", dest="human", action="store_const", const=value, help=argparse.SUPPRESS
        )
    p.set_defaults(func=cmd_history)


def _add_save(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+")
    p.add_argument("-o", "--output", help="write to a file instead of stdout")
    p.set_defaults(func=cmd_save)


def _add_load(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", help="read from a tar archive file instead of stdin")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress the load output")
    p.set_defaults(func=cmd_load)


def register(
    sub: argparse._SubParsersAction,
    image_group: argparse._SubParsersAction,
    container_group: argparse._SubParsersAction,
) -> None:
    for group, commands in (
        (
            container_group,
            [
                ("commit", "create an image from a container's changes", _add_commit),
                ("diff", "list a container's changed files", _add_diff),
                ("export", "a container's filesystem as a tar archive", _add_export),
            ],
        ),
        (
            image_group,
            [
                ("history", "show the history of an image", _add_history),
                ("save", "images as a tar archive", _add_save),
                ("load", "load images from a tar archive", _add_load),
            ],
        ),
    ):
        for name, text, add in commands:
            add(sub.add_parser(name, help=text))
            add(group.add_parser(name, help=text))

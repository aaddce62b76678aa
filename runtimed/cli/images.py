"""Image commands: pull, images, image inspect, tag, rmi, import, image prune."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from runtimed.cli.client import Client, CliError, confirmed, daemon_error, os_error_line
from runtimed.cli.format import ago, format_rows, human_size, inspect_template, print_docs
from runtimed.cli.progress import PullDisplay
from runtimed.cli.psformat import created_at
from runtimed.cli.rpc import RpcError, StatusCode
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

IMPORT_CHUNK = 1 << 20


def short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def parse_filters(values: list[str] | None) -> dict[str, str]:
    filters: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"bad format of filter (expected name=value): {item}", 125)
        filters[key.strip().lower()] = value
    return filters


def pull(client: Client, reference: str, *, platform: str = "", quiet: bool = False) -> str:
    display = PullDisplay(sys.stdout, tty=sys.stdout.isatty())
    image_id = ""
    for event in client.engine.PullImage(
        pb.PullImageRequest(reference=reference, platform=platform)
    ):
        kind = event.WhichOneof("event")
        if kind == "result":
            # Last line: the image id, as podman prints it (scripts read it).
            image_id = event.result.image_id
            print(image_id)
        elif quiet:
            continue
        elif kind == "status":
            display.status(event.status)
        elif kind == "layer":
            layer = event.layer
            display.layer(layer.id, layer.status, layer.current, layer.total)
    return image_id


def cmd_pull(client: Client, args: argparse.Namespace) -> int:
    pull(client, args.reference, platform=args.platform or "", quiet=args.quiet)
    return 0


def _image_rows(images: list[pb.ImageSummary]) -> Iterator[dict[str, Any]]:
    """One row per repository:tag, untagged images as <none> (docker images)."""
    for image in images:
        digests = {d.rsplit("@", 1)[0]: d.rsplit("@", 1)[1] for d in image.repo_digests}
        base = {
            "ID": image.id,
            "CreatedAt": created_at(image.created),
            "CreatedSince": ago(image.created),
            "Size": human_size(image.size),
            "VirtualSize": human_size(image.size),
            "SharedSize": "N/A",
            "UniqueSize": "N/A",
            "Containers": "N/A",
        }
        if not image.repo_tags:
            repos = list(digests) or ["<none>"]
            for repo in repos:
                yield {
                    **base,
                    "Repository": repo,
                    "Tag": "<none>",
                    "Digest": digests.get(repo, "<none>"),
                }
            continue
        for tag in image.repo_tags:
            repo, _, tagname = tag.rpartition(":")
            yield {
                **base,
                "Repository": repo,
                "Tag": tagname,
                "Digest": digests.get(repo, "<none>"),
            }


def cmd_images(client: Client, args: argparse.Namespace) -> int:
    reply = client.engine.ListImages(
        pb.ListImagesRequest(
            all=args.all, filters=parse_filters(args.filter), reference=args.reference or ""
        )
    )
    rows = list(_image_rows(list(reply.images)))
    if args.quiet:
        seen: list[str] = []
        for row in rows:
            ident = row["ID"] if args.no_trunc else short(row["ID"])
            if ident not in seen:
                seen.append(ident)
        print("\n".join(seen)) if seen else None
        return 0
    for row in rows:
        row["ID"] = row["ID"] if args.no_trunc else short(row["ID"])
    fmt = args.format
    if not fmt or fmt == "table":
        cells = ["{{.Repository}}", "{{.Tag}}"] + (["{{.Digest}}"] if args.digests else [])
        fmt = "table " + "\t".join([*cells, "{{.ID}}", "{{.CreatedSince}}", "{{.Size}}"])
    sys.stdout.write(
        format_rows(rows, fmt, type_name="*formatter.imageContext", headers=IMAGE_HEADERS)
    )
    return 0


# docker's column names for `images --format 'table ...'`.
IMAGE_HEADERS = {
    "ID": "IMAGE ID",
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
    "VirtualSize": "VIRTUAL SIZE",
    "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
    "Containers": "CONTAINERS",
}


def image_doc(client: Client, ref: str) -> dict[str, Any]:
    """What `docker image inspect` prints for one image (RpcError as the daemon says)."""
    doc: dict[str, Any] = json.loads(
        client.engine.InspectImage(pb.InspectImageRequest(reference=ref)).json
    )
    return doc


def cmd_inspect(client: Client, args: argparse.Namespace) -> int:
    template = inspect_template(args.format)
    docs, failed = [], False
    for ref in args.images:
        try:
            docs.append(image_doc(client, ref))
        except RpcError as exc:  # keep going like docker, report at the end
            missing = exc.code() == StatusCode.NOT_FOUND
            print(
                f"Error: No such image: {ref}" if missing else daemon_error(client, exc),
                file=sys.stderr,
            )
            failed = True
    return 0 if print_docs(docs, template) and not failed else 1


def cmd_tag(client: Client, args: argparse.Namespace) -> int:
    client.engine.TagImage(pb.TagImageRequest(source=args.source, target=args.target))
    return 0


def cmd_rmi(client: Client, args: argparse.Namespace) -> int:
    failed = False
    for ref in args.images:
        try:
            reply = client.engine.RemoveImage(
                pb.RemoveImageRequest(reference=ref, force=args.force, no_prune=args.no_prune)
            )
        except RpcError as exc:  # one failure does not stop the others
            print(daemon_error(client, exc), file=sys.stderr)
            failed = True
            continue
        for name in reply.untagged:
            print(f"Untagged: {name}")
        for digest in reply.deleted:
            print(f"Deleted: {digest}")
    return 1 if failed else 0


def cmd_prune(client: Client, args: argparse.Namespace) -> int:
    what = (
        "all images without at least one container associated to them"
        if args.all
        else "all dangling images"
    )
    if not args.force and not confirmed(
        f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] "
    ):
        return 0
    reply = client.engine.PruneImages(
        pb.PruneImagesRequest(all=args.all, filters=parse_filters(args.filter))
    )
    if reply.untagged or reply.deleted:
        print("Deleted Images:")
        for name in reply.untagged:
            print(f"untagged: {name}")
        for digest in reply.deleted:
            print(f"deleted: {digest}")
        print()
    print(f"Total reclaimed space: {human_size(reply.space_reclaimed)}")
    return 0


def _import_chunks(stream: BinaryIO, options: pb.ImportOptions) -> Iterator[pb.ImportImageChunk]:
    yield pb.ImportImageChunk(options=options)
    while chunk := stream.read(IMPORT_CHUNK):
        yield pb.ImportImageChunk(data=chunk)


def _open_source(source: str) -> BinaryIO:
    """The tarball, opened before the call: an unreadable file is one line, as docker says it."""
    if source == "-":
        return sys.stdin.buffer
    try:
        return Path(source).open("rb")  # noqa: SIM115 - cmd_import closes it
    except OSError as exc:
        raise CliError(os_error_line(exc, "open"), 125) from None


def cmd_import(client: Client, args: argparse.Namespace) -> int:
    if "://" in args.source:
        raise CliError("importing from a URL is not supported: download the file first", 125)
    stream = _open_source(args.source)
    options = pb.ImportOptions(
        reference=args.reference or "",
        changes=args.change or [],
        message=args.message or "",
        platform=args.platform or "",
        source=args.source if args.source != "-" else "-",
    )
    try:
        reply = client.engine.ImportImage(_import_chunks(stream, options))
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    print(reply.image_id)
    return 0


def register(sub: argparse._SubParsersAction, image_group: argparse._SubParsersAction) -> None:
    """Add the commands both at top level (docker images) and under `image` (docker image ls)."""

    def add_pull(p: argparse.ArgumentParser) -> None:
        p.add_argument("reference")
        p.add_argument("--platform")
        p.add_argument("-q", "--quiet", action="store_true")
        p.set_defaults(func=cmd_pull)

    def add_images(p: argparse.ArgumentParser) -> None:
        p.add_argument("reference", nargs="?")
        p.add_argument("-a", "--all", action="store_true")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("--digests", action="store_true")
        p.add_argument("--no-trunc", action="store_true")
        p.add_argument("-f", "--filter", action="append")
        p.add_argument("--format")
        p.set_defaults(func=cmd_images)

    def add_inspect(p: argparse.ArgumentParser) -> None:
        p.add_argument("images", nargs="+")
        p.add_argument("-f", "--format")
        p.set_defaults(func=cmd_inspect)

    def add_tag(p: argparse.ArgumentParser) -> None:
        p.add_argument("source")
        p.add_argument("target")
        p.set_defaults(func=cmd_tag)

    def add_rmi(p: argparse.ArgumentParser) -> None:
        p.add_argument("images", nargs="+")
        p.add_argument("-f", "--force", action="store_true")
        p.add_argument("--no-prune", action="store_true")
        p.set_defaults(func=cmd_rmi)

    def add_import(p: argparse.ArgumentParser) -> None:
        p.add_argument("source", help="tarball path, or - for stdin")
        p.add_argument("reference", nargs="?")
        p.add_argument("-c", "--change", action="append")
        p.add_argument("-m", "--message")
        p.add_argument("--platform")
        p.set_defaults(func=cmd_import)

    def add_prune(p: argparse.ArgumentParser) -> None:
        p.add_argument("-a", "--all", action="store_true")
        p.add_argument("-f", "--force", action="store_true")
        p.add_argument("--filter", action="append")
        p.set_defaults(func=cmd_prune)

    add_pull(sub.add_parser("pull", help="pull an image from a registry"))
    add_images(sub.add_parser("images", help="list images"))
    add_tag(sub.add_parser("tag", help="give an image another name"))
    add_rmi(sub.add_parser("rmi", help="remove images"))
    add_import(sub.add_parser("import", help="make an image from a rootfs tarball"))
    add_pull(image_group.add_parser("pull", help="pull an image"))
    add_images(image_group.add_parser("ls", aliases=["list"], help="list images"))
    add_inspect(image_group.add_parser("inspect", help="show image details"))
    add_tag(image_group.add_parser("tag", help="tag an image"))
    add_rmi(image_group.add_parser("rm", aliases=["remove"], help="remove images"))
    add_import(image_group.add_parser("import", help="import a rootfs tarball"))
    add_prune(image_group.add_parser("prune", help="remove unused images"))

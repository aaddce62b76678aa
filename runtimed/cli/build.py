"""runtimectl build and builder prune.

As docker's CLI does, the client makes the context: a directory is sent as a
tar stream without what its `.dockerignore` leaves out; a tarball (a file,
or `-`) is sent as it is; `-` that is not a tarball is a Dockerfile with no
context. The Dockerfile (`-f`, default CONTEXT/Dockerfile; `-f -` reads
stdin) travels with the options.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from runtimed.cli.client import Client, CliError, confirmed
from runtimed.cli.format import human_size
from runtimed.errors import InvalidArgument
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

if TYPE_CHECKING:
    from runtimed.build.patterns import IgnoreRules

# tarfile and the .dockerignore rules are imported where used: every runtimectl command
# loads this module.

CHUNK = 1 << 20
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"(\xb5/\xfd")


class _Chunker:
    """Tar bytes gathered into messages of about CHUNK bytes; a big file's pieces go
    out as they were read, never joined or copied again."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> Iterator[bytes]:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= CHUNK:
            yield from self.flush()

    def flush(self) -> Iterator[bytes]:
        if self.parts:
            data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
            self.parts, self.size = [], 0
            yield data


def context_tar(root: Path, rules: IgnoreRules) -> Iterator[bytes]:
    """The directory as a tar stream (PAX headers, as docker sends), without what
    .dockerignore leaves out."""
    import tarfile

    out = _Chunker()
    for rel, full, st in _walk(root, "", rules):
        info = tarfile.TarInfo(rel)
        info.mode = stat.S_IMODE(st.st_mode)
        info.mtime = int(st.st_mtime)
        info.uid = info.gid = 0
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(full)
        elif stat.S_ISREG(st.st_mode):
            info.size = st.st_size
        else:
            continue
        yield from out.add(info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))
        if info.size:
            yield from _file_data(full, info.size, out)
    yield from out.add(bytes(2 * tarfile.BLOCKSIZE))  # the end-of-archive marker
    yield from out.flush()


def _file_data(path: str, size: int, out: _Chunker) -> Iterator[bytes]:
    """A file's bytes as tar data: exactly `size` of them, then padding to a block."""
    from tarfile import BLOCKSIZE

    left = size
    with open(path, "rb", buffering=0) as f:
        while left:
            data = f.read(min(left, CHUNK))
            if not data:
                raise CliError(f"error checking context: {path} shrank while it was read")
            left -= len(data)
            yield from out.add(data)
    remainder = size % BLOCKSIZE
    if remainder:
        yield from out.add(bytes(BLOCKSIZE - remainder))


def _walk(root: Path, rel: str, rules: IgnoreRules) -> Iterator[tuple[str, str, os.stat_result]]:
    base = root / rel if rel else root
    try:
        with os.scandir(base) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise CliError(f"error checking context: {exc.strerror}: {exc.filename}") from None
    for entry in entries:
        child = f"{rel}/{entry.name}" if rel else entry.name
        st = entry.stat(follow_symlinks=False)
        ignored = bool(rules) and rules.ignored(child)
        if stat.S_ISDIR(st.st_mode):
            if not ignored:
                yield child, entry.path, st
            if not ignored or rules.may_reinclude_below(child):
                yield from _walk(root, child, rules)
        elif not ignored:
            if stat.S_ISREG(st.st_mode) and not os.access(entry.path, os.R_OK):
                raise CliError(f"error checking context: can't stat '{entry.path}'")
            yield child, entry.path, st


def _is_tarball(head: bytes) -> bool:
    if any(head.startswith(m) for m in _COMPRESSED):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not key:
            raise CliError(f"invalid argument {item!r} for {flag}: want KEY=VALUE", 1)
        if not sep:
            # docker takes `--build-arg NAME` from the environment, and drops it if unset.
            if key in os.environ:
                out[key] = os.environ[key]
            continue
        out[key] = value
    return out


def _prepare(args: argparse.Namespace) -> tuple[pb.BuildOptions, Iterator[bytes]]:
    options = pb.BuildOptions(
        tags=args.tag or [],
        build_args=_pairs(args.build_arg, "--build-arg"),
        target=args.target or "",
        no_cache=args.no_cache,
        pull=args.pull,
        labels=_pairs(args.label, "--label"),
        platform=args.platform or "",
        network=args.network or "",
    )
    source = args.context
    if "://" in source or source.startswith("git@"):
        raise CliError(
            "unable to prepare context: remote contexts (URLs, git) are not supported", 1
        )
    dockerfile_arg = args.file
    stdin_used = False
    if dockerfile_arg == "-":
        options.dockerfile = sys.stdin.buffer.read()
        stdin_used = True
        if not options.dockerfile:
            raise CliError("the Dockerfile read from stdin is empty", 1)
    if source == "-":
        if stdin_used:
            raise CliError(
                "invalid argument: can't use stdin for both build context and dockerfile", 1
            )
        data = sys.stdin.buffer.read()
        if _is_tarball(data[:512]):
            options.dockerfile_path = dockerfile_arg or "Dockerfile"
            return options, _chunks(data)
        options.dockerfile = data
        return options, iter(())
    path = Path(source)
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(512)
        if not _is_tarball(head):
            raise CliError(
                f"unable to prepare context: {source} is neither a directory nor a tarball", 1
            )
        options.dockerfile_path = dockerfile_arg or "Dockerfile"
        return options, _file_chunks(path)
    if not path.is_dir():
        raise CliError(f'unable to prepare context: path "{source}" not found', 1)
    if not stdin_used:
        dockerfile = Path(dockerfile_arg) if dockerfile_arg else path / "Dockerfile"
        try:
            options.dockerfile = dockerfile.read_bytes()
        except OSError:
            raise CliError(
                f"unable to prepare context: unable to evaluate symlinks in Dockerfile path: "
                f"lstat {dockerfile.resolve()}: no such file or directory",
                1,
            ) from None
        options.dockerfile_path = str(dockerfile)
    from runtimed.build.patterns import IgnoreRules

    rules = IgnoreRules([])
    ignore_file = path / ".dockerignore"
    if ignore_file.is_file():
        try:
            rules = IgnoreRules.parse(ignore_file.read_text(errors="replace"))
        except InvalidArgument as exc:
            raise CliError(f"unable to prepare context: {exc.message}", 1) from None
    return options, context_tar(path, rules)


def _requests(options: pb.BuildOptions, chunks: Iterator[bytes]) -> Iterator[pb.BuildInput]:
    yield pb.BuildInput(options=options)
    for chunk in chunks:
        yield pb.BuildInput(context=chunk)


def cmd_build(client: Client, args: argparse.Namespace) -> int:
    if args.progress not in ("auto", "plain", "tty", "rawjson", "quiet"):
        raise CliError(f"invalid --progress {args.progress!r}: use auto, plain or tty", 1)
    options, chunks = _prepare(args)
    quiet = args.quiet or args.progress == "quiet"
    image_id = ""
    error = ""
    for reply in client.engine.Build(_requests(options, chunks)):
        if reply.stream and not quiet:
            sys.stdout.write(reply.stream)
            sys.stdout.flush()
        if reply.error:
            error = reply.error
        if reply.image_id:
            image_id = reply.image_id
    if error:
        print(error, file=sys.stderr)
        return 1
    if quiet:
        print(image_id)
    if args.iidfile:
        Path(args.iidfile).write_text(image_id)
    return 0


def cmd_builder_prune(client: Client, args: argparse.Namespace) -> int:
    if not args.force and not confirmed(
        "WARNING! This will remove all dangling build cache.\n"
        "Are you sure you want to continue? [y/N] "
    ):
        return 0
    reply = client.engine.PruneBuildCache(pb.PruneBuildCacheRequest())
    if reply.deleted:
        print("Deleted build cache objects:")
        for item in reply.deleted:
            print(item.removeprefix("sha256:")[:25])
        print()
    print(f"Total reclaimed space: {human_size(reply.space_reclaimed)}")
    return 0


def register(sub: argparse._SubParsersAction, image_group: argparse._SubParsersAction) -> None:
    def add_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("context", help="directory, tarball, or - (stdin)")
        p.add_argument("-t", "--tag", action="append")
        p.add_argument("-f", "--file")
        p.add_argument("--build-arg", action="append")
        p.add_argument("--target")
        p.add_argument("--no-cache", action="store_true")
        p.add_argument("--pull", action="store_true")
        p.add_argument("--label", action="append")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("--iidfile")
        p.add_argument("--platform")
        p.add_argument("--network", choices=["default", "none", "host", "bridge"])
        p.add_argument("--progress", default="auto")
        p.set_defaults(func=cmd_build)

    add_build(sub.add_parser("build", help="build an image from a Dockerfile"))
    add_build(image_group.add_parser("build", help="build an image from a Dockerfile"))
    builder = sub.add_parser("builder", help="manage the build cache")
    builder_sub = builder.add_subparsers(dest="builder_command", metavar="COMMAND", required=True)
    prune = builder_sub.add_parser("prune", help="remove the build cache")
    prune.add_argument("-f", "--force", action="store_true")
    prune.add_argument("-a", "--all", action="store_true")
    prune.set_defaults(func=cmd_builder_prune)

"""`runtimectl cp`: files between a container and the local machine, as tar streams.

The daemon speaks tar in both directions; this side decides names the way
docker cp does (copy into an existing directory, or to a new name; `SRC/.`
copies a directory's contents) and extracts locally without trusting the
archive: no entry may land outside the destination or be written through a
symlink, and device nodes are skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import posixpath
import queue
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtimed.cli.client import Client, CliError, describe_rpc_error
from runtimed.cli.format import human_size
from runtimed.cli.rpc import RpcError, StatusCode
from runtimed.gen.runtimed.v1 import engine_pb2 as pb

if TYPE_CHECKING:
    import tarfile  # imported where used: every runtimectl command loads this module

CHUNK = 1 << 20
_GO_MODE_DIR = 1 << 31  # os.ModeDir in Go's FileMode, what docker's stat header carries
_GO_MODE_SYMLINK = 1 << 27


def split_cp_arg(arg: str) -> tuple[str | None, str]:
    """`CTR:PATH` -> (CTR, PATH); absolute or ./-relative paths are always local."""
    if arg.startswith("/"):
        return None, arg
    ctr, sep, path = arg.partition(":")
    if not sep or ctr.startswith("."):
        return None, arg
    return ctr, path


def _container_path(path: str) -> str:
    # Relative paths in a container are relative to its root, as docker resolves them.
    return path if path.startswith("/") else "/" + path


def _contents_only(path: str) -> bool:
    return path.endswith("/.") or path == "."


def _top_name(path: str) -> str:
    return posixpath.basename(posixpath.normpath(path.rstrip("/") or "/")) or "/"


# --- from the container -------------------------------------------------------------------------


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (what tarfile's stream mode wants)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = chunk
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        self.total += n
        return n


def _rebase(name: str, top: str) -> str | None:
    """An entry's path below the archive's top entry ("" for the top); None if outside it."""
    norm = posixpath.normpath(name.lstrip("/")) if name.strip("/") else "."
    if top == ".":
        rel = "" if norm == "." else norm
    elif norm == top:
        rel = ""
    elif norm.startswith(top + "/"):
        rel = norm[len(top) + 1 :]
    else:
        return None
    if rel == ".." or rel.startswith("../") or rel.startswith("/"):
        return None
    return rel


class SafeExtractor:
    """Writes tar members under `root` with names rebased onto `target` (inside root)."""

    def __init__(self, root: Path, preserve_owner: bool) -> None:
        self.root = root
        self.preserve_owner = preserve_owner
        self.dir_attrs: list[tuple[Path, tarfile.TarInfo]] = []

    def _check_parents(self, path: Path) -> None:
        """No component between root and path may be a symlink (or the write escapes)."""
        current = self.root
        for part in path.relative_to(self.root).parts[:-1]:
            current = current / part
            if current.is_symlink():
                raise CliError(f"refusing to write {path}: {current} is a symbolic link")

    def _clear(self, path: Path, member: tarfile.TarInfo) -> None:
        if not os.path.lexists(path):
            return
        if path.is_dir() and not path.is_symlink():
            if member.isdir():
                return
            raise CliError(f"cannot overwrite directory {path} with non-directory")
        path.unlink()

    def extract(self, tf: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
        self._check_parents(path)
        # Archives may omit directory entries; the parents were just checked for symlinks.
        path.parent.mkdir(parents=True, exist_ok=True)
        self._clear(path, member)
        mode = member.mode & (0o7777 if self.preserve_owner else 0o1777)
        if member.isdir():
            path.mkdir(mode=0o700, exist_ok=True)
            self.dir_attrs.append((path, member))
            return
        if member.isreg():
            source = tf.extractfile(member)
            assert source is not None
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(path, flags, 0o600)
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
                os.fchmod(out.fileno(), mode)
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            raise AssertionError("hard links are resolved by the caller")
        elif member.isfifo():
            os.mkfifo(path, mode)
        else:
            print(f"skipping device or special file {member.name}", file=sys.stderr)
            return
        self._finish(path, member)

    def link(self, member: tarfile.TarInfo, path: Path, target: Path) -> None:
        self._check_parents(path)
        self._check_parents(target)
        self._clear(path, member)
        os.link(target, path, follow_symlinks=False)

    def _finish(self, path: Path, member: tarfile.TarInfo) -> None:
        if self.preserve_owner and os.geteuid() == 0:
            os.lchown(path, member.uid, member.gid)
        if not member.issym():
            os.utime(path, (member.mtime, member.mtime))

    def close(self) -> None:
        # Directory modes and times last: a read-only directory must not block its contents.
        for path, member in reversed(self.dir_attrs):
            if self.preserve_owner and os.geteuid() == 0:
                os.lchown(path, member.uid, member.gid)
            os.chmod(path, member.mode & 0o7777 if self.preserve_owner else member.mode & 0o1777)
            os.utime(path, (member.mtime, member.mtime))


def _local_target(src: str, dest: str, src_is_dir: bool) -> tuple[Path, bool]:
    """Where the archive's top entry goes, and whether only a directory's contents are copied."""
    dest_path = Path(dest)
    if dest_path.is_dir():
        if src_is_dir and _contents_only(src):
            return dest_path, True
        return dest_path / _top_name(src), False
    if dest_path.exists():
        if src_is_dir:
            raise CliError(f"cannot copy a directory to a file: {dest}")
        return dest_path, False
    if dest.endswith("/") and not src_is_dir:
        raise CliError(f"destination directory {dest} does not exist")
    if not dest_path.parent.is_dir():
        raise CliError(f"cannot copy to {dest}: {dest_path.parent}: no such directory")
    return dest_path, False


def extract_archive(
    fileobj: Any,
    choose: Callable[[bool], tuple[Path, bool]],
    *,
    preserve_owner: bool = False,
) -> None:
    """Extract a tar stream whose entries share one top entry.

    `choose(top_is_dir)` says where the top entry goes and whether only its contents
    are copied. An archive without an entry for its top directory still counts as one.
    """
    import tarfile

    with tarfile.open(fileobj=fileobj, mode="r|") as tf:
        extractor: SafeExtractor | None = None
        top = ""
        target = Path()
        contents = False
        for member in tf:
            if extractor is None:
                first = posixpath.normpath(member.name.lstrip("/") or ".")
                top = first.split("/")[0]
                target, contents = choose(member.isdir() or first != top)
                root = target if contents else target.parent
                extractor = SafeExtractor(root.resolve(), preserve_owner)
                target = root.resolve() if contents else root.resolve() / target.name
            rel = _rebase(member.name, top)
            if rel is None:
                raise CliError(f"refusing archive entry {member.name!r}: outside the copied path")
            if rel == "" and contents:
                continue  # the destination directory is already there
            path = target / rel if rel else target
            if member.islnk():
                link_rel = _rebase(member.linkname, top)
                if link_rel is None:
                    raise CliError(f"refusing hard link {member.name!r} to {member.linkname!r}")
                extractor.link(member, path, target / link_rel if link_rel else target)
            else:
                extractor.extract(tf, member, path)
        if extractor is not None:
            extractor.close()


def copy_from_container(
    client: Client, ctr: str, src: str, dest: str, *, archive: bool, quiet: bool
) -> int:
    stream = client.engine.CopyFromContainer(
        pb.CopyFromContainerRequest(id=ctr, path=_container_path(src))
    )

    def data() -> Iterator[bytes]:
        for chunk in stream:
            if chunk.data:
                yield chunk.data

    reader = ChunkReader(data())
    try:
        if dest == "-":
            out = sys.stdout.buffer
            while chunk := reader.read(CHUNK):
                out.write(chunk)
            out.flush()
            return 0

        def choose(is_dir: bool) -> tuple[Path, bool]:
            if not is_dir and (src.endswith("/") or _contents_only(src)):
                raise CliError(f"cannot copy {ctr}:{src}: not a directory")
            return _local_target(src, dest, is_dir)

        import tarfile

        try:
            extract_archive(reader, choose, preserve_owner=archive)
        except (OSError, tarfile.TarError) as exc:
            raise CliError(f"cannot copy {ctr}:{src} to {dest}: {exc}") from None
    finally:
        stream.cancel()
    if not quiet:
        print(f"Successfully copied {human_size(reader.total)} to {dest}", file=sys.stderr)
    return 0


# --- to the container -------------------------------------------------------------------------


def stat_container_path(client: Client, ctr: str, path: str) -> dict[str, Any] | None:
    """The stat header of CopyFromContainer, without reading the archive; None if missing."""
    stream = client.engine.CopyFromContainer(pb.CopyFromContainerRequest(id=ctr, path=path))
    try:
        first = next(iter(stream), None)
    except RpcError as exc:
        if exc.code() == StatusCode.NOT_FOUND:
            return None
        raise
    finally:
        stream.cancel()
    if first is None or not first.stat_json:
        return None
    doc: dict[str, Any] = json.loads(first.stat_json)
    return doc


def stat_is_dir(doc: dict[str, Any]) -> bool:
    """Directory bit of docker's stat header (Go FileMode); a POSIX st_mode is accepted too."""
    for key in ("isDir", "is_dir"):
        if key in doc:
            return bool(doc[key])
    mode = int(doc.get("mode", 0))
    if mode & _GO_MODE_DIR:
        return True
    return not mode & _GO_MODE_SYMLINK and stat.S_ISDIR(mode)


class _QueueWriter(io.RawIOBase):
    """tarfile writes here; a bounded queue keeps memory flat while gRPC sends."""

    def __init__(self, chunks: queue.Queue[bytes | None], cancelled: threading.Event) -> None:
        self.chunks = chunks
        self.cancelled = cancelled
        self.total = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        block = bytes(data)
        while True:
            if self.cancelled.is_set():
                raise BrokenPipeError("copy cancelled")
            with contextlib.suppress(queue.Full):
                self.chunks.put(block, timeout=0.2)
                break
        self.total += len(block)
        return len(block)


def _tar_filter(archive: bool) -> Callable[[tarfile.TarInfo], tarfile.TarInfo | None]:
    def adjust(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if not archive:
            # docker cp: files arrive owned by the container's root unless -a.
            info.uid = info.gid = 0
            info.uname = info.gname = ""
        return info

    return adjust


def build_tar(
    writer: Any, src: str, arcname: str, *, contents_only: bool, archive: bool, follow: bool
) -> None:
    import tarfile

    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tf:
        tf.dereference = False
        source = os.path.realpath(src) if follow else src
        if contents_only:
            for child in sorted(os.listdir(source)):
                tf.add(os.path.join(source, child), arcname=child, filter=_tar_filter(archive))
        else:
            tf.add(source, arcname=arcname, filter=_tar_filter(archive))


def _container_target(
    client: Client, ctr: str, src: str, dst: str, src_is_dir: bool
) -> tuple[str, str, bool]:
    """(directory to unpack into, name of the top entry, copy only the contents)."""
    info = stat_container_path(client, ctr, dst)
    if info is not None and stat_is_dir(info):
        if src_is_dir and _contents_only(src):
            return dst, "", True
        return dst, _top_name(src), False
    if info is not None:
        if src_is_dir:
            raise CliError(f"cannot copy a directory to a file: {ctr}:{dst}")
        return posixpath.dirname(dst.rstrip("/")) or "/", posixpath.basename(dst), False
    if dst.endswith("/") and not src_is_dir:
        raise CliError(f"destination directory {ctr}:{dst} does not exist")
    parent = posixpath.dirname(dst.rstrip("/")) or "/"
    return parent, posixpath.basename(dst.rstrip("/")), False


class _SourceFailed(Exception):
    """The local tree could not be read while it was being sent."""


def _read_error(src: str, exc: BaseException) -> CliError:
    """Docker's wording (`open PATH: permission denied`), for the file that failed."""
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else src
        return CliError(f"open {where}: {exc.strerror[:1].lower()}{exc.strerror[1:]}")
    return CliError(f"cannot read {src}: {exc}")


def _check_readable(src: str, st: os.stat_result) -> None:
    """Fail before anything is sent when the source itself cannot be read."""
    try:
        if stat.S_ISDIR(st.st_mode):
            os.listdir(src)
        elif stat.S_ISREG(st.st_mode):  # not a fifo: opening one would wait for a writer
            os.close(os.open(src, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as exc:
        raise _read_error(src, exc) from None


def copy_to_container(
    client: Client, src: str, ctr: str, dst: str, *, archive: bool, follow: bool, quiet: bool
) -> int:
    dst = _container_path(dst)
    if src == "-":
        info = stat_container_path(client, ctr, dst)
        if info is None or not stat_is_dir(info):
            raise CliError(f"destination {ctr}:{dst} must be a directory")
        stdin = sys.stdin.buffer

        def from_stdin() -> Iterator[pb.CopyToContainerChunk]:
            yield pb.CopyToContainerChunk(options=pb.CopyToContainerOptions(id=ctr, path=dst))
            while block := stdin.read(CHUNK):
                yield pb.CopyToContainerChunk(data=block)

        client.engine.CopyToContainer(from_stdin())
        return 0
    try:
        st = os.stat(src) if follow else os.lstat(src)
    except OSError as exc:
        raise CliError(f"could not stat {src}: {exc.strerror}") from None
    src_is_dir = stat.S_ISDIR(st.st_mode)
    if not src_is_dir and (src.endswith("/") or _contents_only(src)):
        raise CliError(f"cannot copy {src}: not a directory")
    _check_readable(src, st)
    into, arcname, contents = _container_target(client, ctr, src, dst, src_is_dir)
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
    cancelled = threading.Event()
    writer = _QueueWriter(chunks, cancelled)
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            build_tar(writer, src, arcname, contents_only=contents, archive=archive, follow=follow)
        except BaseException as exc:  # noqa: BLE001 - reported on the main thread
            failure.append(exc)
        finally:
            with contextlib.suppress(queue.Full):
                chunks.put(None, timeout=5)

    def requests() -> Iterator[pb.CopyToContainerChunk]:
        yield pb.CopyToContainerChunk(options=pb.CopyToContainerOptions(id=ctr, path=into))
        while (block := chunks.get()) is not None:
            yield pb.CopyToContainerChunk(data=block)
        if failure:
            # Cancels the call: the daemon drops the partial archive, nothing is written.
            raise _SourceFailed

    producer = threading.Thread(target=produce, name="cp-tar", daemon=True)
    producer.start()
    try:
        client.engine.CopyToContainer(requests())
    except _SourceFailed:
        pass
    finally:
        cancelled.set()
        producer.join(timeout=5)
    if failure and not isinstance(failure[0], BrokenPipeError):
        raise _read_error(src, failure[0])
    if not quiet:
        print(f"Successfully copied {human_size(writer.total)} to {ctr}:{dst}", file=sys.stderr)
    return 0


def cmd_cp(client: Client, args: argparse.Namespace) -> int:
    src_ctr, src = split_cp_arg(args.source)
    dst_ctr, dst = split_cp_arg(args.destination)
    if src_ctr and dst_ctr:
        raise CliError("copying between containers is not supported")
    if not src_ctr and not dst_ctr:
        raise CliError("must specify at least one container source")
    if not src or not dst:
        raise CliError("path can not be empty")
    try:
        if src_ctr:
            return copy_from_container(
                client, src_ctr, src, dst, archive=args.archive, quiet=args.quiet
            )
        assert dst_ctr is not None
        return copy_to_container(
            client,
            src,
            dst_ctr,
            dst,
            archive=args.archive,
            follow=args.follow_link,
            quiet=args.quiet,
        )
    except RpcError as exc:
        if exc.code() == StatusCode.CANCELLED:
            raise
        raise CliError(describe_rpc_error(exc, client.socket).message) from None


def register(sub: argparse._SubParsersAction, group: argparse._SubParsersAction) -> None:
    for parent in (sub, group):
        p = parent.add_parser(
            "cp",
            help="copy files between a container and the local filesystem",
            description="runtimectl cp CONTAINER:SRC DEST | SRC CONTAINER:DEST  (- for a tar "
            "stream on stdin/stdout)",
        )
        p.add_argument("source")
        p.add_argument("destination")
        p.add_argument("-a", "--archive", action="store_true", help="keep uid/gid")
        p.add_argument("-L", "--follow-link", action="store_true", help="follow a SRC symlink")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress/summary")
        p.set_defaults(func=cmd_cp)

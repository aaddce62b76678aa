"""Streaming, hostile-input-safe extraction of one image layer.

A layer blob (gzip, zstd or plain tar, detected by magic bytes) is read once:
decompressed in chunks, hashed for its diff_id and written out as it goes, so a
multi-GB layer never sits in memory. The result is an overlayfs upper
directory (see runtimed.snapshots.whiteout): OCI `.wh.NAME` entries become 0:0
character devices and `.wh..wh..opq` becomes opaque xattrs.

Safety does not rest on name checks alone: every write goes through directory
fds opened one component at a time with O_NOFOLLOW, and every final create uses
*at() calls that do not follow symlinks, so no entry can land outside `dest`
whatever links earlier entries planted. tarfile only parses headers here; it
never writes.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import structlog
import zstandard

from runtimed.errors import DataLoss, FailedPrecondition, InvalidArgument
from runtimed.images.tarsplit import FramingRecorder
from runtimed.snapshots import whiteout

log = structlog.get_logger(__name__)

_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_XATTR_PAX_PREFIX = "SCHILY.xattr."
# Failing to set these is expected without real root and not worth a failed pull.
_BEST_EFFORT_XATTRS = ("security.", "trusted.")

Parts = tuple[str, ...]


@dataclass
class UnpackResult:
    diff_id: str  # "sha256:<hex>" of the uncompressed tar stream
    size: int  # bytes of regular-file content written
    skipped: list[str] = field(default_factory=list)
    tar_size: int = 0  # bytes of the uncompressed tar stream


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _HashingReader:
    """Hashes every uncompressed byte tarfile pulls, so diff_id costs no second pass."""

    def __init__(self, inner: _Readable, framing: FramingRecorder | None = None) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()
        self._framing = framing
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._hash.update(data)
        self.count += len(data)
        if self._framing is not None:
            self._framing.feed(data)
        return data

    def finish(self) -> str:
        # tarfile stops at the end-of-archive blocks; the padding after them
        # is part of the diff_id too.
        while self.read(_CHUNK):
            pass
        return "sha256:" + self._hash.hexdigest()


def _decompressed(raw: IO[bytes]) -> tuple[str, _Readable]:
    magic = raw.read(4)
    raw.seek(0)
    if magic.startswith(_GZIP_MAGIC):
        return "gzip", gzip.GzipFile(fileobj=raw, mode="rb")
    if magic == _ZSTD_MAGIC:
        dctx = zstandard.ZstdDecompressor()
        return "zstd", dctx.stream_reader(raw, read_across_frames=True, closefd=False)
    return "tar", raw


def _unsafe(entry: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"layer is unsafe: entry {entry!r} {why}; nothing was kept")


def _clean(name: str, what: str, entry: str) -> Parts:
    """Lexically normalise a tar path; refuse absolute paths and escapes above the root."""
    if name.startswith("/"):
        raise _unsafe(entry, f"has an absolute {what} {name!r}")
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise _unsafe(entry, f"has a {what} {name!r} that climbs out of the layer")
            parts.pop()
        else:
            parts.append(comp)
    return tuple(parts)


def _symlink_escapes(link: Parts, target: str) -> bool:
    """Would a relative symlink at `link`, resolved lexically, climb above the root?"""
    depth = len(link) - 1  # components of the directory holding the link
    for comp in target.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            depth -= 1
            if depth < 0:
                return True
        else:
            depth += 1
    return False


def _mtime_ns(member: tarfile.TarInfo) -> int:
    return round(float(member.mtime) * 1_000_000_000)


def _join(parts: Parts) -> str:
    return "/".join(parts) or "."


class _Unpacker:
    def __init__(self, root_fd: int, preserve_owner: bool) -> None:
        self.root_fd = root_fd
        self.preserve_owner = preserve_owner
        self.size = 0
        self.skipped: list[str] = []
        # Non-directories this layer wrote: the only valid hardlink targets.
        self.written: set[Parts] = set()
        # Directory metadata applied at the end, when no child will touch mtimes.
        self.dirs: dict[Parts, tarfile.TarInfo] = {}
        # Most entries share the previous entry's parent; reuse its fd.
        self._cached: tuple[Parts, int] | None = None

    # -- walking -------------------------------------------------------------

    def _drop_cache(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def close(self) -> None:
        self._drop_cache()

    def _walk(self, dirs: Parts, entry: str, *, create: bool) -> int | None:
        """A new fd for directory `dirs`, opened without following any symlink.

        Missing directories are created (0755) when `create`; otherwise None
        is returned for a path that does not lead to a directory.
        """
        if self._cached is not None and self._cached[0] == dirs:
            return os.dup(self._cached[1])
        fd = os.dup(self.root_fd)
        try:
            for i, comp in enumerate(dirs):
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    if not create:
                        os.close(fd)
                        return None
                    where = _join(dirs[: i + 1])
                    if stat.S_ISLNK(os.stat(comp, dir_fd=fd, follow_symlinks=False).st_mode):
                        raise _unsafe(
                            entry, f"would be written through the symlink {where!r}"
                        ) from None
                    raise InvalidArgument(
                        f"layer is invalid: entry {entry!r} needs {where!r} to be a "
                        "directory but the layer made it something else"
                    ) from None
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        if create:
            self._drop_cache()
            self._cached = (dirs, os.dup(fd))
        return fd

    def _clear(self, parts: Parts, parent: int, *, keep_dir: bool = False) -> bool:
        """Remove what is at `parts` (later entries replace earlier ones).

        Returns True when an existing directory was kept.
        """
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        self.written.discard(parts)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent)
            return False
        if keep_dir:
            return True
        # Cached fds may point into the tree being removed.
        self._drop_cache()
        n = len(parts)
        self.dirs = {k: v for k, v in self.dirs.items() if k[:n] != parts}
        shutil.rmtree(name, dir_fd=parent)
        return False

    # -- metadata ------------------------------------------------------------

    def _chown(
        self,
        member: tarfile.TarInfo,
        entry: str,
        fd: int | None = None,
        name: str | None = None,
        parent: int | None = None,
    ) -> None:
        if not self.preserve_owner:
            return
        try:
            if fd is not None:
                os.fchown(fd, member.uid, member.gid)
            else:
                assert name is not None
                os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        except OSError as exc:
            ids = f"{member.uid}:{member.gid}"
            if exc.errno == errno.EINVAL:
                raise FailedPrecondition(
                    f"layer entry {entry!r} is owned by {ids}, which is not mapped in the "
                    "daemon's user namespace: your /etc/subuid and /etc/subgid range is too "
                    "small; give your user at least 65536 subordinate ids (e.g. usermod "
                    "--add-subuids 200000-265535 --add-subgids 200000-265535 USER) and "
                    "restart the daemon"
                ) from None
            if exc.errno == errno.EPERM:
                raise FailedPrecondition(
                    f"cannot give layer entry {entry!r} its owner {ids}: unpacking with "
                    "owners needs root, i.e. the daemon's user namespace"
                ) from None
            raise

    def _set_xattrs(self, member: tarfile.TarInfo, entry: str, fd: int | None) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(_XATTR_PAX_PREFIX):
                continue
            name = key[len(_XATTR_PAX_PREFIX) :]
            if whiteout.is_reserved_xattr(name):
                # Would let a layer forge whiteouts, redirects or owners.
                log.warning("layer_xattr_refused", entry=entry, xattr=name)
                continue
            if fd is None:
                log.warning("layer_xattr_skipped", entry=entry, xattr=name, reason="not a file")
                continue
            try:
                os.setxattr(fd, name, value.encode("utf-8", "surrogateescape"))
            except OSError as exc:
                if name.startswith(_BEST_EFFORT_XATTRS):
                    log.warning("layer_xattr_skipped", entry=entry, xattr=name, reason=exc.strerror)
                    continue
                raise InvalidArgument(
                    f"layer entry {entry!r} carries xattr {name!r} that cannot be set: "
                    f"{exc.strerror}"
                ) from None

    # -- entries -------------------------------------------------------------

    def add(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        entry = member.name
        parts = _clean(member.name, "path", entry)
        if member.ischr() or member.isblk():
            # Rootless cannot create devices and a layer has no business
            # shipping them; the runtime provides /dev.
            kind = "character" if member.ischr() else "block"
            what = f"{entry} ({kind} device {member.devmajor}:{member.devminor})"
            log.warning("layer_device_skipped", entry=entry, kind=kind)
            self.skipped.append(what)
            return
        if not parts:
            if not member.isdir():
                raise InvalidArgument(f"layer is invalid: entry {entry!r} names the root")
            self._chown(member, entry, fd=self.root_fd)
            self._set_xattrs(member, entry, self.root_fd)
            self.dirs[()] = member
            return
        try:
            parent = self._walk(parts[:-1], entry, create=True)
            assert parent is not None
            try:
                self._add_at(tf, member, entry, parts, parent)
            finally:
                os.close(parent)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise InvalidArgument(f"layer is invalid: entry {entry!r} is too long") from None
            raise

    def _add_at(
        self, tf: tarfile.TarFile, member: tarfile.TarInfo, entry: str, parts: Parts, parent: int
    ) -> None:
        name = parts[-1]
        if name.startswith(whiteout.OCI_WHITEOUT_PREFIX):
            self._whiteout(entry, parts, parent)
        elif member.isdir():
            if not self._clear(parts, parent, keep_dir=True):
                os.mkdir(name, 0o700, dir_fd=parent)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            try:
                self._chown(member, entry, fd=fd)
                self._set_xattrs(member, entry, fd)
            finally:
                os.close(fd)
            self.dirs[parts] = member
        elif member.isreg():
            self._clear(parts, parent)
            self._regular(tf, member, entry, name, parent)
            self.written.add(parts)
        elif member.issym():
            target = member.linkname
            if not target:
                raise InvalidArgument(f"layer is invalid: symlink {entry!r} has no target")
            if not target.startswith("/") and _symlink_escapes(parts, target):
                raise _unsafe(entry, f"is a symlink to {target!r}, which climbs out of the layer")
            self._clear(parts, parent)
            os.symlink(target, name, dir_fd=parent)
            self._chown(member, entry, name=name, parent=parent)
            self._set_xattrs(member, entry, None)
            ns = _mtime_ns(member)
            os.utime(name, ns=(ns, ns), dir_fd=parent, follow_symlinks=False)
            self.written.add(parts)
        elif member.islnk():
            self._hardlink(member, entry, parts, parent)
        elif member.isfifo():
            self._clear(parts, parent)
            os.mkfifo(name, 0o600, dir_fd=parent)
            self._chown(member, entry, name=name, parent=parent)
            # We just made it, so nothing can have swapped in a symlink.
            os.chmod(name, member.mode & 0o7777, dir_fd=parent)
            self._set_xattrs(member, entry, None)
            ns = _mtime_ns(member)
            os.utime(name, ns=(ns, ns), dir_fd=parent)
            self.written.add(parts)
        else:
            raise InvalidArgument(
                f"layer is invalid: entry {entry!r} has unsupported tar type {member.type!r}"
            )

    def _regular(
        self, tf: tarfile.TarFile, member: tarfile.TarInfo, entry: str, name: str, parent: int
    ) -> None:
        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            src = tf.extractfile(member)
            assert src is not None
            with os.fdopen(fd, "wb", closefd=False) as out:
                shutil.copyfileobj(src, out, _CHUNK)
            self.size += member.size
            self._chown(member, entry, fd=fd)
            # chmod after chown: chown clears setuid/setgid.
            os.fchmod(fd, member.mode & 0o7777)
            self._set_xattrs(member, entry, fd)
            ns = _mtime_ns(member)
            os.utime(fd, ns=(ns, ns))
        finally:
            os.close(fd)

    def _hardlink(self, member: tarfile.TarInfo, entry: str, parts: Parts, parent: int) -> None:
        target = _clean(member.linkname, "hardlink target", entry)
        if target == parts:
            return  # a link to itself changes nothing
        missing = _unsafe(
            entry, f"is a hardlink to {member.linkname!r}, which does not exist in the layer"
        )
        if not target or target not in self.written:
            raise missing
        tparent = self._walk(target[:-1], entry, create=False)
        if tparent is None:
            raise missing
        try:
            self._clear(parts, parent)
            try:
                os.link(
                    target[-1],
                    parts[-1],
                    src_dir_fd=tparent,
                    dst_dir_fd=parent,
                    follow_symlinks=False,
                )
            except FileNotFoundError:
                raise missing from None
        finally:
            os.close(tparent)
        self.written.add(parts)

    def _whiteout(self, entry: str, parts: Parts, parent: int) -> None:
        name = parts[-1]
        if name == whiteout.OCI_OPAQUE_MARKER:
            try:
                whiteout.mark_opaque(parent)
            except OSError as exc:
                raise FailedPrecondition(
                    f"cannot mark {_join(parts[:-1])!r} opaque for layer entry {entry!r}: "
                    f"{exc.strerror}; the layer store needs a filesystem with user xattrs "
                    "(ext4, xfs, btrfs, tmpfs)"
                ) from None
            return
        hidden = name[len(whiteout.OCI_WHITEOUT_PREFIX) :]
        if hidden in ("", ".", "..") or hidden.startswith(whiteout.OCI_WHITEOUT_PREFIX):
            # e.g. aufs's .wh..wh.plnk bookkeeping: meaningless in an OCI layer.
            log.warning("layer_whiteout_ignored", entry=entry)
            return
        self._clear((*parts[:-1], hidden), parent)
        try:
            whiteout.make_whiteout(hidden, parent)
        except PermissionError:
            raise FailedPrecondition(
                f"cannot create the whiteout for layer entry {entry!r}: making a 0:0 "
                "character device needs Linux 5.8+ or root in the daemon's user namespace"
            ) from None

    def finish(self) -> None:
        """Apply directory modes and mtimes, deepest first, after all children exist."""
        self._drop_cache()
        for parts, member in sorted(self.dirs.items(), key=lambda kv: len(kv[0]), reverse=True):
            fd = self._walk(parts, _join(parts), create=False)
            if fd is None:
                continue  # replaced by a non-directory later in the layer
            try:
                os.fchmod(fd, member.mode & 0o7777)
                ns = _mtime_ns(member)
                os.utime(fd, ns=(ns, ns))
            finally:
                os.close(fd)


def _wipe(root_fd: int) -> None:
    for name in os.listdir(root_fd):
        if stat.S_ISDIR(os.stat(name, dir_fd=root_fd, follow_symlinks=False).st_mode):
            shutil.rmtree(name, dir_fd=root_fd)
        else:
            os.unlink(name, dir_fd=root_fd)
    for attr in whiteout.OPAQUE_XATTRS:
        with contextlib.suppress(OSError):
            os.removexattr(root_fd, attr)


_CORRUPT = (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError)


def unpack_layer(
    blob: Path | IO[bytes],
    dest: Path,
    *,
    expected_diff_id: str | None = None,
    preserve_owner: bool = True,
    framing: Path | None = None,
) -> UnpackResult:
    """Unpack layer `blob` (a file, or a seekable binary stream) into the empty directory
    `dest` as an overlay upper dir; with `framing`, also record there how to rebuild the
    tar stream (runtimed.images.tarsplit).

    On any failure everything written under `dest` is removed and the error
    re-raised: InvalidArgument for a hostile or malformed layer, DataLoss for a
    diff_id mismatch, FailedPrecondition for what this host cannot do.
    """
    root_fd = os.open(dest, _DIR_FLAGS)
    unpacker = _Unpacker(root_fd, preserve_owner)
    recorder = FramingRecorder(framing) if framing is not None else None
    kind = "tar"
    name = blob.name if isinstance(blob, Path) else str(getattr(blob, "name", "stream"))
    try:
        with open(blob, "rb") if isinstance(blob, Path) else contextlib.nullcontext(blob) as raw:
            kind, stream = _decompressed(raw)
            reader = _HashingReader(stream, recorder)
            # Big reads: tarfile's default 10 KiB would mean a Python call per 10 KiB.
            with tarfile.open(fileobj=reader, mode="r|", bufsize=_CHUNK) as tf:
                for member in tf:
                    if recorder is not None:
                        recorder.member(member)
                    unpacker.add(tf, member)
            diff_id = reader.finish()
        if expected_diff_id is not None and diff_id != expected_diff_id:
            raise DataLoss(
                f"layer {name} unpacked to diff_id {diff_id} but the image config "
                f"expects {expected_diff_id}: the layer is corrupt or does not belong to "
                "this image"
            )
        unpacker.finish()
        if recorder is not None:
            recorder.finish()
            if recorder.unusable:
                log.warning("layer_framing_dropped", blob=name, reason=recorder.unusable)
    except BaseException as exc:
        unpacker.close()
        if recorder is not None:
            recorder.close()
            with contextlib.suppress(FileNotFoundError):
                recorder.path.unlink()
        _wipe(root_fd)
        if isinstance(exc, _CORRUPT):
            raise InvalidArgument(
                f"layer {name} is not a valid {kind}-compressed tar stream: {exc}"
                if kind != "tar"
                else f"layer {name} is not a valid tar stream: {exc}"
            ) from exc
        raise
    finally:
        os.close(root_fd)
    log.info(
        "layer_unpacked",
        blob=name,
        diff_id=diff_id,
        size=unpacker.size,
        skipped=len(unpacker.skipped),
        compression=kind,
    )
    return UnpackResult(
        diff_id=diff_id, size=unpacker.size, skipped=unpacker.skipped, tar_size=reader.count
    )

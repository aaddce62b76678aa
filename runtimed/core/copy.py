"""docker cp: tar streams in and out of a container's filesystem, never escaping its root.

Paths are resolved inside the container's root the way the container would
resolve them: every symlink is followed with the root as `/`, and `..` stops
at the root. A running container is reached through /proc/PID/root (so its
mounts are visible); a stopped one through its snapshot.

A running container's processes may rename and swap names while a copy works
(CVE-2018-15664), so nothing here uses a host path below the root by name:
runtimed.core.inroot resolves each path to an fd (openat2 RESOLVE_IN_ROOT,
or an O_NOFOLLOW walk), and copyout/copyin work from fds and *at() calls.
As Docker does, the container is also paused for the copy when it can be
frozen (core/freeze.py); without a cgroup freezer (no delegated cgroup) the
copy goes on unpaused, safe by the fds alone.
"""

from __future__ import annotations

import asyncio
import errno
import os
import posixpath
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import structlog

from runtimed.core import copyin, copyout
from runtimed.core.freeze import paused
from runtimed.core.inroot import MAX_LINKS, closing, open_in_root, open_root
from runtimed.core.model import Container
from runtimed.errors import FailedPrecondition, InvalidArgument, NotFound

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService

log = structlog.get_logger(__name__)

CHUNK = 256 * 1024


def resolve_in_root(root: Path, path: str, *, follow_last: bool = True) -> Path:
    """The host path for `path` as seen inside `root`; symlinks clamped to the root.

    By name, so only for a tree no process changes meanwhile (an image's files at
    create); a running container's tree goes through runtimed.core.inroot.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        is_last = not parts
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode) and (follow_last or not is_last):
            hops += 1
            if hops > MAX_LINKS:
                raise InvalidArgument(f"too many levels of symbolic links in {path!r}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


async def _root_of(service: ContainerService, container: Container) -> Path:
    if container.running and container.state.pid:
        return Path(f"/proc/{container.state.pid}/root")
    return await asyncio.to_thread(
        service.snapshotter.mount, container.id, service._lowers(container.config.image_id)
    )


def _open_root(root: Path, container: Container) -> int:
    try:
        return open_root(root)
    except OSError as exc:
        # /proc/PID/root of a process that just ended; no host path in the message.
        raise FailedPrecondition(
            f"copy: container {container.name} stopped during the copy ({exc.strerror})"
        ) from None


def _follows_last(path: str) -> bool:
    # As docker: `LINK/` and `LINK/.` name what the link points to; `LINK` the link.
    return path.endswith(("/", "/.")) or path == "."


def _open_path(root: Path, path: str, container: Container) -> int:
    """An O_PATH fd for `path` inside the container's root."""
    flags = os.O_PATH if _follows_last(path) else os.O_PATH | os.O_NOFOLLOW
    with closing(_open_root(root, container)) as root_fd:
        try:
            return open_in_root(root_fd, path, flags)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(
                f"Could not find the file {path} in container {container.name}"
            ) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InvalidArgument(
                    f"copy: too many levels of symbolic links in {path!r}"
                ) from None
            raise


async def copy_from_container(
    service: ContainerService, container: Container, path: str
) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
    if not path:
        raise InvalidArgument("copy: a path inside the container is required")
    root = await _root_of(service, container)
    with closing(_open_path(root, path, container)) as fd:
        st = os.fstat(fd)
        link = os.readlink("", dir_fd=fd) if stat.S_ISLNK(st.st_mode) else ""
    name = posixpath.basename(path.rstrip("/")) or "."
    info = {
        "name": name,
        "size": st.st_size,
        "mode": st.st_mode,
        "mtime": int(st.st_mtime),
        "linkTarget": link,
    }

    async def chunks() -> AsyncIterator[bytes]:
        # Built only when the caller reads on: `cp LOCAL CTR:DIR` only wants the stat.
        # The path is resolved again here: the fd above is closed whether or not
        # the caller reads, and what it named may have changed since.
        async with paused(service, container, "copy"):
            spool = await asyncio.to_thread(_tar_to_spool, root, path, name, container)
        try:
            while data := await asyncio.to_thread(spool.read, CHUNK):
                yield data
        finally:
            spool.close()

    return info, chunks()


def _tar_to_spool(root: Path, path: str, arcname: str, container: Container) -> IO[bytes]:
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, closed there
    try:
        with closing(_open_path(root, path, container)) as fd:
            copyout.write_tree(fd, arcname, spool)
    except OSError as exc:
        spool.close()
        raise FailedPrecondition(
            f"copy: cannot read {path} in container {container.name}: {exc.strerror}"
        ) from None
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


async def copy_to_container(
    service: ContainerService, container: Container, path: str, data: AsyncIterator[bytes]
) -> None:
    root = await _root_of(service, container)
    with closing(_open_root(root, container)) as root_fd:
        try:
            os.close(open_in_root(root_fd, path, os.O_PATH | os.O_DIRECTORY))
        except OSError:
            raise NotFound(
                f"Could not find the directory {path} in container {container.name}"
            ) from None
    with tempfile.TemporaryFile() as spool:
        async for chunk in data:
            await asyncio.to_thread(spool.write, chunk)
        spool.seek(0)
        async with paused(service, container, "copy"):
            await asyncio.to_thread(_extract, spool, root, path, container)


def _extract(spool: IO[bytes], root: Path, base: str, container: Container) -> None:
    with closing(_open_root(root, container)) as root_fd:
        copyin.extract(spool, root_fd, base, container.name)

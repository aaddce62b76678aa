"""docker cp: tar streams in and out of a container's filesystem, never escaping its root.

Paths are resolved inside the container's root the way the container would
resolve them: every symlink is read and followed with the root as `/`, and
`..` stops at the root. A running container is reached through
/proc/PID/root (so its mounts are visible); a stopped one through its
snapshot.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import stat
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtimed.core.model import Container
from runtimed.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from runtimed.core.containers import ContainerService

CHUNK = 256 * 1024
MAX_LINKS = 40


def resolve_in_root(root: Path, path: str, *, follow_last: bool = True) -> Path:
    """The host path for `path` as seen inside `root`; symlinks clamped to the root."""
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


async def copy_from_container(
    service: ContainerService, container: Container, path: str
) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
    if not path:
        raise InvalidArgument("copy: a path inside the container is required")
    root = await _root_of(service, container)
    source = resolve_in_root(root, path, follow_last=False)
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        raise NotFound(f"Could not find the file {path} in container {container.name}") from None
    name = posixpath.basename(path.rstrip("/")) or "."
    info = {
        "name": name,
        "size": st.st_size,
        "mode": st.st_mode,
        "mtime": int(st.st_mtime),
        "linkTarget": os.readlink(source) if stat.S_ISLNK(st.st_mode) else "",
    }

    async def chunks() -> AsyncIterator[bytes]:
        # Built only when the caller reads on: `cp LOCAL CTR:DIR` only wants the stat.
        spool = await asyncio.to_thread(_tar_to_spool, source, name)
        try:
            while data := await asyncio.to_thread(spool.read, CHUNK):
                yield data
        finally:
            spool.close()

    return info, chunks()


def _tar_to_spool(source: Path, arcname: str):  # noqa: ANN202 - a temporary file object
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, closed there
    with tarfile.open(fileobj=spool, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        # Links inside the tree are stored as links, never followed.
        tar.add(source, arcname=arcname, recursive=True)
    spool.seek(0)
    return spool


async def copy_to_container(
    service: ContainerService, container: Container, path: str, data: AsyncIterator[bytes]
) -> None:
    root = await _root_of(service, container)
    dest = resolve_in_root(root, path)
    if not dest.is_dir():
        raise NotFound(f"Could not find the directory {path} in container {container.name}")
    with tempfile.TemporaryFile() as spool:
        async for chunk in data:
            await asyncio.to_thread(spool.write, chunk)
        spool.seek(0)
        await asyncio.to_thread(_extract, spool, root, path)


def _extract(spool: Any, root: Path, base: str) -> None:
    try:
        tar = tarfile.open(fileobj=spool, mode="r:*")  # noqa: SIM115 - closed by the with below
    except tarfile.TarError as exc:
        raise InvalidArgument(f"copy: not a valid tar archive: {exc}") from exc
    with tar:
        for member in tar:
            name = posixpath.normpath(member.name)
            if name.startswith(("/", "../")) or name == "..":
                raise InvalidArgument(f"copy: archive entry {member.name!r} escapes the target")
            inside = posixpath.join(base, name)
            parent = resolve_in_root(root, posixpath.dirname(inside))
            parent.mkdir(parents=True, exist_ok=True)
            target = parent / posixpath.basename(inside)
            if member.isdir():
                if not target.is_dir():
                    target.mkdir(mode=member.mode & 0o7777)
                continue
            if target.is_symlink() or target.exists():
                if target.is_dir() and not target.is_symlink():
                    raise InvalidArgument(
                        f"copy: cannot overwrite directory {inside!r} with a file"
                    )
                target.unlink()
            if member.issym():
                os.symlink(member.linkname, target)
            elif member.islnk():
                source = resolve_in_root(root, posixpath.join(base, member.linkname))
                os.link(source, target, follow_symlinks=False)
            elif member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                fd = os.open(
                    target,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                    member.mode & 0o7777,
                )
                with os.fdopen(fd, "wb") as out:
                    while block := extracted.read(CHUNK):
                        out.write(block)
                os.chmod(target, member.mode & 0o7777)
            # Devices and fifos are not copied: rootless cannot make devices.

"""The `local` volume driver: a directory under the daemon's data dir, or a mount there.

Layout, as Docker's: <data>/volumes/<name>/_data holds the data, opts.json the
driver options, mounts.json the ids of the containers that have it mounted
(kept on disk so a restarted daemon still knows who does).

Options (docker volume create --opt): none for a plain directory; `type=tmpfs`
(device=tmpfs, o=size=64m,mode=1777,uid=..,gid=..) for a tmpfs mounted while
some container uses it; `o=bind` with `device=/abs/host/dir` for a bind of a
host directory. Other filesystem types need real root to mount, which a
rootless daemon does not have, and are refused.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import structlog

from runtimed.errors import FailedPrecondition, InvalidArgument, NotFound
from runtimed.snapshots import _mount
from runtimed.snapshots.base import remove_tree, tree_usage
from runtimed.store.atomicfile import write_atomic
from runtimed.volumes.driver import DriverContext, VolumeInfo
from runtimed.volumes.names import check_name

log = structlog.get_logger(__name__)

_KEYS = ("type", "device", "o")
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC = 1, 2, 4, 8, 4096, 16384
# Mount flags tmpfs takes as words in `o`, and what they set (or clear).
_FLAG_WORDS = {
    "ro": (MS_RDONLY, True),
    "rw": (MS_RDONLY, False),
    "nosuid": (MS_NOSUID, True),
    "suid": (MS_NOSUID, False),
    "nodev": (MS_NODEV, True),
    "dev": (MS_NODEV, False),
    "noexec": (MS_NOEXEC, True),
    "exec": (MS_NOEXEC, False),
}
_TMPFS_KEYS = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "huge", "mpol")


def parse_options(options: dict[str, str]) -> dict[str, str]:
    """Check `--opt`s; returns them as stored. InvalidArgument names what is wrong."""
    for key in options:
        if key not in _KEYS:
            raise InvalidArgument(
                f"invalid option key {key!r} for the local driver: use type, device and o"
            )
    kind = options.get("type", "")
    words = [w for w in options.get("o", "").split(",") if w]
    if not options:
        return {}
    if kind == "tmpfs":
        for word in words:
            key = word.partition("=")[0]
            if word not in _FLAG_WORDS and key not in _TMPFS_KEYS:
                raise InvalidArgument(
                    f"invalid tmpfs option {word!r}: use size=, mode=, uid=, gid=, nr_inodes=, "
                    "and ro, noexec, nosuid, nodev (or their opposites)"
                )
        return dict(options)
    if "bind" in words or "rbind" in words:
        device = options.get("device", "")
        if kind not in ("", "none"):
            raise InvalidArgument(f"o=bind goes with type=none, not type={kind}")
        if not device.startswith("/"):
            raise InvalidArgument(f"o=bind needs device=/absolute/host/path, not {device!r}")
        extra = [w for w in words if w not in ("bind", "rbind", "ro", "rw")]
        if extra:
            raise InvalidArgument(f"invalid bind option {extra[0]!r}: use bind, rbind, ro, rw")
        return dict(options)
    raise InvalidArgument(
        f"the local driver of a rootless daemon can mount only type=tmpfs or o=bind volumes, "
        f"not type={kind or '(none)'} (mounting other filesystems needs real root)"
    )


class LocalDriver:
    name = "local"

    def __init__(self, context: DriverContext) -> None:
        self.root = context.data_dir / "volumes"
        self._lock = asyncio.Lock()

    # -- layout ----------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        check_name(name)
        path = self.root / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return path
        if not stat.S_ISDIR(st.st_mode):
            # Someone swapped the volume dir for a link: following it would hand out
            # whatever it points at.
            raise FailedPrecondition(f"volume directory {path} is not a plain directory: refused")
        return path

    def data_path(self, name: str) -> Path:
        return self._dir(name) / "_data"

    def _options(self, name: str) -> dict[str, str]:
        try:
            return dict(json.loads((self._dir(name) / "opts.json").read_text()))
        except FileNotFoundError:
            return {}

    def _mount_ids(self, name: str) -> set[str]:
        try:
            return set(json.loads((self._dir(name) / "mounts.json").read_text()))
        except FileNotFoundError:
            return set()

    def _save_mount_ids(self, name: str, ids: set[str]) -> None:
        path = self._dir(name) / "mounts.json"
        if not ids:
            # No file is no mounts: the last unmount needs no space on a full disk.
            path.unlink(missing_ok=True)
            return
        write_atomic(path, json.dumps(sorted(ids)).encode(), mode=0o600)

    def _exists(self, name: str) -> bool:
        data = self.data_path(name)
        return data.is_dir() and not data.is_symlink()

    # -- operations ------------------------------------------------------------

    async def create(self, name: str, options: dict[str, str]) -> None:
        opts = parse_options(options)
        await asyncio.to_thread(self._create, name, opts)

    def _create(self, name: str, opts: dict[str, str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o701)
        vol = self._dir(name)
        vol.mkdir(exist_ok=True)
        data = vol / "_data"
        data.mkdir(mode=0o755, exist_ok=True)
        if not self._exists(name):
            raise FailedPrecondition(f"volume directory {data} is not a plain directory: refused")
        write_atomic(vol / "opts.json", json.dumps(opts).encode(), mode=0o600)

    async def remove(self, name: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self._remove, name)

    def _remove(self, name: str) -> None:
        vol = self._dir(name)
        if not vol.exists():
            return
        data = vol / "_data"
        if self._mount_ids(name) and _mount.is_mounted(data):
            raise FailedPrecondition(f"volume {name} is mounted: stop the containers using it")
        if _mount.is_mounted(data):
            _mount.umount(data, _mount.MNT_DETACH | _mount.UMOUNT_NOFOLLOW)
        _remove_tree(vol)

    async def mount(self, name: str, mount_id: str) -> str:
        async with self._lock:
            return await asyncio.to_thread(self._mount, name, mount_id)

    def _mount(self, name: str, mount_id: str) -> str:
        if not self._exists(name):
            raise NotFound(f"volume {name} has no data directory under {self.root}")
        data = self.data_path(name)
        opts = self._options(name)
        if opts and not _mount.is_mounted(data):
            self._mount_fs(data, opts)
        ids = self._mount_ids(name)
        if mount_id not in ids:
            self._save_mount_ids(name, ids | {mount_id})
        return str(data)

    def _mount_fs(self, data: Path, opts: dict[str, str]) -> None:
        words = [w for w in opts.get("o", "").split(",") if w]
        flags, fs_data = 0, []
        for word in words:
            if word in _FLAG_WORDS:
                bit, on = _FLAG_WORDS[word]
                flags = flags | bit if on else flags & ~bit
            elif word not in ("bind", "rbind"):
                fs_data.append(word)
        try:
            if opts.get("type") == "tmpfs":
                _mount.mount(opts.get("device") or "tmpfs", data, "tmpfs", ",".join(fs_data), flags)
            else:
                device = Path(opts["device"])
                if not device.is_dir():
                    raise NotFound(f"bind device {device} of this volume does not exist")
                rec = MS_REC if "rbind" in words else 0
                _mount.mount(str(device), data, "", "", MS_BIND | rec)
                if flags & MS_RDONLY:
                    _mount.mount("", data, "", "", MS_BIND | 32 | MS_RDONLY)  # 32: MS_REMOUNT
        except OSError as exc:
            raise FailedPrecondition(
                f"cannot mount volume at {data}: {exc.strerror or exc}"
                + (" (it needs the daemon's own namespaces)" if exc.errno == errno.EPERM else "")
            ) from None
        log.info("volume_fs_mounted", path=str(data), type=opts.get("type") or "bind")

    async def unmount(self, name: str, mount_id: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self._unmount, name, mount_id)

    def _unmount(self, name: str, mount_id: str) -> None:
        if not self._dir(name).exists():
            return
        ids = self._mount_ids(name)
        ids.discard(mount_id)
        data = self.data_path(name)
        if not ids and self._options(name) and _mount.is_mounted(data):
            try:
                _mount.umount(data)
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                _mount.umount(data, _mount.MNT_DETACH | _mount.UMOUNT_NOFOLLOW)
            log.info("volume_fs_unmounted", path=str(data))
        self._save_mount_ids(name, ids)

    async def path(self, name: str) -> str:
        return str(self.data_path(name))

    async def get(self, name: str) -> VolumeInfo:
        if not await asyncio.to_thread(self._exists, name):
            raise NotFound(f"no such volume: {name}")
        return VolumeInfo(name=name, mountpoint=str(self.data_path(name)))

    async def list(self) -> list[VolumeInfo]:
        def scan() -> list[VolumeInfo]:
            if not self.root.is_dir():
                return []
            out = []
            for entry in sorted(os.listdir(self.root)):
                try:
                    if self._exists(entry):
                        out.append(VolumeInfo(name=entry, mountpoint=str(self.data_path(entry))))
                except (InvalidArgument, FailedPrecondition):
                    continue
            return out

        return await asyncio.to_thread(scan)

    async def capabilities(self) -> dict[str, Any]:
        return {"Scope": "local"}

    def usage(self, name: str) -> int:
        """Bytes of the volume's files (for prune's reclaimed space)."""
        return tree_usage(self.data_path(name)).bytes


def _remove_tree(path: Path) -> None:
    try:
        remove_tree(path)
    except FileNotFoundError:
        return
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            raise

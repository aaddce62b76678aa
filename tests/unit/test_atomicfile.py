"""Replacing a file whole while other threads replace the same file."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from runtimed_shim.atomicfile import replace_file

from runtimed.network import etcfiles
from runtimed.store.atomicfile import write_atomic

THREADS = 8
ROUNDS = 150


def _race(write: Callable[[Path, bytes], None], target: Path) -> set[bytes]:
    """Every thread replaces `target` ROUNDS times with contents of its own; any error
    fails the test. Returns every content written."""
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    written: set[bytes] = set()

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(ROUNDS):
            data = f"{n}-{i}\n".encode() * 2000  # big enough that writes overlap
            written.add(data)
            try:
                write(target, data)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return written


@pytest.mark.parametrize(
    "write",
    [
        lambda path, data: etcfiles.write(path, data.decode()),
        lambda path, data: write_atomic(path, data, mode=0o600, durable=False),
        lambda path, data: write_atomic(path, data),
        lambda path, data: replace_file(str(path), data),
    ],
    ids=["etcfiles.write", "write_atomic-fast", "write_atomic", "shim-replace_file"],
)
def test_racing_writers_each_replace_the_file_whole(
    tmp_path: Path, write: Callable[[Path, bytes], None]
) -> None:
    target = tmp_path / "dns.json"
    written = _race(write, target)
    assert target.read_bytes() in written
    assert [p.name for p in tmp_path.iterdir()] == ["dns.json"]  # no temporary left over


def test_a_failed_replace_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_bytes(b"old")
    (tmp_path / "blocker").mkdir()
    with pytest.raises(IsADirectoryError):  # renaming a file over a directory fails
        write_atomic(tmp_path / "blocker", b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "config.json"]


def test_the_mode_is_the_one_asked_for_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "hosts", b"x", mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "hosts").stat().st_mode) == 0o644

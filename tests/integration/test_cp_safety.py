"""docker cp against a hostile container, and cp's errors in the user's terms.

The racing container swaps its directory /w with a symlink to a host directory
(renameat2 RENAME_EXCHANGE in a loop, a static C helper) while the daemon
copies into and out of /w: nothing may be written to, or read from, the host
directory (CVE-2018-15664).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from runtimed.gen.runtimed.v1 import engine_pb2 as pb
from tests.support.containers import inspect
from tests.support.daemon import Daemon
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ATTEMPTS = 300
MARKER = b"HOST-ONLY-7d2e41b9"

SWAP_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Swap two names forever, atomically: a directory and a symlink trade places. */
int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    for (;;) {
        if (syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], 2 /* EXCHANGE */)) {
            perror("renameat2");
            return 1;
        }
    }
}
"""


@pytest.fixture(scope="module")
def image(daemon: Daemon) -> str:
    return daemon.import_busybox("bb:cp")


@pytest.fixture(scope="module")
def racer_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding `swap`, built static: the image has no libc."""
    bindir = tmp_path_factory.mktemp("racer")
    source = bindir / "swap.c"
    source.write_text(SWAP_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(bindir / "swap"), str(source)], check=True)
    source.unlink()
    return bindir


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    """A directory of the user's outside every container, with a file only the host has."""
    path = tmp_path / "hostdir"
    path.mkdir()
    (path / "secret.txt").write_bytes(MARKER)
    return path


@pytest.fixture
def racing(daemon: Daemon, image: str, racer_bin: Path, host_dir: Path) -> Iterator[str]:
    name = "racer"
    script = (
        f"mkdir /w && echo container > /w/secret.txt && ln -s {host_dir} /wswap"
        " && touch /ready && exec /racer/swap /w /wswap"
    )
    daemon.ok(
        "run", "-d", "--name", name, "-v", f"{racer_bin}:/racer:ro", image, "sh", "-c", script
    )
    try:
        wait_for(
            lambda: daemon.ctl("exec", name, "test", "-f", "/ready").returncode == 0,
            what="the racer to start swapping",
        )
        yield name
        assert inspect(daemon, name)["State"]["Running"], "the racer stopped swapping"
    finally:
        daemon.ctl("rm", "-f", name)


def payload_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"payload from cp\n"
        info = tarfile.TarInfo("payload.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_cp_under_a_swap_race_never_touches_the_host(
    daemon: Daemon, racing: str, host_dir: Path
) -> None:
    # The race is live: through /proc/PID/root by name, /w is now and then the host's.
    pid = inspect(daemon, racing)["State"]["Pid"]
    by_name = 0
    for _ in range(2000):
        with open(f"/proc/{pid}/root/w/secret.txt", "rb") as f:
            by_name += f.read() == MARKER
    assert by_name > 0, "the swap never showed through /proc/PID/root"

    engine = daemon.engine()
    archive = payload_tar()
    tolerated = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}
    copied_in = copied_out = 0
    for attempt in range(ATTEMPTS):
        chunks = [
            pb.CopyToContainerChunk(options=pb.CopyToContainerOptions(id=racing, path="/w/")),
            pb.CopyToContainerChunk(data=archive),
        ]
        try:
            engine.CopyToContainer(iter(chunks), timeout=30)
            copied_in += 1
        except grpc.RpcError as exc:
            assert exc.code() in tolerated, exc.details()
        assert not (host_dir / "payload.txt").exists(), f"cp wrote to the host on try {attempt}"

        data = b""
        try:
            stream = engine.CopyFromContainer(
                pb.CopyFromContainerRequest(id=racing, path="/w/secret.txt"), timeout=30
            )
            data = b"".join(chunk.data for chunk in stream)
            copied_out += 1
        except grpc.RpcError as exc:
            assert exc.code() in tolerated, exc.details()
        assert MARKER not in data, f"cp read the host's file on try {attempt}"
    assert sorted(os.listdir(host_dir)) == ["secret.txt"]
    # Both directions did copy, while the swap ran.
    assert copied_in > 0 and copied_out > 0


# --- errors in the user's terms ---------------------------------------------------------------


@pytest.fixture(scope="module")
def box(daemon: Daemon, image: str) -> Iterator[str]:
    daemon.ok("run", "-d", "--name", "box", image, "sleep", "1000")
    yield "box"
    daemon.ctl("rm", "-f", "box")


def exists_in(daemon: Daemon, ctr: str, path: str) -> bool:
    return daemon.ctl("exec", ctr, "test", "-e", path).returncode == 0


def test_cp_of_an_unreadable_file_says_so_and_copies_nothing(
    daemon: Daemon, box: str, tmp_path: Path
) -> None:
    secret = tmp_path / "unreadable.txt"
    secret.write_text("no\n")
    secret.chmod(0)
    result = daemon.ctl("cp", str(secret), f"{box}:/tmp/")
    assert (result.returncode, result.stderr) == (1, f"open {secret}: permission denied\n")
    assert not exists_in(daemon, box, "/tmp/unreadable.txt")

    # One unreadable file deep in a tree: the copy stops, and nothing of the tree lands.
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a\n")
    (tree / "sub" / "b.txt").write_bytes(os.urandom(3 << 20))  # sent before the failure
    (tree / "sub" / "z.txt").write_text("z\n")
    (tree / "sub" / "z.txt").chmod(0)
    result = daemon.ctl("cp", str(tree), f"{box}:/tmp/")
    assert (result.returncode, result.stderr) == (
        1,
        f"open {tree}/sub/z.txt: permission denied\n",
    )
    assert not exists_in(daemon, box, "/tmp/tree")


def test_cp_of_a_hard_link_to_a_missing_file_is_a_clear_refusal(
    daemon: Daemon, box: str, tmp_path: Path
) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("link.txt")
        link.type = tarfile.LNKTYPE
        link.linkname = "missing.txt"
        tar.addfile(link)
    result = daemon.ctl("cp", "-", f"{box}:/tmp", input=buf.getvalue())
    assert result.returncode == 1
    assert result.stderr == (
        "Error response from daemon: copy: cannot link /tmp/link.txt to /tmp/missing.txt "
        "in container box: /tmp/missing.txt does not exist\n"
    )
    engine = daemon.engine()
    chunks = [
        pb.CopyToContainerChunk(options=pb.CopyToContainerOptions(id=box, path="/tmp")),
        pb.CopyToContainerChunk(data=buf.getvalue()),
    ]
    with pytest.raises(grpc.RpcError) as caught:
        engine.CopyToContainer(iter(chunks), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not exists_in(daemon, box, "/tmp/link.txt")

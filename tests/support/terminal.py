"""Starting a program on the follower side of a pty, as a user's terminal runs it."""

from __future__ import annotations

import subprocess


def spawn_on_terminal(argv: list[str], follower: int, env: dict[str, str]) -> subprocess.Popen:
    """Run `argv` in a new session with the pty `follower` as its stdio and controlling
    terminal.

    `setsid -c` (util-linux) makes the terminal controlling from inside the program's
    own process. A preexec_fn would instead run Python in the forked child of the test
    process, grpcio's fork handlers among it; with the test's gRPC channels open that
    child was seen to print grpc errors onto the terminal and hang before its exec.
    """
    return subprocess.Popen(
        ["setsid", "-c", *argv], stdin=follower, stdout=follower, stderr=follower, env=env
    )

"""Detach keys (docker's ctrl-p,ctrl-q): parsed from their names, found in keyboard input.

Both ends use them: runtimectl scans its own input, and the Docker API scans
what an attached client sends (dockerd does it daemon-side).
"""

from __future__ import annotations

from typing import NoReturn

from runtimed.errors import InvalidArgument

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"

# Docker's names for the control characters: ctrl-@ is NUL, ctrl-a..ctrl-z are 1..26,
# then ctrl-[ ctrl-\ ctrl-] ctrl-^ ctrl-_ are 27..31.
_CTRL_NAMES = {"ctrl-@": 0} | {f"ctrl-{chr(ord('a') + i)}": i + 1 for i in range(26)}
_CTRL_NAMES |= {"ctrl-[": 27, "ctrl-\\": 28, "ctrl-]": 29, "ctrl-^": 30, "ctrl-_": 31}


def parse_detach_keys(spec: str) -> bytes:
    """`ctrl-p,ctrl-q` -> b"\\x10\\x11"; single characters stand for themselves."""
    codes = bytearray()
    for key in spec.split(","):
        if len(key) == 1 and key.isascii():
            codes.append(ord(key))
        elif key in _CTRL_NAMES:
            codes.append(_CTRL_NAMES[key])
        elif key == "DEL":
            codes.append(127)
        else:
            _bad_keys(spec)
    return bytes(codes)


def _bad_keys(spec: str) -> NoReturn:
    raise InvalidArgument(
        f"Invalid detach keys ({spec}) provided: use a comma-separated list of single "
        "characters or ctrl-<a-z, @, [, \\, ], ^, _>, e.g. ctrl-p,ctrl-q"
    )


class DetachScanner:
    """Finds the detach sequence in keyboard input, holding back a partial match.

    Bytes that turn out not to be the sequence are released in order, so
    typing ctrl-p then `x` still reaches the container as both bytes.
    """

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.pending = bytearray()

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Bytes to forward, and whether the full sequence was typed (input after it is dropped)."""
        out = bytearray()
        for byte in data:
            self.pending.append(byte)
            # Drop from the front until what is held is again a prefix of the keys.
            while self.pending and not self.keys.startswith(self.pending):
                out.append(self.pending.pop(0))
            if self.keys and self.pending == self.keys:
                self.pending.clear()
                return bytes(out), True
        return bytes(out), False

    def flush(self) -> bytes:
        held = bytes(self.pending)
        self.pending.clear()
        return held

"""How much of a file the page cache holds: mincore(2) over a read-only mapping of it.

Shared by the log tests and the benches (the memory a node keeps for a log file).
"""

from __future__ import annotations

import ctypes
import mmap
from pathlib import Path

from runtimed_shim.host import libc, libc_error

libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]  # fmt: skip
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


def cached_bytes(path: Path) -> int:
    size = path.stat().st_size
    if not size:
        return 0
    vector = ctypes.create_string_buffer(-(-size // mmap.PAGESIZE))
    with path.open("rb") as f:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, f.fileno(), 0)
    if address in (None, _MAP_FAILED):
        raise libc_error("mmap")
    try:
        if libc.mincore(address, size, vector) != 0:
            raise libc_error("mincore")
    finally:
        libc.munmap(address, size)
    return sum(byte & 1 for byte in vector.raw) * mmap.PAGESIZE

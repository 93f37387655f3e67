"""The C heap's policy for flowd: memory a burst of clients took is given back when they leave.

glibc raises its mmap threshold each time a large mmapped block is freed, so after the first
megabyte reply, later ones come from the main heap, where fragmentation keeps them: 200 clients
that asked for big log reads and left would leave flowd's RSS at its peak for good. A fixed
threshold keeps every large buffer (replies, transport buffers) in its own mapping, unmapped on
free, and `trim` hands back free pages in the middle of the heap after a burst.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("flow.memory")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024
"""glibc's own starting value; fixing it stops the dynamic increase."""

_libc: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        if name is None:
            return None
        try:
            lib = ctypes.CDLL(name)
            lib.mallopt.argtypes, lib.malloc_trim.argtypes = [ctypes.c_int, ctypes.c_int], [ctypes.c_size_t]
        except (OSError, AttributeError):  # not glibc (musl has neither)
            return None
        _libc = lib
    return _libc


def fix_heap_policy() -> bool:
    """Fix the mmap and trim thresholds; False where the C library is not glibc."""
    lib = _glibc()
    if lib is None:
        return False
    ok = bool(lib.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(lib.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD))
    if not ok:
        log.debug("mallopt refused the heap thresholds")
    return ok


def trim() -> None:
    """Return free heap pages to the system (cheap; call after a burst, not per request)."""
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)

"""Keep freed heap memory in the process, so that XLA's per-call temporaries reuse their pages.

XLA on CPU allocates an executable's temporary buffer with malloc on every call and frees it after.
glibc serves a request above its mmap threshold (dynamic, at most 32 MiB by default) with fresh
pages from mmap and unmaps them on free, so every such call then page-faults once per 4 KiB page it
touches: about 1 ms per 4 MiB here, 30% of a LiH training step and 40% of folx's kinetic energy at
LiH batch 256 (docs/benchmarks.md). Raising glibc's mmap and trim thresholds keeps freed memory in
the heap for the next call. The setting is process-wide, so only the `vmcjet` command applies it,
never an import of the package.
"""

from __future__ import annotations

import ctypes
import os

# mallopt parameters from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1 << 30
# Set by a user who tunes glibc's allocator themselves, or who keeps its defaults with
# VMCJET_SYSTEM_MALLOC=1: their choice wins.
USER_SETTINGS = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "GLIBC_TUNABLES",
    "VMCJET_SYSTEM_MALLOC",
)
_retained = False  # whether retain_freed_memory() changed this process's allocator


def retain_freed_memory() -> bool:
    """Raises glibc's mmap and trim thresholds to `THRESHOLD_BYTES` (1 GiB).

    Returns:
        True when both thresholds were set; False without glibc's `mallopt` (macOS, musl) or
        when any of `USER_SETTINGS` is in the environment (then nothing is changed).
    """
    if any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    global _retained
    _retained = bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, THRESHOLD_BYTES)
    )
    return _retained


def freed_memory_retained() -> bool:
    """Whether `retain_freed_memory` changed this process's allocator (recorded by benchmarks)."""
    return _retained

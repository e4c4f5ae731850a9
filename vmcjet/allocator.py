"""Keep freed heap memory in the process, so that XLA's per-call temporaries reuse their pages.

XLA on CPU allocates an executable's temporary buffer with malloc on every call and frees it after.
glibc serves a request above its mmap threshold (dynamic, at most 32 MiB by default) with fresh
pages from mmap and unmaps them on free, so every such call then page-faults once per 4 KiB page it
touches: about 1 ms per 4 MiB here, 30% of a LiH training step and 40% of folx's kinetic energy at
LiH batch 256 (docs/benchmarks.md). Raising glibc's mmap and trim thresholds to 1 GiB keeps freed
memory in the heap for the next call.

Only the main thread's heap (arena) can hold such blocks: glibc gives every other thread an arena
whose heaps hold at most 64 MiB, and mmaps larger blocks whatever the threshold. With JAX's
asynchronous CPU dispatch, executables run on a worker thread, so a LiH training step (66 MiB of
temporaries with SPRING's float64 kernel) took 18,600 fresh pages per call: 32.7 ms against
20.7 ms with `jax_cpu_enable_async_dispatch` off, which runs each executable on the calling (main)
thread (docs/benchmarks.md, "Whole step"). The driver waits for every step's statistics anyway, so
nothing overlaps that asynchronous dispatch would have gained. A single arena for all threads
would also cover the worker threads, but its lock made a LiH training step 20% slower (34 vs 28
ms), so it is not set. The settings are process-wide, so only the `vmcjet` command applies them,
never an import of the package.
"""

from __future__ import annotations

import ctypes
import os
import sys

import jax

# mallopt parameters from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1 << 30
# Older glibc (2.26 and before) refuses mmap thresholds above half its 64 MiB arena heap.
_FALLBACK_THRESHOLD_BYTES = 32 << 20
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
    """Keeps freed memory in glibc's heap: mmap and trim thresholds at 1 GiB, and JAX's CPU
    executables run on the calling thread so that their temporaries come from that heap.

    Returns:
        True when the settings were made; False off Linux, without glibc's `mallopt` (musl) or
        when any of `USER_SETTINGS` is in the environment (then nothing is changed).
    """
    global _retained
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    threshold_set = any(
        mallopt(_M_MMAP_THRESHOLD, size) for size in (THRESHOLD_BYTES, _FALLBACK_THRESHOLD_BYTES)
    )
    _retained = threshold_set and bool(mallopt(_M_TRIM_THRESHOLD, THRESHOLD_BYTES))
    if _retained:
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    return _retained


def freed_memory_retained() -> bool:
    """Whether `retain_freed_memory` changed this process's allocator (recorded by benchmarks)."""
    return _retained

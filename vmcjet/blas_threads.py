"""One thread for the BLAS/LAPACK libraries loaded in the process (numpy, scipy, pyscf OpenBLAS).

JAX's CPU backend runs its own matrix products, but hands Cholesky, LU, triangular solves and
eigendecompositions to scipy's OpenBLAS/LAPACK (jaxlib's LAPACK kernels). OpenBLAS starts one
worker per core, and after each call its workers keep spinning for a while, waiting for the next
one, on the same 2 cores that XLA's own thread pool is using. Measured on this machine
(docs/benchmarks.md, "Whole step"): a LiH training step with SPRING's float64 kernel took 79.8 ms
with OpenBLAS's default threads and 44.3 ms with one (the sampling part alone 6.9 vs 4.2 ms, though
it calls no LAPACK routine); a 225 x 225 eigendecomposition under load 1.06 s against 5.6 ms.
The LAPACK calls vmcjet makes are small (B x B with B <= a few thousand, per-walker n x n), where
one thread loses little. Like `vmcjet.allocator`, the limit is process-wide, so only the `vmcjet`
command applies it, never an import of the package; threadpoolctl does the work.
"""

from __future__ import annotations

import os

from threadpoolctl import threadpool_info, threadpool_limits

# A user who sets any of these chooses BLAS threads themselves; their choice wins.
USER_SETTINGS = (
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OMP_NUM_THREADS",
    "VMCJET_BLAS_THREADS",
)
_limited = False  # whether limit_blas_threads() changed this process's BLAS thread pools


def limit_blas_threads() -> bool:
    """Sets every loaded BLAS library's thread pool (OpenBLAS, MKL, BLIS) to one thread.

    Returns:
        True when the limit was applied; False when any of `USER_SETTINGS` is in the environment
        (then nothing is changed). Libraries loaded later keep their own defaults.
    """
    global _limited
    if any(name in os.environ for name in USER_SETTINGS):
        return False
    threadpool_limits(limits=1, user_api="blas")
    _limited = True
    return True


def blas_threads() -> int | None:
    """The largest thread count among the loaded BLAS libraries (None if none is loaded)."""
    counts = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return max(counts, default=None)


def blas_threads_limited() -> bool:
    """Whether `limit_blas_threads` changed this process's BLAS pools (`vmcjet info`)."""
    return _limited

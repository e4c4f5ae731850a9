"""The precision of matrix products in the parts of a step where float32 rounding matters.

On GPUs (NVIDIA Ampere and newer) JAX's DEFAULT precision lets float32 matrix products run in
TF32, with a 10-bit mantissa: about 1e-3 relative error per product. That is too coarse for the
local energy (the Laplacian sums second derivatives that cancel) and for the natural-gradient
kernels built from per-walker gradients. `matmul_precision` in the config ("highest", the default,
"high" or "default": JAX's names, see `jax.default_matmul_precision`) sets the precision of every
dot product traced in the local energy, the gradients and the optimiser update; sampling keeps
JAX's default. On CPU every setting computes the same float32 products; the setting is still
recorded in the lowered program (`stablehlo.dot_general ... precision = [HIGHEST, HIGHEST]`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import jax

MATMUL_PRECISIONS = ("highest", "high", "default")

F = TypeVar("F", bound=Callable)


def with_matmul_precision(fn: F, precision: str) -> F:
    """`fn` traced with `jax.default_matmul_precision(precision)`: every dot product it builds
    without an explicit precision gets `precision` (fixed when traced, so also inside jit)."""

    @functools.wraps(fn)
    def traced(*args, **kwargs):
        with jax.default_matmul_precision(precision):
            return fn(*args, **kwargs)

    return traced  # type: ignore[return-value]

"""Log-determinants and inverses of batches of small matrices, in XLA's own operations.

vmcjet's determinants are small (n = electrons per spin, or all electrons in full mode) and come in
large batches (walkers x determinants). jaxlib 0.10's CPU LAPACK kernels split such a batch over
XLA's intra-op thread pool and wait for the pieces on a pool thread; two of them at once (the alpha
and beta determinants are independent operations that XLA runs concurrently) can take every
thread of a 2-thread pool and wait forever (docs/reliability.md, "JAX version"). Gaussian
elimination written with jax.numpy has no LAPACK call, so no such wait, on any JAX version, and for
n <= 15 it costs about what LAPACK does (docs/reliability.md has the measurements).

Elimination with partial pivoting, unrolled over the n columns (n is static):
step k picks the largest |entry| of column k among the rows not yet used as pivots, swaps it into
row k (a swap flips the sign), and subtracts multiples of it from the rows below (for the
determinant alone) or from all other rows (Gauss-Jordan, which also turns an identity on the right
into A^-1). Then

    det A = (-1)^swaps prod_k pivot_k,    log|det A| = sum_k log|pivot_k|.

A singular matrix gives sign 0 and log|det| = -inf, as `jnp.linalg.slogdet` does.

`slogdet` is a `jax.jit` named "slogdet", so the Laplacian engine (and folx) give it their dedicated
log-determinant rule, exactly as for `jnp.linalg.slogdet`. Its derivatives are analytic
(custom_jvp): d log|det A| = tr(A^-1 dA) and dA^-1 = -A^-1 dA A^-1, to any order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def _eliminate(a: jax.Array, right: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Partial-pivoting elimination of `a` (..., n, n), applied alongside to `right` (..., n, m).

    Returns:
        sign (...), log|det a| (...) and a^-1 right (..., n, m) (unused when m = 0: then only the
        rows below each pivot are eliminated).
    """
    n = a.shape[-1]
    jordan = right.shape[-1] > 0
    rows = lax.broadcasted_iota(jnp.int32, a.shape[:-1], a.ndim - 2)  # (..., n): row index
    # The columns still to eliminate, then the right-hand side; eliminated columns are dropped.
    work = jnp.concatenate([a, right], axis=-1)
    swaps = jnp.zeros(a.shape[:-2], jnp.int32)
    pivots = []
    for k in range(n):
        candidates = jnp.where(rows >= k, jnp.abs(work[..., :, 0]), -1)
        chosen = jnp.argmax(candidates, axis=-1).astype(jnp.int32)
        is_chosen = rows == chosen[..., None]  # (..., n)
        pivot_row = jnp.sum(jnp.where(is_chosen[..., None], work, 0), axis=-2)  # (..., w)
        work = jnp.where(is_chosen[..., None], work[..., k : k + 1, :], work)
        work = work.at[..., k, :].set(pivot_row)
        swaps = swaps + (chosen != k).astype(jnp.int32)
        pivot = pivot_row[..., 0]
        pivots.append(pivot)
        safe_pivot = jnp.where(pivot == 0, 1, pivot)
        eliminate = (rows != k) if jordan else (rows > k)
        # Multipliers first, as LAPACK does: a row equal to the pivot row then becomes exactly 0.
        multipliers = jnp.where(eliminate, work[..., :, 0] / safe_pivot[..., None], 0)
        work = work - multipliers[..., :, None] * pivot_row[..., None, :]
        if jordan:
            work = work.at[..., k, :].set(pivot_row / safe_pivot[..., None])
        work = work[..., :, 1:]
    pivots = jnp.stack(pivots, axis=-1)
    parity = jnp.where(swaps % 2 == 1, -1, 1).astype(a.dtype)
    sign = parity * jnp.prod(jnp.sign(pivots), axis=-1)
    return sign, jnp.sum(jnp.log(jnp.abs(pivots)), axis=-1), work


def _identity_like(a: jax.Array) -> jax.Array:
    return jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape)


@jax.custom_jvp
def slogdet_and_inverse(a: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Sign, log|det a| and a^-1 of `a` (..., n, n), from one Gauss-Jordan elimination.

    Returns:
        sign (...) in {-1, 0, 1}, log|det a| (...) and a^-1 (..., n, n) (not finite, or not
        meaningful, where a is singular).
    """
    return _eliminate(a, _identity_like(a))


@slogdet_and_inverse.defjvp
def _slogdet_and_inverse_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    sign, logdet, inverse = slogdet_and_inverse(a)
    inverse_da = inverse @ da
    d_logdet = jnp.trace(inverse_da, axis1=-2, axis2=-1)
    return (sign, logdet, inverse), (jnp.zeros_like(sign), d_logdet, -inverse_da @ inverse)


@jax.custom_jvp
def _slogdet(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    sign, logdet, _ = _eliminate(a, a[..., :0])
    return sign, logdet


@_slogdet.defjvp
def _slogdet_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    sign, logdet, inverse = slogdet_and_inverse(a)
    d_logdet = jnp.einsum("...ij,...ji->...", inverse, da)
    return (sign, logdet), (jnp.zeros_like(sign), d_logdet)


@jax.jit
def slogdet(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Drop-in for `jnp.linalg.slogdet` on real (..., n, n) without LAPACK: (sign, log|det a|)."""
    return _slogdet(a)

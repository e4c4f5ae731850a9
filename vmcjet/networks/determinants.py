"""Orbitals -> determinants -> one signed log|psi|.

Orbital matrices come per spin channel s as (K, n_s, n_orb): n_orb = n_s in block-diagonal mode
(psi_k = det(Phi_k^alpha) det(Phi_k^beta)) and n_orb = n in full mode (the alpha and beta rows are
stacked into one dense (K, n, n) matrix). Determinants use `vmcjet.linalg.slogdet` (no LAPACK) and
are summed in the log domain,

    log|psi| = m + log|sum_k s_k exp(l_k - m)|,   m = max_k l_k  (held constant under AD),

which neither overflows for huge determinants nor underflows for tiny ones. Exact zeros (coincident
same-spin electrons) give log|psi| = -inf with sign +1, never NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vmcjet.linalg import slogdet


def signed_log_sum(signs: jax.Array, logs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sign and log|.| of sum_k signs_k exp(logs_k).

    Args:
        signs: (K,) signs in {-1, 0, 1}.
        logs: (K,) log-magnitudes (may be -inf).

    Returns:
        sign (+1 or -1; +1 when the sum is exactly zero) and log|sum| (-inf when zero).
    """
    shift = jax.lax.stop_gradient(jnp.max(logs))
    shift = jnp.where(jnp.isfinite(shift), shift, jnp.zeros_like(shift))
    total = jnp.sum(signs * jnp.exp(logs - shift))
    sign = jnp.where(total < 0, -jnp.ones_like(total), jnp.ones_like(total))
    return sign, jnp.log(jnp.abs(total)) + shift


def log_determinants(blocks: list[jax.Array], full: bool) -> tuple[jax.Array, jax.Array]:
    """Signs and log|det| of each of the K determinants.

    Args:
        blocks: per non-empty spin channel, (K, n_s, n_orb) orbital values [k, i, j] = phi_kj(r_i).
        full: True when the blocks are rows of one dense (K, n, n) matrix per determinant.

    Returns:
        signs (K,) and logs (K,).
    """
    if full:
        return slogdet(jnp.concatenate(blocks, axis=1))
    signs, logs = slogdet(blocks[0])
    for block in blocks[1:]:
        sign, log = slogdet(block)
        signs, logs = signs * sign, logs + log
    return signs, logs


def dense_matrices(blocks: list[jax.Array], full: bool) -> jax.Array:
    """The (K, n, n) orbital matrices; block-diagonal mode places zeros off the spin blocks."""
    if full:
        return jnp.concatenate(blocks, axis=1)
    n = sum(block.shape[1] for block in blocks)
    rows, start = [], 0
    for block in blocks:
        k, n_s, _ = block.shape
        left = jnp.zeros((k, n_s, start), block.dtype)
        right = jnp.zeros((k, n_s, n - start - n_s), block.dtype)
        rows.append(jnp.concatenate([left, block, right], axis=2))
        start += n_s
    return jnp.concatenate(rows, axis=1)

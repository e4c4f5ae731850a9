"""Dedicated log-determinant rules: `jnp.linalg.slogdet` and `jnp.linalg.det` of x-dependent A.

Both appear in jaxprs as a `jit` named "slogdet" / "det"; `rules_control` routes them here instead
of interpreting their LU internals. With one Gauss-Jordan elimination of A (..., n, n) giving
log|det A|, its sign and A^-1 (`vmcjet.linalg`: XLA's own operations, no LAPACK), and
M_k = A^-1 d_k A:

    d_k log|det A| = tr(M_k),
    L log|det A|   = tr(A^-1 L A) - sum_k tr(M_k M_k),

and the sign has zero derivatives. For det = sign * exp(logdet) with g_k = tr(M_k):
d_k det = det g_k and L det = det (L logdet + sum_k g_k^2).
"""

import jax
import jax.numpy as jnp
from jax import lax

from vmcjet.laplacian.rules import add_second
from vmcjet.linalg import slogdet_and_inverse


def logdet_stack(inverse: jax.Array, stack: jax.Array) -> jax.Array:
    """Stack of log|det A| from the stack of A, shape (K + 1, ..., n, n) -> (K + 1, ...)."""
    traces = jnp.einsum("...ji,k...ij->k...", inverse, stack)
    batch = tuple(range(inverse.ndim - 2))
    # m[..., i, k, l] = (A^-1 d_k A)_il in dot_general's own output layout (batch, i, k, l), so
    # that neither the product nor the trace of M_k M_k needs a transposed copy.
    m = lax.dot_general(
        inverse,
        stack[:-1],
        (((inverse.ndim - 1,), (stack.ndim - 2,)), (batch, tuple(b + 1 for b in batch))),
    )
    curvature = jnp.sum(m * jnp.swapaxes(m, -1, -3), axis=(-3, -2, -1))
    return add_second(traces, -curvature)


def slogdet_rule(primals, dependent, **params):
    """Rule for the `jit` named "slogdet": outputs (sign, log|det A|)."""
    del dependent, params
    sign, logdet, inverse = slogdet_and_inverse(primals[0])

    def push(stacks):
        return [None, None if stacks[0] is None else logdet_stack(inverse, stacks[0])]

    return [sign, logdet], push


def det_rule(primals, dependent, **params):
    """Rule for the `jit` named "det"."""
    del dependent, params
    sign, logdet, inverse = slogdet_and_inverse(primals[0])
    det = sign * jnp.exp(logdet)

    def push(stacks):
        if stacks[0] is None:
            return [None]
        log_stack = logdet_stack(inverse, stacks[0])
        first = log_stack[:-1]
        return [add_second(det[None] * log_stack, det * jnp.sum(first * first, axis=0))]

    return [det], push


def register_rules(registry) -> None:
    """Registers the named-call rules of this module (see `vmcjet.laplacian.registry`)."""
    registry.register_call("slogdet", slogdet_rule)
    registry.register_call("det", det_rule)

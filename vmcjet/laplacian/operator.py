"""Linear differential operators of any order, collapsed: `forward_operator` and `biharmonic`.

`forward_operator(f, order=m, directions=V, weights=w)` computes sum_k w_k d^m f[v_k, ..., v_k]
in one forward pass carrying (m - 1) K + 1 rows per array (`vmcjet.laplacian.taylor`): the K
directional derivatives of every order below m and ONE weighted sum at order m, where standard
Taylor mode carries m K rows and nested backprop m nested passes.

The biharmonic operator Delta^2 f = sum_ij d_i^2 d_j^2 f is such a sum. With
d4[v] = d^4 f[v, v, v, v] and e_i the unit vectors,

    d4[e_i + e_j] + d4[e_i - e_j] = 2 f_iiii + 12 f_iijj + 2 f_jjjj     (the odd terms cancel),

so for D inputs

    Delta^2 f = (4 - D) / 3 sum_i d4[e_i] + 1/6 sum_{i<j} (d4[e_i + e_j] + d4[e_i - e_j]),

D^2 fourth-order directions in all. For small D the sign vectors s in {-1, 1}^D do with fewer:
E[s_i s_j s_k s_l] over all of them is d_ij d_kl + d_ik d_jl + d_il d_jk - 2 d_ijkl, so their mean
of d4[s] is 3 Delta^2 f - 2 sum_i f_iiii exactly, and (s and -s giving the same d4)

    Delta^2 f = 2/3 sum_i d4[e_i] + 1 / (3 2^(D-1)) sum_{s_1 = 1} d4[s],

2^(D-1) + D directions, fewer than D^2 for D = 3, 4, 5 (`biharmonic_directions` takes the smaller
set). Any exact set must reproduce the symmetric tensor of d_ij d_kl; the two orbits under
permutations and sign flips used here each need the unit vectors to cancel their diagonal part.

The first-order coefficients are linear in the direction, so the stacks carry them only for a
basis (the unit vectors when K > D): the D^2 directions of the biharmonic cost D + 2 D^2 + 1 rows,
not 3 D^2 + 1 (`taylor.basis`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from vmcjet.errors import InputError
from vmcjet.laplacian import registry, taylor
from vmcjet.laplacian.engine import (
    check_directions,
    forward_laplacian,
    linearize_jaxpr,
    padded_blocks,
)

Array = jax.Array

MAX_ORDER = 6  # the elementwise rules take g^(1..m) from m nested jvps: 2^m evaluations of g


def _check(order, weights, chunk_size) -> None:
    if not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise InputError(f"order={order!r} is not supported: use an integer from 1 to {MAX_ORDER}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise InputError(f"chunk_size={chunk_size!r} must be a positive integer or None")
    if weights is not None and jnp.ndim(weights) != 1:
        raise InputError(f"weights has shape {jnp.shape(weights)}; pass one weight per direction")


def forward_operator(
    f: Callable[[Array], Array],
    *,
    order: int,
    directions: Array | None = None,
    weights: Array | None = None,
    chunk_size: int | None = None,
) -> Callable[[Array], tuple[Array, Array]]:
    """sum_k w_k d^order f[v_k, ..., v_k], collapsed, with the value of f.

    Args:
        f: function of one floating-point array x (any shape, D entries) returning one array.
        order: m, from 1 to `MAX_ORDER`.
        directions: V, shape (K,) + x.shape; default the D unit vectors.
        weights: w, shape (K,); default all ones (order 2 with unit vectors: the Laplacian).
        chunk_size: if given, this many directions at a time in a `lax.fori_loop` (memory scales
            with it instead of K; same result up to rounding).

    Returns:
        `x -> (f(x), sum_k w_k d^m f(x)[v_k, ..., v_k])`, both of f(x)'s shape. Order 2 with the
        default directions and weights is `forward_laplacian` itself (its value and Laplacian).

    Raises:
        InputError: order not an integer in 1..MAX_ORDER, directions not of shape (K,) + x.shape,
            weights not of shape (K,), a bad chunk_size.
    """
    _check(order, weights, chunk_size)
    if order == 2 and directions is None and weights is None:
        laplacian = forward_laplacian(f, chunk_size=chunk_size)

        def value_and_laplacian(x: Array) -> tuple[Array, Array]:
            value, _, second = laplacian(x)
            return value, second

        return value_and_laplacian

    def apply(x: Array) -> tuple[Array, Array]:
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise InputError(f"x has dtype {x.dtype}; pass a floating-point array (e.g. float64)")
        vectors = check_directions(directions, x)
        num = vectors.shape[0]
        w = jnp.ones(num, x.dtype) if weights is None else jnp.asarray(weights, x.dtype)
        if w.shape != (num,):
            raise InputError(f"weights has shape {w.shape}, expected ({num},): one per direction")
        with registry.active(taylor.taylor_registry()), taylor.layout(order):
            closed = jax.make_jaxpr(f)(jax.ShapeDtypeStruct(x.shape, x.dtype))
            if len(closed.jaxpr.outvars) != 1:
                raise InputError("f must return a single array; wrap pytree outputs in a function")
            (value,), _, push = linearize_jaxpr(closed.jaxpr, closed.consts, [x], [True])

            def top(v: Array, w_block: Array) -> Array:
                basis, coordinates = taylor.basis(v)
                with taylor.layout(order, w_block, coordinates):
                    (stack,) = push([taylor.seed(basis, w_block, coordinates, order)])
                return jnp.zeros_like(value) if stack is None else stack[-1]

            if chunk_size is None or chunk_size >= num:
                return value, top(vectors, w)
            v_blocks, w_blocks = padded_blocks(vectors, chunk_size), padded_blocks(w, chunk_size)
            body = lambda i, total: total + top(v_blocks[i], w_blocks[i])
            return value, lax.fori_loop(0, v_blocks.shape[0], body, jnp.zeros_like(value))

    return apply


def biharmonic_directions(size: int, dtype=jnp.float64) -> tuple[Array, Array]:
    """Directions (K, D) and weights (K,) with sum_k w_k d4[v_k] = Delta^2 f for D = size, the
    smaller of two exact sets (module docstring):

    - 3 <= D <= 5: e_i with weight 2/3, and the 2^(D-1) sign vectors s in {-1, 1}^D with s_1 = 1,
      weight 1 / (3 2^(D-1)) (their mean of d4[s] is 3 Delta^2 f - 2 sum_i f_iiii);
      K = 2^(D-1) + D (21 at D = 5);
    - otherwise: e_i with weight (4 - D) / 3, and e_i + e_j, e_i - e_j (i < j) with weight 1/6;
      K = D^2.
    """
    eye = jnp.eye(size, dtype=dtype)
    if 2 ** (size - 1) + size < size * size:
        count = 2 ** (size - 1)
        bits = (jnp.arange(count)[:, None] >> jnp.arange(size - 1)[None, :]) & 1
        signs = jnp.concatenate([jnp.ones((count, 1), dtype), (1 - 2 * bits).astype(dtype)], 1)
        parts = [jnp.full(size, 2 / 3, dtype), jnp.full(count, 1 / (3 * count), dtype)]
        return jnp.concatenate([eye, signs]), jnp.concatenate(parts)
    i, j = jnp.triu_indices(size, k=1)
    directions = jnp.concatenate([eye, eye[i] + eye[j], eye[i] - eye[j]])
    pairs = size * (size - 1) // 2
    weights = jnp.concatenate(
        [jnp.full(size, (4 - size) / 3, dtype), jnp.full(2 * pairs, 1 / 6, dtype)]
    )
    return directions, weights


def biharmonic(
    f: Callable[[Array], Array], *, chunk_size: int | None = None
) -> Callable[[Array], tuple[Array, Array]]:
    """`x -> (f(x), Delta^2 f(x))`, exact: order 4 over `biharmonic_directions`.

    Args:
        f: function of one floating-point array x (any shape, D entries) returning one array.
        chunk_size: directions per `lax.fori_loop` step (None: all at once).
    """

    def apply(x: Array) -> tuple[Array, Array]:
        x = jnp.asarray(x)
        flat, weights = biharmonic_directions(math.prod(x.shape), x.dtype)
        directions = flat.reshape((flat.shape[0],) + x.shape)
        operator = forward_operator(
            f, order=4, directions=directions, weights=weights, chunk_size=chunk_size
        )
        return operator(x)

    return apply

"""Unbiased randomized Laplacian estimates, computed collapsed (the STDE idea, with the collapse).

For random directions v with E[v v^T] = I, E[v^T H v] = tr(H) = lap f. With K samples v_1..v_K the
estimate (1/K) sum_k v_k^T H v_k equals sum_k d2f[w_k, w_k] for the scaled directions
w_k = v_k / sqrt(K): exactly the collapsed second-order coefficient that
``forward_laplacian(f, directions=W)`` returns, so no per-sample second-order term is materialised.

Distributions (D = number of entries of x):
- "rademacher": entries +-1 with equal probability (lowest variance for a fixed Hessian diagonal:
  only off-diagonal entries contribute).
- "gaussian": entries standard normal.
- "coordinates": unit vectors e_i with i uniform over the D coordinates (with replacement),
  scaled by sqrt(D), so the estimate is (D/K) sum_k H_{i_k i_k}.

The variance of one Laplacian sample is 2 ||H||_F^2 for Gaussian directions and
2 sum_{i != j} H_ij^2 for Rademacher ones (divide by K for the mean of K).

The biharmonic Delta^2 f = sum_ij f_iijj from fourth-order directional derivatives
d4[v] = sum_ijkl f_ijkl v_i v_j v_k v_l (`stochastic_operator`): for Gaussian v, Isserlis' theorem
gives E[v_i v_j v_k v_l] = d_ij d_kl + d_ik d_jl + d_il d_jk, so E[d4[v]] = 3 Delta^2 f (f_ijkl is
symmetric) and (1 / 3K) sum_k d4[v_k] is unbiased, computed collapsed as ONE weighted fourth-order
sum (`forward_operator(order=4, weights=1/(3K))`). Its variance is (E[d4[v]^2] - 9 (Delta^2 f)^2)
/ (9 K): it falls as 1/K but, being an 8th moment of v, is larger than the Laplacian's. Rademacher
directions are biased here: E[v_i v_j v_k v_l] loses 2 on i = j = k = l, so E[d4[v]] =
3 Delta^2 f - 2 sum_i f_iiii, which needs the D diagonal terms exactly; "coordinates" misses the
mixed terms f_iijj altogether. Both are refused for the biharmonic.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from vmcjet.errors import InputError
from vmcjet.laplacian.engine import forward_laplacian
from vmcjet.laplacian.operator import forward_operator

Array = jax.Array


def _rademacher(key: Array, shape: tuple[int, ...], dtype) -> Array:
    return jax.random.rademacher(key, shape, dtype=dtype)


def _gaussian(key: Array, shape: tuple[int, ...], dtype) -> Array:
    return jax.random.normal(key, shape, dtype=dtype)


def _coordinates(key: Array, shape: tuple[int, ...], dtype) -> Array:
    num_samples, size = shape
    index = jax.random.randint(key, (num_samples,), 0, size)
    scale = jnp.sqrt(jnp.asarray(size, dtype))
    return scale * jax.nn.one_hot(index, size, dtype=dtype)


_DISTRIBUTIONS = {"rademacher": _rademacher, "gaussian": _gaussian, "coordinates": _coordinates}


def sample_directions(
    *, key: Array, num_samples: int, shape: tuple[int, ...], dtype, distribution: str
) -> Array:
    """Directions with E[v v^T] = I over the flattened shape, scaled by 1/sqrt(num_samples).

    Returns:
        Array of shape (num_samples,) + shape whose collapsed second-order sum estimates lap f.
    """
    unscaled = _DISTRIBUTIONS[distribution](key, (num_samples, math.prod(shape)), dtype)
    scaled = unscaled / jnp.sqrt(jnp.asarray(num_samples, dtype))
    return scaled.reshape((num_samples, *shape))


def stochastic_laplacian(
    f: Callable[[Array], Array], *, key: Array, num_samples: int, distribution: str = "rademacher"
) -> Callable[[Array], tuple[Array, Array]]:
    """Unbiased randomized estimate of the Laplacian of f, computed collapsed.

    Args:
        f: function of an array x (any shape, D entries) to an array.
        key: PRNG key of the random directions (fixed per returned function).
        num_samples: number K of random directions.
        distribution: "rademacher", "gaussian" or "coordinates".

    Returns:
        x -> (value, estimate), value = f(x) and estimate of lap f(x) with value's shape.

    Raises:
        InputError: for an unknown distribution or a non-positive num_samples.
    """
    if distribution not in _DISTRIBUTIONS:
        valid = ", ".join(_DISTRIBUTIONS)
        raise InputError(f"unknown distribution {distribution!r}; choose one of: {valid}")
    if num_samples < 1:
        raise InputError(f"num_samples={num_samples} must be a positive integer")

    def estimate(x: Array) -> tuple[Array, Array]:
        directions = sample_directions(
            key=key,
            num_samples=num_samples,
            shape=x.shape,
            dtype=x.dtype,
            distribution=distribution,
        )
        value, _, second = forward_laplacian(f, directions=directions)(x)
        return value, second

    return estimate


# operator -> the distributions for which its estimator is unbiased (module docstring)
OPERATORS = {
    "laplacian": ("rademacher", "gaussian", "coordinates"),
    "biharmonic": ("gaussian",),
}


def stochastic_operator(
    f: Callable[[Array], Array],
    *,
    operator: str,
    key: Array,
    num_samples: int,
    distribution: str | None = None,
) -> Callable[[Array], tuple[Array, Array]]:
    """Unbiased randomized estimate of the Laplacian or the biharmonic of f, computed collapsed.

    Args:
        f: function of an array x (any shape, D entries) to an array.
        operator: "laplacian" or "biharmonic".
        key: PRNG key of the random directions (fixed per returned function).
        num_samples: number K of random directions.
        distribution: one of `OPERATORS[operator]`; default its first.

    Returns:
        x -> (value, estimate), both of f(x)'s shape.

    Raises:
        InputError: an unknown operator, a distribution for which the operator's estimator is
            biased (or unknown), a non-positive num_samples.
    """
    if operator not in OPERATORS:
        raise InputError(f"unknown operator {operator!r}; choose one of: {', '.join(OPERATORS)}")
    allowed = OPERATORS[operator]
    distribution = allowed[0] if distribution is None else distribution
    if distribution not in allowed:
        raise InputError(
            f"distribution {distribution!r} gives no unbiased {operator} estimate; "
            f"choose one of: {', '.join(allowed)}"
        )
    if operator == "laplacian":
        return stochastic_laplacian(f, key=key, num_samples=num_samples, distribution=distribution)
    if num_samples < 1:
        raise InputError(f"num_samples={num_samples} must be a positive integer")

    def estimate(x: Array) -> tuple[Array, Array]:
        directions = jax.random.normal(key, (num_samples, *x.shape), x.dtype)
        weights = jnp.full(num_samples, 1 / (3 * num_samples), x.dtype)
        return forward_operator(f, order=4, directions=directions, weights=weights)(x)

    return estimate

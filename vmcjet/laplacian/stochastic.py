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
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from vmcjet.errors import InputError
from vmcjet.laplacian.engine import forward_laplacian

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

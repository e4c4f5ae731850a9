"""Randomized Laplacian: exact for its own directions, unbiased over keys, typed errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet.errors import InputError
from vmcjet.laplacian.stochastic import sample_directions, stochastic_laplacian

DISTRIBUTIONS = ["rademacher", "gaussian", "coordinates"]


def _f(x):
    """Scalar function of x (2, 3) with a dense, indefinite Hessian."""
    return jnp.sum(jnp.tanh(x) * jnp.cos(x[::-1])) + jnp.sum(x[0] * x[1]) ** 2 + jnp.exp(x[0, 0])


X = jnp.linspace(-0.7, 0.9, 6).reshape(2, 3)
HESSIAN = jax.hessian(_f)(X).reshape(6, 6)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_estimate_is_quadratic_form_of_its_directions(distribution):
    key = jax.random.key(3)
    estimator = stochastic_laplacian(_f, key=key, num_samples=4, distribution=distribution)
    value, estimate = jax.jit(estimator)(X)
    directions = sample_directions(
        key=key, num_samples=4, shape=X.shape, dtype=X.dtype, distribution=distribution
    ).reshape(4, 6)
    expected = jnp.einsum("ki,ij,kj->", directions, HESSIAN, directions)
    np.testing.assert_allclose(value, _f(X), rtol=1e-12)
    np.testing.assert_allclose(estimate, expected, rtol=1e-10)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_mean_over_keys_is_the_laplacian(distribution):
    def estimate(key):
        return stochastic_laplacian(_f, key=key, num_samples=2, distribution=distribution)(X)[1]

    keys = jax.random.split(jax.random.key(7), 4000)
    estimates = jax.jit(jax.vmap(estimate))(keys)
    standard_error = jnp.std(estimates) / np.sqrt(len(keys))
    assert standard_error > 0
    assert abs(jnp.mean(estimates) - jnp.trace(HESSIAN)) < 4 * standard_error


def test_bad_arguments_are_input_errors():
    with pytest.raises(InputError, match="unknown distribution 'uniform'"):
        stochastic_laplacian(_f, key=jax.random.key(0), num_samples=2, distribution="uniform")
    with pytest.raises(InputError, match="num_samples=0"):
        stochastic_laplacian(_f, key=jax.random.key(0), num_samples=0)

"""Nested jaxprs and control flow through the collapsed forward Laplacian (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from vmcjet.laplacian import forward_laplacian

X = jnp.linspace(0.15, 0.95, 6)


@jax.custom_vjp
def _sin_custom_vjp(x):
    return jnp.sin(x)


_sin_custom_vjp.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * jnp.cos(x),))


def _scan(x):
    def step(carry, xi):
        carry = jnp.tanh(carry * xi + 0.3)
        return carry, carry * xi

    carry, ys = lax.scan(step, jnp.float64(0.5), x)
    return carry + jnp.sum(ys**2)


def _scan_constant_init(x):
    """The carry starts independent of x and becomes dependent after one step."""
    carry, _ = lax.scan(lambda c, xi: (c * jnp.sin(xi) + xi, None), jnp.ones(()), x, reverse=True)
    return carry


CASES = {
    "jit": lambda x: jax.jit(lambda y: jnp.sum(jnp.exp(y) * y))(x),
    "remat": lambda x: jnp.sum(jax.checkpoint(lambda y: jnp.tanh(y) ** 2)(x)),
    "custom_vjp": lambda x: jnp.sum(_sin_custom_vjp(x) * x),
    "scan": _scan,
    "scan_constant_init": _scan_constant_init,
    "fori_static": lambda x: jnp.sum(lax.fori_loop(0, 3, lambda i, c: jnp.sin(c) * x, x)),
    "fori_dynamic": lambda x: jnp.sum(
        lax.fori_loop(0, jnp.int32(x.shape[0]) - 3, lambda i, c: c * x + 0.1, jnp.ones_like(x))
    ),
    "while": lambda x: lax.while_loop(
        lambda c: c[0] < 4, lambda c: (c[0] + 1, c[1] * jnp.cos(x[c[0]]) + x[0]), (0, 1.0)
    )[1],
    "cond_constant_index": lambda x: lax.cond(
        True, lambda y: jnp.sum(jnp.exp(y)), lambda y: jnp.float64(0), x
    ),
    "cond_dependent_index": lambda x: lax.cond(
        jnp.sum(x) > 100.0, lambda y: jnp.sum(y**2), lambda y: jnp.sum(jnp.sin(y)) * y[0], x
    ),
    "switch": lambda x: lax.switch(1, [jnp.sum, lambda y: jnp.sum(y**3), jnp.max], x),
}
# Forward-mode references cannot differentiate custom_vjp functions: use the plain equivalent.
REFERENCES = {"custom_vjp": lambda x: jnp.sum(jnp.sin(x) * x)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_control_flow_matches_hessian(name):
    f = CASES[name]
    value, first, second = jax.jit(forward_laplacian(f))(X)
    f = REFERENCES.get(name, f)
    np.testing.assert_allclose(value, f(X), rtol=1e-12)
    hessian = jax.jit(jax.jacfwd(jax.jacfwd(f)))(X)  # forward mode: works through while loops
    np.testing.assert_allclose(first, jax.jit(jax.jacfwd(f))(X), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(second, jnp.trace(hessian), rtol=1e-10, atol=1e-12)


def test_chunked_scan_equals_unchunked():
    full = jax.jit(forward_laplacian(_scan))(X)
    chunked = jax.jit(forward_laplacian(_scan, chunk_size=4))(X)
    for a, b in zip(full, chunked, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)

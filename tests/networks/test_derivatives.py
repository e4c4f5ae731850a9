"""Gradient and Laplacian of log|psi| (float64): jax.hessian against central finite differences,
and the collapsed engine (`vmcjet.laplacian.forward_laplacian`) against jax.hessian."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_networks import build, walker

from vmcjet.laplacian import forward_laplacian


def _log_psi(kind, name, **changes):
    wf, params, mol = build(kind, name, **changes)

    def f(flat):
        return wf.apply(params, flat.reshape(-1, 3))[1]

    return f, walker(mol).reshape(-1)


def _hessian_reference(f, x):
    return jax.grad(f)(x), jnp.trace(jax.hessian(f)(x))


@pytest.mark.parametrize("kind", ["ferminet", "psiformer"])
def test_hessian_matches_finite_differences(kind):
    f, x = _log_psi(kind, "LiH", full_determinant=True, jastrow=True)
    grad, lap = jax.jit(_hessian_reference, static_argnums=0)(f, x)
    step = 1e-4
    shifts = step * jnp.eye(x.size, dtype=x.dtype)
    f_batch = jax.jit(jax.vmap(f))
    plus, minus = f_batch(x[None, :] + shifts), f_batch(x[None, :] - shifts)
    np.testing.assert_allclose(grad, (plus - minus) / (2 * step), rtol=1e-6, atol=1e-7)
    lap_fd = jnp.sum(plus + minus - 2 * f(x)) / step**2
    np.testing.assert_allclose(lap, lap_fd, rtol=1e-4)


@pytest.mark.parametrize(
    ("kind", "full", "name", "symmetry"),
    [
        ("ferminet", False, "LiH", ""),
        ("ferminet", True, "N2", ""),
        ("psiformer", True, "LiH", ""),
        ("psiformer", False, "N2", ""),
        ("ferminet", False, "N2", "inversion"),
    ],
)
def test_collapsed_engine_matches_hessian(kind, full, name, symmetry):
    f, x = _log_psi(kind, name, full_determinant=full, symmetry=symmetry)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every primitive of the networks has a collapsed rule
        value, grad, lap = jax.jit(forward_laplacian(f))(x)
    grad_ref, lap_ref = jax.jit(_hessian_reference, static_argnums=0)(f, x)
    np.testing.assert_allclose(value, f(x), rtol=1e-12)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(lap, lap_ref, rtol=1e-9)

"""Cusps of the Psiformer Jastrow factor: dJ/dr_ij -> 1/2 (opposite spins), 1/4 (same spin)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_networks import build, walker

from vmcjet.networks.jastrow import apply_jastrow, pair_masks

PARAMS = {"same": jnp.array(0.3), "opposite": jnp.array(-2.5)}  # arbitrary, signs included


def _radial_derivative(log_f, x, mover, anchor, direction, distance):
    """d/dr of log_f with electron `mover` at distance r from `anchor` along `direction`."""
    u = jnp.asarray(direction / np.linalg.norm(direction))

    def along(r):
        return log_f(x.at[mover].set(x[anchor] + r * u))

    return jax.grad(along)(jnp.asarray(distance))


@pytest.mark.parametrize(("n_alpha", "n_beta", "cusp"), [(2, 0, 0.25), (1, 1, 0.5)])
def test_two_electron_cusp(n_alpha, n_beta, cusp):
    x = jnp.array([[0.1, -0.2, 0.3], [0.0, 0.0, 0.0]])
    for distance in (1e-9, 1e-7):
        slope = _radial_derivative(
            lambda e: apply_jastrow(PARAMS, e, n_alpha, n_beta), x, 1, 0, np.ones(3), distance
        )
        np.testing.assert_allclose(slope, cusp, rtol=1e-6)
    far = _radial_derivative(
        lambda e: apply_jastrow(PARAMS, e, n_alpha, n_beta), x, 1, 0, np.ones(3), 3.0
    )
    a = abs(float(PARAMS["same" if n_beta == 0 else "opposite"]))
    np.testing.assert_allclose(far, cusp * a * a / (a + 3.0) ** 2, rtol=1e-12)


def test_jastrow_counts_each_pair_once_with_its_spin():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)))
    r = np.linalg.norm(np.asarray(x)[:, None] - np.asarray(x)[None], axis=-1)
    a, b = 0.3, 2.5
    expected = 0.0
    for i in range(4):
        for j in range(i + 1, 4):
            same = (i < 2) == (j < 2)
            expected += -0.25 * a * a / (a + r[i, j]) if same else -0.5 * b * b / (b + r[i, j])
    np.testing.assert_allclose(apply_jastrow(PARAMS, x, 2, 2), expected, rtol=1e-13)
    same, opposite = pair_masks(2, 2)
    assert same.sum() == 2 and opposite.sum() == 4


def test_psiformer_log_psi_has_the_opposite_spin_cusp():
    """Averaging the radial slope over two opposite directions cancels the smooth network part."""
    wf, params, mol = build("psiformer", "LiH")
    x = walker(mol)

    def log_psi(e):
        return wf.apply(params, e)[1]

    direction = np.array([0.3, -0.5, 0.8])
    slopes = [
        _radial_derivative(log_psi, x, mol.n_alpha, 0, sign * direction, 1e-7) for sign in (1, -1)
    ]
    np.testing.assert_allclose(np.mean(slopes), 0.5, atol=1e-5)

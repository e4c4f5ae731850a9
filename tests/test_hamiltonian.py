"""Local energy of exact hydrogen-like wavefunctions and the Coulomb potential against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet.errors import InputError
from vmcjet.hamiltonian import make_local_energy, make_nuclei, potential_energy


def hydrogen_like(params, electrons):
    """(sign, log|psi|) of the 1s orbital exp(-Z r) of a nucleus at the origin; params = Z."""
    return jnp.ones(()), -params * jnp.linalg.norm(electrons[0])


def random_walkers(seed, shape, scale=1.5):
    return np.random.default_rng(seed).normal(scale=scale, size=shape)


@pytest.mark.parametrize("method", ["hessian", "loop", "collapsed"])
@pytest.mark.parametrize("charge, exact", [(1.0, -0.5), (2.0, -2.0)])
def test_hydrogen_like_local_energy_is_exact(method, charge, exact):
    local_energy = make_local_energy(
        hydrogen_like, np.zeros((1, 3)), np.array([charge]), method=method
    )
    walkers = jnp.asarray(random_walkers(0, (16, 1, 3)))
    energies = jax.jit(local_energy)(jnp.asarray(charge), walkers)
    assert energies.shape == (16,)
    assert energies.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(energies), exact, atol=1e-8)


def test_wrong_exponent_gives_position_dependent_energy():
    # exp(-0.8 r) for hydrogen: E_L = -alpha^2/2 + (alpha - 1)/r, not constant.
    local_energy = make_local_energy(hydrogen_like, np.zeros((1, 3)), np.ones(1), method="hessian")
    walkers = jnp.asarray(random_walkers(1, (8, 1, 3)))
    r = np.linalg.norm(np.asarray(walkers)[:, 0], axis=-1)
    expected = -0.5 * 0.8**2 + (0.8 - 1.0) / r
    energies = local_energy(jnp.asarray(0.8), walkers)
    np.testing.assert_allclose(np.asarray(energies), expected, rtol=1e-10)


def potential_double_loop(electrons, atoms, charges):
    energy = 0.0
    n = len(electrons)
    for i in range(n):
        for j in range(i + 1, n):
            energy += 1.0 / np.linalg.norm(electrons[i] - electrons[j])
        for a, z in zip(atoms, charges, strict=True):
            energy -= z / np.linalg.norm(electrons[i] - a)
    for a in range(len(atoms)):
        for b in range(a + 1, len(atoms)):
            energy += charges[a] * charges[b] / np.linalg.norm(atoms[a] - atoms[b])
    return energy


def test_potential_energy_matches_double_loop():
    atoms = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 3.015], [1.0, -2.0, 0.5]])
    charges = np.array([3.0, 1.0, 2.0])
    electrons = random_walkers(2, (6, 3))
    value = potential_energy(jnp.asarray(electrons), make_nuclei(atoms, charges))
    np.testing.assert_allclose(float(value), potential_double_loop(electrons, atoms, charges))


def test_potential_energy_gradient_is_finite():
    nuclei = make_nuclei(np.zeros((1, 3)), np.array([2.0]))
    grad = jax.grad(potential_energy)(jnp.asarray(random_walkers(3, (2, 3))), nuclei)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_local_energy_includes_nuclear_repulsion_and_keeps_float32():
    atoms = np.array([[0.0, 0.0, -0.7], [0.0, 0.0, 0.7]])
    local_energy = make_local_energy(hydrogen_like, atoms, np.ones(2), method="hessian")
    walkers = jnp.asarray(random_walkers(4, (4, 1, 3)), dtype=jnp.float32)
    energies = local_energy(jnp.asarray(1.0, dtype=jnp.float32), walkers)
    assert energies.dtype == jnp.float32
    electrons = np.asarray(walkers, dtype=np.float64)
    kinetic = -0.5 + 1.0 / np.linalg.norm(electrons[:, 0], axis=-1)  # -(1/2) lap exp(-r) / exp(-r)
    potential = [potential_double_loop(e, atoms, np.ones(2)) for e in electrons]
    np.testing.assert_allclose(np.asarray(energies), kinetic + potential, rtol=1e-4)


def test_bad_nuclei_shapes_raise_input_error():
    with pytest.raises(InputError, match="n_atoms"):
        make_local_energy(hydrogen_like, np.zeros((2, 3)), np.ones(3))

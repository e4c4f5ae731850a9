"""The Metropolis sampler on a Gaussian |psi|^2 with known moments; width adaptation; walkers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet.distributed import make_walker_mesh, walker_sharding
from vmcjet.errors import InputError
from vmcjet.mcmc import assign_electrons, init_state, init_walkers, make_mcmc_step
from vmcjet.molecule import Molecule

CENTRE = np.array([0.5, -1.0, 2.0])
SIGMA = 0.7


def gaussian_log_psi(params, electrons):
    """|psi|^2 = prod N(centre + params, SIGMA^2) over all coordinates."""
    return -jnp.sum((electrons - (CENTRE + params)[None]) ** 2) / (4 * SIGMA**2)


def run(step, params, state, n_steps, seed):
    run_steps = jax.jit(
        lambda s, k: jax.lax.fori_loop(
            0, n_steps, lambda i, s: step(params, s, key=jax.random.fold_in(k, i))[0], s
        )
    )
    return run_steps(state, jax.random.key(seed))


def test_samples_gaussian_moments():
    batch, n = 1024, 2
    params = jnp.zeros(3)
    state = init_state(gaussian_log_psi, params, jnp.zeros((batch, n, 3)), width=0.3)
    state = run(make_mcmc_step(gaussian_log_psi, moves=5), params, state, 60, seed=0)
    samples = np.asarray(state.walkers).reshape(-1, 3)  # independent chains at one time
    count = samples.shape[0]
    np.testing.assert_allclose(samples.mean(0), CENTRE, atol=4 * SIGMA / np.sqrt(count))
    np.testing.assert_allclose(samples.var(0), SIGMA**2, atol=4 * SIGMA**2 * np.sqrt(2 / count))
    np.testing.assert_allclose(
        np.asarray(state.log_abs_psi), jax.vmap(gaussian_log_psi, (None, 0))(params, state.walkers)
    )


@pytest.mark.parametrize("width", [0.01, 3.0])
def test_width_adapts_towards_target_acceptance(width):
    params = jnp.zeros(3)
    state = init_state(gaussian_log_psi, params, jnp.full((256, 2, 3), CENTRE), width=width)
    step = make_mcmc_step(gaussian_log_psi, moves=2, target_acceptance=0.5, max_width=5.0)
    first = step(params, state, key=jax.random.key(1))[1]
    final = run(step, params, state, 40, seed=2)
    assert abs(float(first) - 0.5) > 0.3
    assert abs(float(final.acceptance) - 0.5) < 0.1


def test_step_recomputes_log_psi_after_parameter_change():
    state = init_state(gaussian_log_psi, jnp.zeros(3), jnp.zeros((8, 1, 3)), width=0.1)
    new_params = jnp.ones(3)
    state, _ = make_mcmc_step(gaussian_log_psi, moves=1, adapt_rate=0.0)(
        new_params, state, key=jax.random.key(0)
    )
    expected = jax.vmap(gaussian_log_psi, (None, 0))(new_params, state.walkers)
    np.testing.assert_allclose(np.asarray(state.log_abs_psi), np.asarray(expected))
    assert float(state.width) == pytest.approx(0.1)


@pytest.mark.multidevice
def test_same_key_same_walkers_and_sharded_walkers_agree():
    params = jnp.zeros(3)
    walkers = init_walkers(molecule("LiH", [3.0, 1.0]), 8, key=jax.random.key(3), dtype=jnp.float64)
    state = init_state(gaussian_log_psi, params, walkers, width=0.2)
    step = jax.jit(make_mcmc_step(gaussian_log_psi, moves=3))
    sharded = jax.device_put(walkers, walker_sharding(make_walker_mesh()))
    a = step(params, state, key=jax.random.key(4))[0]
    b = step(params, state._replace(walkers=sharded), key=jax.random.key(4))[0]
    c = step(params, state, key=jax.random.key(5))[0]
    np.testing.assert_allclose(np.asarray(a.walkers), np.asarray(b.walkers), rtol=1e-12)
    assert not np.allclose(np.asarray(a.walkers), np.asarray(c.walkers))


def molecule(name, charges, charge=0, spin=0):
    coords = np.array([[0.0, 0.0, 3.0 * i] for i in range(len(charges))])
    symbols = tuple("X" for _ in charges)
    return Molecule(name, symbols, coords, np.array(charges, float), charge=charge, spin=spin)


@pytest.mark.parametrize(
    "charges, charge, spin, alpha_per_atom, beta_per_atom",
    [
        ([1.0, 1.0], 0, 0, [1, 0], [0, 1]),  # H2
        ([3.0, 1.0], 0, 0, [2, 0], [1, 1]),  # LiH
        ([3.0, 1.0], 1, 1, [1, 1], [1, 0]),  # LiH+: Li loses an electron
        ([1.0], -1, 0, [1], [1]),  # H-
        ([8.0, 8.0], 0, 2, [5, 4], [3, 4]),  # triplet O2
        ([7.0, 7.0], 0, 0, [4, 3], [3, 4]),  # N2
        ([4.0], 0, 0, [2], [2]),  # Be
    ],
)
def test_assign_electrons(charges, charge, spin, alpha_per_atom, beta_per_atom):
    alpha, beta = assign_electrons(molecule("m", charges, charge, spin))
    assert np.bincount(alpha, minlength=len(charges)).tolist() == alpha_per_atom
    assert np.bincount(beta, minlength=len(charges)).tolist() == beta_per_atom


def test_init_walkers_around_assigned_nuclei():
    mol = molecule("LiH", [3.0, 1.0])
    walkers = init_walkers(mol, 4000, key=jax.random.key(0), spread=0.5, dtype=jnp.float64)
    assert walkers.shape == (4000, 4, 3) and walkers.dtype == jnp.float64
    mean = np.asarray(walkers).mean(0)
    np.testing.assert_allclose(mean[:, 2], [0.0, 0.0, 0.0, 3.0], atol=0.05)
    np.testing.assert_allclose(np.asarray(walkers).std(0), 0.5, atol=0.03)


def test_impossible_spin_raises():
    with pytest.raises(InputError, match="spin"):
        assign_electrons(molecule("He", [2.0], spin=1))
    with pytest.raises(InputError, match="moves"):
        make_mcmc_step(gaussian_log_psi, moves=0)

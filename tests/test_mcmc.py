"""The Metropolis-Hastings sampler on targets with known moments (Gaussian, hydrogen-like 1s),
with and without the Hastings ratio; nucleus-scaled widths; width adaptation; walkers."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet import mcmc
from vmcjet.config import Config, validate
from vmcjet.distributed import make_walker_mesh, walker_sharding
from vmcjet.errors import InputError
from vmcjet.mcmc import (
    assign_electrons,
    core_electrons,
    init_state,
    init_walkers,
    limited_drift,
    make_mcmc_step,
    nucleus_scaled_widths,
)
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


Z_CORE = 8.0  # hydrogen-like 1s target: |psi|^2 = exp(-2 Z r), a heavy-atom core
SIGMAS = np.array([0.3, 0.7, 1.2])  # anisotropic Gaussian target, bohr


def hydrogen_like_log_psi(params, electrons):
    """log|psi| = -Z r summed over electrons; r ~ Gamma(3, 1/(2Z)): <r> = 3/(2Z), <r^2> = 3/Z^2."""
    return -Z_CORE * jnp.sum(jnp.linalg.norm(electrons, axis=-1))


def anisotropic_log_psi(params, electrons):
    """|psi|^2 = prod N(centre, SIGMAS^2) over electrons and axes."""
    return -jnp.sum(((electrons - CENTRE[None]) / SIGMAS[None]) ** 2) / 4


def drop_hastings(monkeypatch):
    """The wrong kernel: log q(r -> r') constant, so the acceptance assumes a symmetric proposal."""
    monkeypatch.setattr(
        mcmc, "log_proposal_density", lambda target, mean, scale: jnp.zeros(target.shape[0])
    )


def z_scores(samples, mean, variance):
    """(sample mean - mean) / standard error, independent samples (S,) or (S, k)."""
    return (samples.mean(0) - mean) / np.sqrt(variance / samples.shape[0])


def test_widths_smaller_near_heavy_nucleus():
    nuclei = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 4.0]])  # H, O
    charges = np.array([1.0, 8.0])
    # Each electron 0.2 bohr from one nucleus, and one far from both.
    electrons = jnp.array([[[0.2, 0.0, 0.0], [0.0, 0.2, 4.0], [0.0, 0.0, 3.8], [5.0, 0.0, 2.0]]])
    widths = np.asarray(nucleus_scaled_widths(electrons, nuclei, charges, jnp.asarray(0.5)))[0]
    np.testing.assert_allclose(widths, [0.5, 0.5 * 0.325, 0.5 * 0.325, 0.5])
    core = core_electrons(electrons, nuclei, charges)  # the two nearest the O nucleus
    assert np.asarray(core).tolist() == [[False, True, True, False]]


def test_drift_limit():
    """Small drifts unchanged, large ones bounded by sqrt(2 tau) / tau, non-finite ones zero."""
    tau = jnp.array([[0.01, 0.01, 0.01]])
    grad = jnp.array([[[1e-3, 0.0, 0.0], [0.0, 1e6, 0.0], [jnp.inf, 0.0, 0.0]]])
    drift = np.asarray(limited_drift(grad, tau))[0]
    np.testing.assert_allclose(drift[0], [1e-3, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(drift[1], [0.0, np.sqrt(2 / 0.01), 0.0], rtol=1e-3)
    np.testing.assert_array_equal(drift[2], 0.0)


@pytest.mark.parametrize("hastings", [True, False])
@pytest.mark.parametrize("proposal", ["nucleus-scaled", "langevin"])
def test_samples_hydrogen_like_core(proposal, hastings, monkeypatch):
    """Position-dependent widths (and drift) sample exp(-2 Z r) only with the Hastings ratio."""
    if not hastings:
        drop_hastings(monkeypatch)
    start = 0.2 * jax.random.normal(jax.random.key(0), (2048, 2, 3))
    state = init_state(hydrogen_like_log_psi, None, start, width=0.2)
    step = make_mcmc_step(
        hydrogen_like_log_psi,
        moves=10,
        proposal=proposal,
        nuclei=np.zeros((1, 3)),
        charges=np.array([Z_CORE]),
    )
    state = run(step, None, state, 40, seed=1)
    r = np.linalg.norm(np.asarray(state.walkers), axis=-1).reshape(-1)
    scores = [
        z_scores(r, 3 / (2 * Z_CORE), 3 / (4 * Z_CORE**2)),
        z_scores(r**2, 3 / Z_CORE**2, 13.5 / Z_CORE**4),
    ]
    assert (max(abs(z) for z in scores) < 4) == hastings, scores


@pytest.mark.parametrize("hastings", [True, False])
def test_langevin_samples_anisotropic_gaussian(hastings, monkeypatch):
    """MALA needs the reverse-proposal density (drift at r') in the acceptance."""
    if not hastings:
        drop_hastings(monkeypatch)
    state = init_state(anisotropic_log_psi, None, jnp.full((2048, 2, 3), CENTRE), width=0.5)
    step = make_mcmc_step(anisotropic_log_psi, moves=10, proposal="langevin", adapt_rate=0.0)
    state = run(step, None, state, 30, seed=2)
    samples = np.asarray(state.walkers).reshape(-1, 3)
    scores = np.concatenate(
        [
            z_scores(samples, CENTRE, SIGMAS**2),
            z_scores((samples - CENTRE) ** 2, SIGMAS**2, 2 * SIGMAS**4),
        ]
    )
    assert (np.max(np.abs(scores)) < 4) == hastings, scores


def test_unknown_proposal_and_missing_nuclei_raise():
    with pytest.raises(InputError, match="gaussian, nucleus-scaled, langevin"):
        make_mcmc_step(gaussian_log_psi, moves=1, proposal="hmc")
    with pytest.raises(InputError, match="needs the nuclei"):
        make_mcmc_step(gaussian_log_psi, moves=1, proposal="nucleus-scaled")
    config = Config()
    config = dataclasses.replace(config, mcmc=dataclasses.replace(config.mcmc, proposal="hmc"))
    with pytest.raises(InputError, match="'mcmc.proposal' must be one of gaussian, nucleus-scaled"):
        validate(config)


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

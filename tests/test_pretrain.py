"""Pretraining to Hartree-Fock orbitals: target layout, mixture density, loss decrease on H2."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet.config import FermiNetConfig, NetworkConfig, PretrainConfig
from vmcjet.hartree_fock import hf_orbitals, run_hartree_fock
from vmcjet.mcmc import init_walkers
from vmcjet.molecule import load_molecule
from vmcjet.networks import make_wavefunction
from vmcjet.pretrain import (
    block_diagonal_target,
    mixture_log_abs_psi,
    orbital_loss,
    pretrain,
    should_stop,
)


def test_block_diagonal_target_layout():
    alpha = jnp.arange(8.0).reshape(2, 2, 2) + 1
    beta = -jnp.arange(2.0).reshape(2, 1, 1) - 1
    target = np.asarray(block_diagonal_target(alpha, beta))
    assert target.shape == (2, 3, 3)
    np.testing.assert_array_equal(target[:, :2, :2], alpha)
    np.testing.assert_array_equal(target[:, 2:, 2:], beta)
    assert np.all(target[:, :2, 2:] == 0) and np.all(target[:, 2:, :2] == 0)


def test_mixture_density_is_the_average_of_both():
    def hf_fn(x):  # psi_HF = x00 * x11 (1 alpha, 1 beta)
        return x[:1, :1], x[1:, 1:2]

    log_net = lambda params, x: params * jnp.sum(x)
    electrons = jnp.asarray([[0.3, -1.2, 0.5], [2.0, 0.7, 0.1]])
    value = mixture_log_abs_psi(log_net, hf_fn)(jnp.asarray(0.4), electrons)
    hf = 0.3 * 0.7
    net = np.exp(0.4 * float(jnp.sum(electrons)))
    assert float(value) == pytest.approx(0.5 * np.log((hf**2 + net**2) / 2))


@pytest.fixture(scope="module")
def h2_setup():
    molecule = load_molecule("H2")
    config = NetworkConfig(determinants=2, ferminet=FermiNetConfig(16, 4, 2))
    wavefunction = make_wavefunction(config, molecule)
    params = wavefunction.init(key=jax.random.key(0), dtype=jnp.float64)
    walkers = init_walkers(molecule, 32, key=jax.random.key(1), dtype=jnp.float64)
    return wavefunction, run_hartree_fock(molecule, basis="sto-3g"), params, walkers


def test_h2_orbital_loss_decreases_substantially(h2_setup):
    wavefunction, hf, params, walkers = h2_setup
    config = PretrainConfig(iterations=40, lr=1e-2, moves=2)
    key = jax.random.key(2)
    history = list(pretrain(wavefunction, hf, params, walkers, key=key, config=config))
    assert [item[0] for item in history] == list(range(40))
    final_params, final_walkers = history[-1][1], history[-1][2]
    assert final_walkers.shape == walkers.shape
    # Compare both parameter sets on the same fresh walkers, so sampling noise cannot fake it.
    targets = block_diagonal_target(*hf_orbitals(hf, final_walkers))
    loss = functools.partial(orbital_loss, wavefunction.orbitals)
    before = float(loss(params, final_walkers, targets))
    after = float(loss(final_params, final_walkers, targets))
    assert after < 0.2 * before
    losses = np.array([float(item[3]) for item in history])
    assert np.all(np.isfinite(losses)) and losses[-5:].mean() < 0.3 * losses[:5].mean()


def test_zero_iterations_yield_nothing(h2_setup):
    wavefunction, hf, params, walkers = h2_setup
    config = dataclasses.replace(PretrainConfig(), iterations=0)
    key = jax.random.key(0)
    assert list(pretrain(wavefunction, hf, params, walkers, key=key, config=config)) == []


def _stopping_point(losses, *, window, tolerance, patience=3):
    """How many iterations run when the caller stops as session._pretrain does."""
    seen = []
    for loss in losses:
        seen.append(loss)
        if should_stop(seen, window=window, tolerance=tolerance, patience=patience):
            break
    return len(seen)


def test_early_stop_on_a_plateau():
    """Falls for 300 iterations, then flat with noise and rare 10x spikes: stops 3 windows after
    the plateau begins."""
    rng = np.random.default_rng(0)
    falling = 0.98 ** np.arange(300)
    flat = falling[-1] * (1 + 0.05 * rng.standard_normal(2000))
    flat[rng.random(2000) < 0.03] *= 10
    count = _stopping_point(np.concatenate([falling, flat]), window=50, tolerance=0.02)
    assert count % 50 == 0 and 400 <= count <= 500


def test_no_early_stop_while_the_loss_keeps_improving():
    """A loss falling steadily by 5% per window of 50 (noisy, with 10x spikes) runs to the
    maximum; so does a flat one with tolerance 0."""
    rng = np.random.default_rng(1)
    steady = 0.999 ** np.arange(3000) * (1 + 0.2 * rng.standard_normal(3000) ** 2)
    steady[rng.random(3000) < 0.03] *= 10
    assert _stopping_point(steady, window=50, tolerance=0.02) == 3000
    assert _stopping_point(np.ones(500), window=50, tolerance=0.0) == 500


def test_early_stop_decides_only_at_window_ends_after_patience():
    flat = [jnp.asarray(1.0)] * 45  # device scalars are accepted
    options = {"window": 10, "tolerance": 0.1, "patience": 3}
    assert not should_stop(flat[:30], **options)  # fewer than patience + 1 windows
    assert not should_stop(flat[:41], **options)  # not at a window end
    assert should_stop(flat[:40], **options)
    falling = [0.5**k for k in range(4) for _ in range(10)]
    assert not should_stop(falling, **options)

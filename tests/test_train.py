"""The optimisation step: energies, non-finite walkers excluded and counted, non-finite updates
skipped, and the driver stopping after K consecutive skipped steps with its checkpoint intact."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet import checkpoint, cli, mcmc, optim
from vmcjet.config import Config, LaplacianConfig, McmcConfig
from vmcjet.molecule import load_molecule
from vmcjet.networks import Wavefunction
from vmcjet.train import TrainState, make_train_step, masked_moments

NAN_BEYOND = 1.5  # bohr: log|psi| is NaN for electrons with x > NAN_BEYOND


def hydrogen_with_traps() -> Wavefunction:
    """psi = exp(-alpha r) for one electron, NaN beyond x > 1.5 bohr, and a parameter `s` whose
    gradient is NaN at s = 0 (0 * sqrt(s)): s = 0 makes every update non-finite."""

    def init(*, key, dtype=jnp.float64):
        del key
        return {"alpha": jnp.asarray(0.8, dtype), "s": jnp.asarray(1.0, dtype)}

    def apply(params, electrons):
        r = jnp.sqrt(jnp.sum(electrons[0] ** 2))
        log = -params["alpha"] * r + 0.0 * jnp.sqrt(params["s"])
        log = jnp.where(electrons[0, 0] > NAN_BEYOND, jnp.nan, log)
        return jnp.ones((), electrons.dtype), log

    return Wavefunction(init, apply, lambda params, electrons: None)


def make_state(wavefunction, config, walkers, params):
    log_psi = lambda p, x: wavefunction.apply(p, x)[1]
    return TrainState(
        params=params,
        opt_state=optim.make_optimiser(config.optim).init(params),
        sampler=mcmc.init_state(log_psi, params, walkers, width=0.01),
        step=jnp.zeros((), jnp.int32),
    )


@pytest.fixture
def setup():
    config = Config(
        batch_size=16,
        laplacian=LaplacianConfig(method="hessian"),
        mcmc=McmcConfig(moves=1, width=0.01),
    )
    molecule = load_molecule("H")
    wavefunction = hydrogen_with_traps()
    walkers = jax.random.normal(jax.random.key(1), (16, 1, 3), jnp.float64) * 0.3
    walkers = walkers.at[:3, 0, 0].set(2.0)  # three walkers where log|psi| is NaN
    step = jax.jit(make_train_step(wavefunction, molecule, config))
    return config, wavefunction, walkers, step


def test_masked_moments():
    values = jnp.array([1.0, 2.0, jnp.nan, 3.0])
    mean, variance = masked_moments(values, jnp.isfinite(values))
    assert float(mean) == pytest.approx(2.0) and float(variance) == pytest.approx(2.0 / 3.0)


def test_nonfinite_walkers_are_excluded_and_counted(setup):
    config, wavefunction, walkers, step = setup
    params = wavefunction.init(key=None)
    state, stats = step(
        make_state(wavefunction, config, walkers, params), root_key=jax.random.key(0)
    )
    assert int(stats.nonfinite) == 3 and int(stats.skipped) == 0
    assert np.isfinite(float(stats.energy))
    # exp(-0.8 r) has E_L = -alpha^2/2 + (alpha - 1)/r: mean over the 13 finite walkers
    r = np.linalg.norm(np.asarray(state.sampler.walkers[3:, 0]), axis=-1)
    assert float(stats.energy) == pytest.approx(np.mean(-0.32 + (0.8 - 1.0) / r), rel=1e-10)
    assert float(state.params["alpha"]) != 0.8  # the finite walkers still drive an update


def test_nonfinite_update_is_skipped(setup):
    config, wavefunction, walkers, step = setup
    params = {**wavefunction.init(key=None), "s": jnp.zeros((), jnp.float64)}
    before = make_state(wavefunction, config, walkers, params)
    state, stats = step(before, root_key=jax.random.key(0))
    assert int(stats.skipped) == 1
    assert float(state.params["alpha"]) == 0.8 and float(state.params["s"]) == 0.0
    for old, new in zip(
        jax.tree_util.tree_leaves(before.opt_state),
        jax.tree_util.tree_leaves(state.opt_state),
        strict=True,
    ):
        np.testing.assert_array_equal(old, new)
    assert int(state.step) == 1  # the walkers and the step counter still advance


def test_run_stops_after_consecutive_skipped_steps(tmp_path, monkeypatch, capsys):
    trapped = hydrogen_with_traps()
    always_nan = Wavefunction(
        lambda *, key, dtype=jnp.float64: {
            **trapped.init(key=key, dtype=dtype),
            "s": jnp.zeros((), dtype),
        },
        trapped.apply,
        trapped.orbitals,
    )
    monkeypatch.setattr("vmcjet.session.make_wavefunction", lambda *args: always_nan)
    folder = tmp_path / "run"
    argv = [
        "run",
        "--molecule",
        "H",
        "--steps",
        "50",
        "--batch-size",
        "8",
        "--out",
        str(folder),
        "--set",
        "pretrain.iterations=0",
        "--set",
        "checkpoint.max_skipped_steps=3",
        "--set",
        "mcmc.burn_in=2",
        "--set",
        "precision=float64",
        "--set",
        "optim.optimizer=spring",  # the trap wavefunction records no layers for KFAC
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "3 consecutive steps had non-finite updates" in err
    restored = checkpoint.load_checkpoint(
        checkpoint.list_checkpoints(folder / "checkpoints")[-1],
        like=jax.tree_util.tree_map(np.asarray, _template(always_nan)),
    )
    assert restored.step == 0


def _template(wavefunction):
    config = dataclasses.replace(Config(), batch_size=8)
    walkers = jnp.zeros((8, 1, 3), jnp.float64)
    state = make_state(wavefunction, config, walkers, wavefunction.init(key=None))
    return state

"""`matmul_precision` reaches every matrix product of the local energy, the gradients and the
optimiser update in the lowered program (StableHLO keeps the precision config; compiled CPU
HLO may turn dots into library calls), and leaves the sampler at JAX's default."""

import re

import jax
import jax.numpy as jnp
import pytest

from vmcjet import mcmc
from vmcjet.config import build_config, validate
from vmcjet.errors import InputError
from vmcjet.molecule import load_molecule
from vmcjet.networks import make_wavefunction
from vmcjet.step_parts import make_step_parts

_DOT_PRECISION = re.compile(r"stablehlo\.dot_general[^\n]*precision = \[(\w+), (\w+)\]")


def dot_precisions(lowered) -> set[str]:
    """The precisions of all dot products of a lowered program (both operands)."""
    found = _DOT_PRECISION.findall(lowered.as_text())
    assert found, "no dot product in the program"
    return {p for pair in found for p in pair}


@pytest.mark.parametrize("optimizer", ["spring", "kfac"])
@pytest.mark.parametrize("setting, expected", [("highest", "HIGHEST"), ("default", "DEFAULT")])
def test_setting_reaches_every_dot_of_the_step_but_sampling(optimizer, setting, expected):
    config = build_config(
        overrides={
            "system": {"molecule": "LiH"},
            "batch_size": 4,
            "matmul_precision": setting,
            "optim": {"optimizer": optimizer},
            "network": {"determinants": 1, "ferminet": {"hidden_one": 8, "hidden_two": 4}},
        }
    )
    molecule = load_molecule("LiH")
    wavefunction = make_wavefunction(config.network, molecule)
    params = wavefunction.init(key=jax.random.key(0), dtype=jnp.float32)
    walkers = jax.random.normal(jax.random.key(1), (4, molecule.n_electrons, 3), jnp.float32)
    parts = make_step_parts(wavefunction, molecule, config)
    local_energy = jax.jit(parts.local_energy).lower(params, walkers)
    residuals, finite = jnp.zeros(4, jnp.float32), jnp.ones(4, bool)
    batch = jax.eval_shape(parts.gradient_batch, params, walkers, residuals, finite)
    gradients = jax.jit(parts.gradient_batch).lower(params, walkers, residuals, finite)
    state = parts.optimiser.init(params)
    update = jax.jit(parts.optimiser.update).lower(batch, state, params)
    for lowered in (local_energy, gradients, update):
        assert dot_precisions(lowered) == {expected}
    log_abs_psi = lambda p, x: wavefunction.apply(p, x)[1]
    sampler = mcmc.init_state(log_abs_psi, params, walkers, width=0.1)
    sample = jax.jit(parts.sample).lower(params, sampler, key=jax.random.key(2))
    assert dot_precisions(sample) == {"DEFAULT"}


def test_unknown_setting_is_an_input_error():
    with pytest.raises(InputError, match="matmul_precision"):
        validate(build_config(overrides={"matmul_precision": "tf32"}))

"""The VMC optimisation loop: a pure step function and a generator of (step, state, stats).

One optimisation step t, with key_t = fold_in(root_key, t) (so a step's randomness depends only on
the seed and t: exact restarts, walkers independent of the device count):
    1. `mcmc.moves` Metropolis moves of every walker on |psi|^2;
    2. local energies E_L (hartree) of the walkers; walkers whose E_L or log|psi| is non-finite are
       excluded from the energy and the gradient, and counted;
    3. per-walker gradients of log|psi| w.r.t. the parameters and residuals of the clipped local
       energies (clipping only for the gradient; the reported energy is unclipped);
    4. the optimiser's update (SPRING, KFAC or Adam; KFAC also reads per-layer records, see
       `log_psi_gradients.layer_records`); an update that is not finite is skipped (parameters
       and optimiser state unchanged) and counted.
The parts (sampler, local energy, gradient batch, in walker chunks) come from `step_parts`. The
generator `optimise` only runs steps; I/O (stats, checkpoints, signals) belongs to the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from vmcjet import mcmc, optim
from vmcjet.config import Config
from vmcjet.molecule import Molecule
from vmcjet.networks import Wavefunction
from vmcjet.step_parts import make_step_parts, quadrature_rotations

Params = Any


class TrainState(NamedTuple):
    """Everything a run needs to continue exactly (this is what a checkpoint stores).

    Attributes:
        params: network parameters (pytree).
        opt_state: optimiser state (pytree).
        sampler: MCMC state (walkers (B, n, 3) bohr, their log|psi|, proposal width).
        step: number of optimisation steps done, int32 scalar.
    """

    params: Params
    opt_state: Any
    sampler: mcmc.McmcState
    step: jax.Array


class StepStats(NamedTuple):
    """Scalars of one step: energy (hartree), variance (hartree^2), acceptance, width (bohr),
    nonfinite (walkers excluded), skipped (1 if the update was skipped). A step without any
    finite walker, or with a non-finite energy or variance, is skipped and its energy and
    variance are NaN (never the 0 of an empty mean)."""

    energy: jax.Array
    variance: jax.Array
    acceptance: jax.Array
    width: jax.Array
    nonfinite: jax.Array
    skipped: jax.Array


def masked_moments(values: jax.Array, finite: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of `values` (B,) over the entries where `finite` (B,) is True."""
    count = jnp.maximum(jnp.sum(finite.astype(values.dtype)), 1.0)
    safe = jnp.where(finite, values, 0.0)
    mean = jnp.sum(safe) / count
    variance = jnp.sum(jnp.where(finite, (values - mean) ** 2, 0.0)) / count
    return mean, variance


def _tree_all_finite(tree: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def _energy_residuals(local_energies: jax.Array, finite: jax.Array, clip_width: float) -> jax.Array:
    """Clipped, centred local energies for the gradient; zero for excluded walkers. Shape (B,)."""
    mean, _ = masked_moments(local_energies, finite)
    filled = jnp.where(finite, local_energies, mean)
    clipped = optim.clip_local_energies(filled, clip_width)
    centred = clipped - masked_moments(clipped, finite)[0]
    return jnp.where(finite, centred, 0.0)


def make_train_step(
    wavefunction: Wavefunction, molecule: Molecule, config: Config
) -> Callable[..., tuple[TrainState, StepStats]]:
    """Returns `step(state, *, root_key) -> (state, stats)`, pure and jittable."""
    optimiser, sample, local_energy, gradient_batch = make_step_parts(
        wavefunction, molecule, config
    )

    def step(state: TrainState, *, root_key: jax.Array) -> tuple[TrainState, StepStats]:
        key = jax.random.fold_in(root_key, state.step)
        sampler, acceptance = sample(state.params, state.sampler, key=key)
        rotations = quadrature_rotations(molecule, config.seed, "ecp", state.step, sampler.walkers)
        energies = local_energy(state.params, sampler.walkers, rotations)
        finite = jnp.isfinite(energies) & jnp.isfinite(sampler.log_abs_psi)
        energy, variance = masked_moments(energies, finite)
        residuals = _energy_residuals(energies, finite, config.optim.clip_width)
        batch = gradient_batch(state.params, sampler.walkers, residuals, finite)
        updates, opt_state = optimiser.update(batch, state.opt_state, state.params)
        # No finite walker (or a non-finite energy or variance): nothing was measured, skip.
        measured = jnp.any(finite) & jnp.isfinite(energy) & jnp.isfinite(variance)
        ok = measured & _tree_all_finite(updates) & _tree_all_finite(opt_state)
        params = jax.tree_util.tree_map(lambda p, u: jnp.where(ok, p + u, p), state.params, updates)
        opt_state = jax.tree_util.tree_map(
            lambda new, old: jnp.where(ok, new, old), opt_state, state.opt_state
        )
        new_state = TrainState(params, opt_state, sampler, state.step + 1)
        stats = StepStats(
            energy=jnp.where(measured, energy, jnp.nan),
            variance=jnp.where(measured, variance, jnp.nan),
            acceptance=acceptance,
            width=sampler.width,
            nonfinite=jnp.sum(~finite),
            skipped=(~ok).astype(jnp.int32),
        )
        return new_state, stats

    return step


def optimise(
    step_fn: Callable[..., tuple[TrainState, StepStats]],
    state: TrainState,
    *,
    root_key: jax.Array,
    total_steps: int,
) -> Iterator[tuple[int, TrainState, StepStats]]:
    """Runs steps until `total_steps` are done, yielding (step index, state after it, stats)."""
    step = int(state.step)
    while step < total_steps:
        state, stats = step_fn(state, root_key=root_key)
        yield step, state, stats
        step += 1

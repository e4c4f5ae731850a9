"""Time of one optimisation step split into sampling, local energy, and gradient + update.

Each part is compiled on its own and timed after compilation; the parts are called in turn
(interleaved) `repeats` times and the medians reported, with the whole jitted step for comparison
(it can be faster than the sum: XLA fuses across the parts). `vmcjet bench step` calls `run`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax

from vmcjet import optim
from vmcjet.config import Config
from vmcjet.session import initial_state, open_session, run_molecule
from vmcjet.train import make_sampler_and_local_energy, per_walker_gradients


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return 1e3 * (time.perf_counter() - start)


def step_parts(config: Config) -> dict[str, Callable[[], Any]]:
    """Zero-argument callables of each part of a step, compiled, on an initial state."""
    molecule = run_molecule(config)
    session = open_session(config, molecule)
    state = initial_state(session, template_only=True)
    sample, local_energy = make_sampler_and_local_energy(session.wavefunction, molecule, config)
    optimiser = optim.make_optimiser(config.optim)
    grads = per_walker_gradients(session.wavefunction)

    def update(params, opt_state, walkers, energies):
        residuals = energies - energies.mean()
        return optimiser.update(grads(params, walkers), residuals, opt_state, params)

    key = jax.random.key(0)
    sample_jit, energy_jit, update_jit = jax.jit(sample), jax.jit(local_energy), jax.jit(update)
    walkers = state.sampler.walkers
    energies = energy_jit(state.params, walkers)
    return {
        "sampling": lambda: sample_jit(state.params, state.sampler, key=key),
        "local_energy": lambda: energy_jit(state.params, walkers),
        "gradient_update": lambda: update_jit(state.params, state.opt_state, walkers, energies),
        "whole_step": lambda: session.step(state, root_key=key),
    }


def run(config: Config, *, repeats: int = 10, log: Callable[[str], None] = print) -> dict:
    """Median milliseconds of each part of a step (after one warm-up call each)."""
    parts = step_parts(config)
    for fn in parts.values():
        _timed(fn)
    samples: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(repeats):
        for name, fn in parts.items():
            samples[name].append(_timed(fn))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, value in medians.items():
        log(f"{name:>16}: {value:9.2f} ms")
    return medians

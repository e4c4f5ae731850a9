"""The local energy and the gradients part of a training step at fixed walker chunks, side by side:
microseconds per walker (medians of interleaved rounds, after compilation) and XLA's temporaries,
for choosing the working set of `vmcjet.memory` (`working_set_mib`). The molecule's size-table
defaults are used (docs/results.md "Defaults by system size"); chunk 0 means the whole batch at
once. Run it on a quiet machine: it times every (batch, chunk, part) in one process.

    python benchmarks/walker_chunks.py --molecule N2 --batch-sizes 128,256,512 \
        --chunks 0,4,8,16,32,64
    python benchmarks/walker_chunks.py --molecule LiH --batch-sizes 256,1024 --chunks 0,32,128 \
        --optimizer spring
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from vmcjet import optim
from vmcjet.bench import interleaved_medians
from vmcjet.cli import apply_process_settings
from vmcjet.defaults import resolve_run_config
from vmcjet.log_psi_gradients import make_gradient_batch
from vmcjet.memory import MIB
from vmcjet.session import initial_state, open_session, run_molecule
from vmcjet.step_parts import make_local_energy_fn


def compiled_parts(
    molecule_name: str, optimizer: str, batch: int, chunks: list[int | None]
) -> dict[tuple, tuple[Callable[[], Any], float]]:
    """{(part, batch, chunk): (zero-argument call, temporaries MiB)} for one batch size."""
    overrides = {"optim": {"optimizer": optimizer}, "batch_size": batch}
    config = resolve_run_config(None, {"system": {"molecule": molecule_name}}, overrides)[0]
    molecule = run_molecule(config)
    session = open_session(config, molecule)
    state = initial_state(session, template_only=True)
    params, walkers = state.params, state.sampler.walkers
    needs = optim.make_optimiser(config.optim).needs
    parts = {}
    for chunk in chunks:
        if chunk is not None and chunk >= batch:
            continue
        energy_fn = make_local_energy_fn(session.wavefunction, molecule, config, chunk)
        energy = jax.jit(energy_fn).lower(params, walkers).compile()
        energies = energy(params, walkers)
        residuals, finite = energies - energies.mean(), jnp.isfinite(energies)
        gradient_fn = make_gradient_batch(session.wavefunction, needs, chunk)
        gradients = jax.jit(gradient_fn).lower(params, walkers, residuals, finite).compile()
        parts[("local energy", batch, chunk)] = (
            lambda f=energy: f(params, walkers),
            energy.memory_analysis().temp_size_in_bytes / MIB,
        )
        parts[("gradients", batch, chunk)] = (
            lambda f=gradients, r=residuals, k=finite: f(params, walkers, r, k),
            gradients.memory_analysis().temp_size_in_bytes / MIB,
        )
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecule", default="N2")
    parser.add_argument("--batch-sizes", default="128,256,512")
    parser.add_argument("--chunks", default="0,8,32", help="walkers per chunk; 0: whole batch")
    parser.add_argument("--optimizer", default="kfac", choices=["spring", "kfac", "adam"])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    apply_process_settings()
    chunks = [int(c) or None for c in args.chunks.split(",")]
    parts: dict[tuple, tuple[Callable[[], Any], float]] = {}
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        parts.update(compiled_parts(args.molecule, args.optimizer, batch, chunks))
    medians = interleaved_medians({key: fn for key, (fn, _) in parts.items()}, args.repeats)
    print(f"{args.molecule}, {args.optimizer}, {args.repeats} interleaved rounds")
    print("| part | batch | chunk | us per walker | temporaries (MiB) |\n|---|---|---|---|---|")
    for part, batch, chunk in sorted(medians, key=lambda k: (k[0], k[1], k[2] or 1 << 30)):
        ms = medians[(part, batch, chunk)]
        mib = parts[(part, batch, chunk)][1]
        print(f"| {part} | {batch} | {chunk or 'whole'} | {1e3 * ms / batch:.1f} | {mib:.1f} |")


if __name__ == "__main__":
    main()

"""XLA's compiled memory of a training step's parts at sizes too large to run here (compile only,
nothing is executed): the gradients part (SPRING's per-walker gradients O, or Adam's one backward
pass) and SPRING's update, for a batch and network given on the command line.

    python benchmarks/step_memory.py --molecule LiH --batch-sizes 1024,4096
    python benchmarks/step_memory.py --molecule LiH --batch-sizes 1024 --preset paper
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from vmcjet import optim
from vmcjet.config import build_config
from vmcjet.log_psi_gradients import make_gradient_batch
from vmcjet.memory import MIB
from vmcjet.molecule import load_molecule
from vmcjet.networks import make_wavefunction


def report(molecule_name: str, batch: int, preset: str, optimizer: str) -> None:
    config = build_config(
        overrides={
            "system": {"molecule": molecule_name},
            "network": {"preset": preset},
            "optim": {"optimizer": optimizer},
            "batch_size": batch,
        }
    )
    molecule = load_molecule(molecule_name)
    wavefunction = make_wavefunction(config.network, molecule)
    opt = optim.make_optimiser(config.optim)
    f32 = jnp.float32
    params = jax.eval_shape(lambda: wavefunction.init(key=jax.random.key(0), dtype=f32))
    size = sum(leaf.size for leaf in jax.tree.leaves(params))
    walkers = jax.ShapeDtypeStruct((batch, molecule.n_electrons, 3), f32)
    vector = jax.ShapeDtypeStruct((batch,), f32)
    finite = jax.ShapeDtypeStruct((batch,), jnp.bool_)
    gradient_batch = make_gradient_batch(wavefunction, opt.needs)
    grads = jax.jit(gradient_batch).lower(params, walkers, vector, finite).compile()
    batch_shape = jax.eval_shape(gradient_batch, params, walkers, vector, finite)
    state = jax.eval_shape(opt.init, params)
    update = jax.jit(opt.update).lower(batch_shape, state, params).compile()
    for name, compiled in (("gradients", grads), ("update", update)):
        memory = compiled.memory_analysis()
        print(
            f"{molecule_name} {preset} P={size} B={batch} {optimizer:>6} {name:>9}: "
            f"arguments {memory.argument_size_in_bytes / MIB:9.1f} MiB, "
            f"outputs {memory.output_size_in_bytes / MIB:9.1f} MiB, "
            f"temporaries {memory.temp_size_in_bytes / MIB:9.1f} MiB",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--molecule", default="LiH")
    parser.add_argument("--batch-sizes", default="1024,4096")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--optimizers", default="spring,adam")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", False)
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        for optimizer in args.optimizers.split(","):
            report(args.molecule, batch, args.preset, optimizer)


if __name__ == "__main__":
    main()

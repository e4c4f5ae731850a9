"""How far a trained wavefunction of a homonuclear diatomic is from its mirror symmetry.

For the walkers of the run's newest checkpoint, r -> P r mirrors every electron through the plane
through the bond's midpoint perpendicular to the bond. A wavefunction with the molecule's symmetry
has |psi(P r)| = |psi(r)|; the script prints the mean and root mean square of
log|psi(P r)| - log|psi(r)|, and the walkers' mean electron offset from the midpoint along the bond
(bohr) with its standard error over walkers.

    python benchmarks/mirror_symmetry.py runs/obs9/n2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet import runfolder
from vmcjet.session import open_session, restore_state, run_molecule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    folder = parser.parse_args().run
    config = runfolder.read_config(folder)
    molecule = run_molecule(config)
    if len(molecule.symbols) != 2:
        raise SystemExit("needs a diatomic molecule")
    session = open_session(config, molecule)
    state, _ = restore_state(session, folder / runfolder.CHECKPOINT_DIR, log=print)
    walkers = np.asarray(state.sampler.walkers, dtype=np.float64)  # (B, n, 3)
    midpoint = molecule.coords.mean(axis=0)
    axis = (molecule.coords[1] - molecule.coords[0]) / np.linalg.norm(
        molecule.coords[1] - molecule.coords[0]
    )
    along = (walkers - midpoint) @ axis  # (B, n)
    mirrored = walkers - 2 * along[..., None] * axis
    log_psi = jax.jit(jax.vmap(lambda x: session.wavefunction.apply(state.params, x)[1]))
    dtype = state.sampler.walkers.dtype
    difference = np.asarray(
        log_psi(jnp.asarray(mirrored, dtype)) - log_psi(jnp.asarray(walkers, dtype))
    )
    offsets = along.mean(axis=1)
    print(f"walkers: {walkers.shape[0]}, electrons: {walkers.shape[1]}")
    print(
        f"log|psi(P r)| - log|psi(r)|: mean {difference.mean():.4f}, "
        f"rms {np.sqrt(np.mean(difference**2)):.4f}"
    )
    print(
        f"mean electron offset along the bond: {offsets.mean():.4f} +- "
        f"{offsets.std(ddof=1) / np.sqrt(offsets.size):.4f} bohr"
    )


if __name__ == "__main__":
    main()

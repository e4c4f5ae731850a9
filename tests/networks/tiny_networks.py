"""Tiny float64 networks and molecules shared by the network tests (a helper module imported by
name, not a conftest: two conftest modules of one name clash in `sys.modules`)."""

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet.config import FermiNetConfig, NetworkConfig, PsiformerConfig
from vmcjet.molecule import Molecule, load_molecule
from vmcjet.networks import make_wavefunction

TINY = {
    "ferminet": {"ferminet": FermiNetConfig(hidden_one=8, hidden_two=4, layers=2)},
    "psiformer": {"psiformer": PsiformerConfig(layers=2, heads=2, head_dim=4)},
}


def tiny_config(kind: str, **changes) -> NetworkConfig:
    return NetworkConfig(kind=kind, determinants=2, **TINY[kind], **changes)


def build(kind: str, molecule: Molecule | str, *, key: int = 0, **changes):
    """(wavefunction, float64 params, molecule) of a tiny network."""
    if isinstance(molecule, str):
        molecule = load_molecule(molecule)
    wf = make_wavefunction(tiny_config(kind, **changes), molecule)
    return wf, wf.init(key=jax.random.PRNGKey(key), dtype=jnp.float64), molecule


def walker(molecule: Molecule, seed: int = 1) -> jax.Array:
    """One float64 configuration (n, 3): electrons scattered around the nuclei, bohr."""
    rng = np.random.default_rng(seed)
    centres = np.repeat(molecule.coords, np.asarray(molecule.charges, dtype=int), axis=0)
    centres = centres[: molecule.n_electrons]
    return jnp.asarray(centres + rng.normal(size=centres.shape), dtype=jnp.float64)

"""vmcjet: variational Monte Carlo for molecules with neural wavefunctions (JAX).

Atomic units throughout: lengths in bohr, energies in hartree. The public API is re-exported here;
everything else is internal.
"""

from vmcjet.config import Config, build_config
from vmcjet.errors import CheckpointError, InputError, NonFiniteError, VmcjetError
from vmcjet.hamiltonian import make_local_energy, potential_energy
from vmcjet.hartree_fock import hf_orbitals, run_hartree_fock
from vmcjet.laplacian import (
    LAPLACIAN_METHODS,
    forward_laplacian,
    make_kinetic_energy,
    stochastic_laplacian,
)
from vmcjet.mcmc import McmcState, init_walkers, make_mcmc_step
from vmcjet.molecule import Molecule, Reference, catalogue_names, load_molecule
from vmcjet.networks import Wavefunction, make_wavefunction
from vmcjet.optim import make_optimiser, spring
from vmcjet.statistics import Estimate, estimate
from vmcjet.train import TrainState, make_train_step, optimise

__version__ = "0.1.0"

__all__ = [
    "LAPLACIAN_METHODS",
    "CheckpointError",
    "Config",
    "Estimate",
    "InputError",
    "McmcState",
    "Molecule",
    "NonFiniteError",
    "Reference",
    "TrainState",
    "VmcjetError",
    "Wavefunction",
    "__version__",
    "build_config",
    "catalogue_names",
    "estimate",
    "forward_laplacian",
    "hf_orbitals",
    "init_walkers",
    "load_molecule",
    "make_kinetic_energy",
    "make_local_energy",
    "make_mcmc_step",
    "make_optimiser",
    "make_train_step",
    "make_wavefunction",
    "optimise",
    "potential_energy",
    "run_hartree_fock",
    "spring",
    "stochastic_laplacian",
]

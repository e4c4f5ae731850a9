"""vmcjet: variational Monte Carlo for molecules with neural wavefunctions (JAX)."""

from vmcjet.config import Config
from vmcjet.errors import CheckpointError, InputError, NonFiniteError, VmcjetError
from vmcjet.molecule import Molecule, Reference

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Config",
    "InputError",
    "Molecule",
    "NonFiniteError",
    "Reference",
    "VmcjetError",
    "__version__",
]

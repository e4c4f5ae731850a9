"""Neural wavefunctions: FermiNet and Psiformer with envelopes, determinants and a Jastrow factor.

See docs/networks.md for the architectures, options, presets and parameter counts.
"""

from vmcjet.networks.wavefunction import (
    PAPER_SIZES,
    Wavefunction,
    make_wavefunction,
    parameter_count,
    resolve_config,
)

__all__ = ["PAPER_SIZES", "Wavefunction", "make_wavefunction", "parameter_count", "resolve_config"]

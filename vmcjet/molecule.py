"""A molecule: nuclei (bohr), nuclear charges, total charge and spin. Loading and validation.

(The loaders, catalogue and validation are filled in by the foundation work; the dataclass is the
interface every other module uses.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Reference:
    """A published energy of a system, hartree."""

    energy: float  # hartree
    kind: str  # "exact" (estimated exact non-relativistic), "ferminet", "psiformer", "ccsd(t)", ...
    source: str  # citation


@dataclass(frozen=True, eq=False)
class Molecule:
    """Nuclei and electrons of a system, atomic units.

    Attributes:
        name: display name ("LiH").
        symbols: element symbols, length n_atoms.
        coords: nuclear positions, shape (n_atoms, 3), bohr.
        charges: nuclear charges Z, shape (n_atoms,), units of e.
        charge: total charge of the system (e).
        spin: 2S = N_alpha - N_beta.
        references: published energies.
        geometry_source: where the geometry comes from.
    """

    name: str
    symbols: tuple[str, ...]
    coords: np.ndarray
    charges: np.ndarray
    charge: int = 0
    spin: int = 0
    references: tuple[Reference, ...] = field(default_factory=tuple)
    geometry_source: str = ""

    @property
    def n_electrons(self) -> int:
        return int(round(float(np.sum(self.charges)))) - self.charge

    @property
    def n_alpha(self) -> int:
        return (self.n_electrons + self.spin) // 2

    @property
    def n_beta(self) -> int:
        return (self.n_electrons - self.spin) // 2

    @property
    def exact_energy(self) -> float | None:
        """Estimated exact non-relativistic energy (hartree), if known."""
        return next((r.energy for r in self.references if r.kind == "exact"), None)

    @property
    def nuclear_repulsion(self) -> float:
        """sum_{I<J} Z_I Z_J / |R_I - R_J|, hartree."""
        diff = self.coords[:, None, :] - self.coords[None, :, :]
        dist = np.linalg.norm(diff, axis=-1)
        upper = np.triu_indices(len(self.symbols), k=1)
        pair_charges = self.charges[:, None] * self.charges[None, :]
        return float(np.sum(pair_charges[upper] / dist[upper]))

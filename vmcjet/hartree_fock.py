"""Hartree-Fock reference of a molecule (pyscf) and its occupied orbitals at electron positions.

`run_hartree_fock` runs restricted Hartree-Fock for closed shells (spin 0) and unrestricted
Hartree-Fock otherwise, quietly. `hf_orbitals` evaluates the occupied spin orbitals

    alpha[..., i, j] = phi^alpha_j(r_i),   i, j < n_alpha   (the first n_alpha electrons),
    beta[..., i, j]  = phi^beta_j(r_i),    i, j < n_beta    (the last n_beta electrons),

with phi_j(r) = sum_mu C_mu,j chi_mu(r) (pyscf atomic orbitals chi_mu, MO coefficients C). It is
a `jax.pure_callback` into pyscf, so it works inside `jax.jit` and `jax.vmap` (it is not
differentiable: pretraining only needs the values). The dtype of the result follows the electrons.

pyscf pitfalls handled here: the geometry is passed in bohr (pyscf defaults to angstrom) and pyscf's
`spin` is 2S, as ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from pyscf import gto, scf

from vmcjet.errors import InputError
from vmcjet.molecule import Molecule


@dataclass(frozen=True, eq=False)
class HartreeFock:
    """A converged Hartree-Fock calculation.

    Attributes:
        energy: total Hartree-Fock energy including nuclear repulsion, hartree.
        restricted: True for RHF (closed shell), False for UHF.
        converged: whether the SCF iterations converged.
        n_alpha: number of spin-up electrons.
        n_beta: number of spin-down electrons.
        coeff_alpha: occupied alpha MO coefficients, shape (n_ao, n_alpha).
        coeff_beta: occupied beta MO coefficients, shape (n_ao, n_beta).
        mol: the pyscf `Mole` (geometry in bohr).
        scf: the pyscf SCF object after the kernel ran.
    """

    energy: float
    restricted: bool
    converged: bool
    n_alpha: int
    n_beta: int
    coeff_alpha: np.ndarray
    coeff_beta: np.ndarray
    mol: Any
    scf: Any


def build_pyscf_molecule(molecule: Molecule, *, basis: str = "ccpvdz") -> Any:
    """The pyscf `Mole` of a molecule: coordinates in bohr, spin = 2S, output silenced.

    Raises:
        InputError: the basis is not known to pyscf for one of the elements.
    """
    mol = gto.Mole()
    mol.atom = [
        (symbol, tuple(float(x) for x in xyz))
        for symbol, xyz in zip(molecule.symbols, molecule.coords, strict=True)
    ]
    mol.unit = "Bohr"
    mol.charge = molecule.charge
    mol.spin = molecule.spin
    mol.basis = basis
    mol.verbose = 0
    try:
        mol.build()
    except (KeyError, RuntimeError, ValueError, NotImplementedError) as err:
        raise InputError(
            f"pyscf cannot build basis '{basis}' for {molecule.name} ({err}); "
            'choose another basis, e.g. system.basis="ccpvdz" or "sto-3g"'
        ) from None
    return mol


def run_hartree_fock(molecule: Molecule, *, basis: str = "ccpvdz") -> HartreeFock:
    """Runs RHF (spin 0) or UHF (otherwise) with pyscf.

    Args:
        molecule: the system (coordinates in bohr).
        basis: a Gaussian basis name pyscf knows ("ccpvdz", "sto-3g", ...).

    Returns:
        The converged calculation and its occupied orbital coefficients.
    """
    mol = build_pyscf_molecule(molecule, basis=basis)
    restricted = molecule.spin == 0
    mf = scf.RHF(mol) if restricted else scf.UHF(mol)
    mf.verbose = 0
    mf.kernel()
    if not mf.converged:  # second-order SCF usually rescues hard cases (open-shell atoms)
        mf = mf.newton()
        mf.kernel(mf.mo_coeff, mf.mo_occ)
    coeffs = (mf.mo_coeff, mf.mo_coeff) if restricted else tuple(mf.mo_coeff)
    occs = (mf.mo_occ, mf.mo_occ) if restricted else tuple(mf.mo_occ)
    coeff_alpha, coeff_beta = (
        np.asarray(c[:, o > 0], dtype=np.float64) for c, o in zip(coeffs, occs, strict=True)
    )
    return HartreeFock(
        energy=float(mf.e_tot),
        restricted=restricted,
        converged=bool(mf.converged),
        n_alpha=molecule.n_alpha,
        n_beta=molecule.n_beta,
        coeff_alpha=coeff_alpha,
        coeff_beta=coeff_beta,
        mol=mol,
        scf=mf,
    )


def _orbitals_numpy(hf: HartreeFock, electrons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`hf_orbitals` in numpy: electrons (..., n_electrons, 3) bohr, result in their dtype."""
    electrons = np.asarray(electrons)
    batch = electrons.shape[:-2]
    ao = hf.mol.eval_gto("GTOval", electrons.reshape(-1, 3).astype(np.float64))
    ao = ao.reshape(*batch, electrons.shape[-2], -1)
    alpha = ao[..., : hf.n_alpha, :] @ hf.coeff_alpha
    beta = ao[..., hf.n_alpha :, :] @ hf.coeff_beta
    return alpha.astype(electrons.dtype), beta.astype(electrons.dtype)


def hf_orbitals(hf: HartreeFock, electrons: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Occupied Hartree-Fock orbitals at the electron positions, usable in `jit` and `vmap`.

    Args:
        hf: the result of `run_hartree_fock`.
        electrons: positions, shape (..., n_electrons, 3), bohr, the n_alpha spin-up electrons
            first.

    Returns:
        (alpha, beta): shapes (..., n_alpha, n_alpha) and (..., n_beta, n_beta), where
        alpha[..., i, j] is occupied alpha orbital j at alpha electron i (likewise beta).
        The dtype is the dtype of `electrons`.
    """
    electrons = jnp.asarray(electrons)
    n_electrons = hf.n_alpha + hf.n_beta
    if electrons.ndim < 2 or electrons.shape[-2:] != (n_electrons, 3):
        raise InputError(
            f"electrons have shape {electrons.shape}, expected (..., {n_electrons}, 3) for "
            f"{hf.n_alpha} alpha and {hf.n_beta} beta electrons"
        )
    batch = electrons.shape[:-2]
    shapes = (
        jax.ShapeDtypeStruct((*batch, hf.n_alpha, hf.n_alpha), electrons.dtype),
        jax.ShapeDtypeStruct((*batch, hf.n_beta, hf.n_beta), electrons.dtype),
    )
    return jax.pure_callback(
        lambda x: _orbitals_numpy(hf, x), shapes, electrons, vmap_method="expand_dims"
    )

"""Hartree-Fock reference of a molecule (pyscf) and its occupied orbitals at electron positions.

`run_hartree_fock` runs, quietly, restricted Hartree-Fock (RHF) for closed shells (spin 0) and
unrestricted Hartree-Fock (UHF) otherwise (`method="auto"`), or the method asked for: "rhf" (closed
shells only), "uhf", or restricted open-shell "rohf" (one set of spatial orbitals: the n_beta
doubly occupied ones and n_alpha - n_beta singly occupied alpha ones; its energy lies at or above
UHF's). A calculation that does not converge is returned anyway (`converged` False) and
`convergence_warning` gives the one-line message to log. `hf_orbitals` evaluates the occupied
spin orbitals

    alpha[..., i, j] = phi^alpha_j(r_i),   i, j < n_alpha   (the first n_alpha electrons),
    beta[..., i, j]  = phi^beta_j(r_i),    i, j < n_beta    (the last n_beta electrons),

with phi_j(r) = sum_mu C_mu,j chi_mu(r) (pyscf atomic orbitals chi_mu, MO coefficients C). It is
a `jax.pure_callback` into pyscf, so it works inside `jax.jit` and `jax.vmap` (it is not
differentiable: pretraining only needs the values). The dtype of the result follows the electrons.

pyscf pitfalls handled here: the geometry is passed in bohr (pyscf defaults to angstrom) and pyscf's
`spin` is 2S, as ours.

With effective core potentials (`Molecule.ecp`) pyscf gets the same ECPs, so Hartree-Fock sees only
the valence electrons, and the default basis "ccpvdz" becomes "ccecp-ccpvdz" on the atoms with a
ccECP (`basis_by_element`); any other basis is used as given.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from pyscf import gto, lib, scf

from vmcjet import ecp as ecps
from vmcjet.config import HF_METHODS
from vmcjet.errors import InputError
from vmcjet.molecule import Molecule


@dataclass(frozen=True, eq=False)
class HartreeFock:
    """A Hartree-Fock calculation (converged unless `converged` is False).

    Attributes:
        energy: total Hartree-Fock energy including nuclear repulsion, hartree.
        restricted: True for RHF and ROHF (one set of spatial orbitals), False for UHF.
        converged: whether the SCF iterations converged.
        n_alpha: number of spin-up electrons.
        n_beta: number of spin-down electrons.
        coeff_alpha: occupied alpha MO coefficients, shape (n_ao, n_alpha).
        coeff_beta: occupied beta MO coefficients, shape (n_ao, n_beta).
        mol: the pyscf `Mole` (geometry in bohr).
        scf: the pyscf SCF object after the kernel ran.
        method: "rhf", "uhf" or "rohf" (what ran; "auto" resolved).
        cycles: the SCF's `max_cycle` (iterations allowed, per attempt).
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
    method: str = "rhf"
    cycles: int = 50


ECP_BASES = {("ccecp", "ccpvdz"): "ccecp-ccpvdz"}  # (ECP, default basis) -> the ECP's own basis


def basis_by_element(molecule: Molecule, basis: str) -> dict[str, str]:
    """Element -> basis: `basis`, except the default "ccpvdz" on an atom with a ccECP, which
    gets the ccECP's own "ccecp-ccpvdz"."""
    chosen = ecps.parse_spec(molecule.ecp, molecule.symbols)
    return {
        symbol: ECP_BASES.get((chosen.get(symbol, ""), basis), basis)
        for symbol in dict.fromkeys(molecule.symbols)
    }


def basis_label(molecule: Molecule, basis: str) -> str:
    """The basis for the log: `basis`, or "ccpvdz (ccecp-ccpvdz on N)" where ECP atoms differ."""
    other = {s: b for s, b in basis_by_element(molecule, basis).items() if b != basis}
    by_basis: dict[str, list[str]] = {}
    for symbol, name in other.items():
        by_basis.setdefault(name, []).append(symbol)
    notes = "; ".join(f"{name} on {', '.join(symbols)}" for name, symbols in by_basis.items())
    return f"{basis} ({notes})" if notes else basis


def build_pyscf_molecule(molecule: Molecule, *, basis: str = "ccpvdz") -> Any:
    """The pyscf `Mole` of a molecule: coordinates in bohr, spin = 2S, its ECPs
    (`basis_by_element`), output silenced.

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
    mol.basis = basis_by_element(molecule, basis)
    mol.ecp = ecps.parse_spec(molecule.ecp, molecule.symbols)
    mol.verbose = 0
    try:
        with warnings.catch_warnings():  # pyscf's "install basis-set-exchange" hint
            warnings.simplefilter("ignore")
            mol.build()
    except (KeyError, RuntimeError, ValueError, NotImplementedError) as err:
        reason = " ".join(str(err).split())  # pyscf's message spans lines
        raise InputError(
            f"pyscf cannot build basis '{basis}' for {molecule.name} ({reason}); "
            'choose another basis, e.g. system.basis="ccpvdz" or "sto-3g"'
        ) from None
    return mol


def resolve_method(method: str, spin: int) -> str:
    """The Hartree-Fock method to run: "auto" is RHF for spin 0 and UHF otherwise.

    Raises:
        InputError: an unknown method, or "rhf" for an open shell (spin != 0).
    """
    if method not in HF_METHODS:
        raise InputError(
            f"unknown Hartree-Fock method system.hf='{method}'; choose one of: "
            f"{', '.join(HF_METHODS)}"
        )
    if method == "auto":
        return "rhf" if spin == 0 else "uhf"
    if method == "rhf" and spin != 0:
        raise InputError(
            f"system.hf='rhf' needs a closed shell (spin 0), got spin {spin}; "
            "use system.hf='rohf' or 'uhf'"
        )
    return method


def _occupied(mf: Any, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Occupied alpha and beta MO coefficients, shapes (n_ao, n_alpha) and (n_ao, n_beta)."""
    if method == "uhf":
        pairs = ((mf.mo_coeff[0], mf.mo_occ[0] > 0), (mf.mo_coeff[1], mf.mo_occ[1] > 0))
    else:  # RHF / ROHF: occupations 2 (both spins), 1 (alpha only), 0
        pairs = ((mf.mo_coeff, mf.mo_occ > 0), (mf.mo_coeff, mf.mo_occ > 1))
    alpha, beta = (np.asarray(c[:, mask], dtype=np.float64) for c, mask in pairs)
    return alpha, beta


def run_hartree_fock(
    molecule: Molecule, *, basis: str = "ccpvdz", method: str = "auto", max_cycle: int = 50
) -> HartreeFock:
    """Runs Hartree-Fock with pyscf: RHF, UHF or ROHF (`method`, see `resolve_method`).

    If the SCF does not converge in `max_cycle` iterations, second-order SCF (Newton) is tried
    from there; if that does not converge either the result has `converged` False (see
    `convergence_warning`). pyscf prints nothing.

    The SCF runs on one OpenMP thread, so the same molecule gives the same orbitals on every
    call: pyscf's threaded Fock builds sum in a varying order, and that rounding noise picks a
    different rotation within each degenerate occupied shell (N2's and CO's pi orbitals, up to
    0.1-0.4 in the coefficients between two calls on 2 threads), which changes the orbitals
    pretraining fits and so a seeded run's trajectory. One thread was also faster here (N2 in
    cc-pVDZ: 0.06 s against 0.27-0.58 s on 2 busy cores).

    Args:
        molecule: the system (coordinates in bohr).
        basis: a Gaussian basis name pyscf knows ("ccpvdz", "sto-3g", ...).
        method: "auto" (RHF for spin 0, UHF otherwise), "rhf", "uhf" or "rohf".
        max_cycle: SCF iterations allowed (and Newton macro-iterations), > 0.

    Returns:
        The calculation and its occupied orbital coefficients.

    Raises:
        InputError: an unknown method or basis, or "rhf" for an open shell.
    """
    method = resolve_method(method, molecule.spin)
    mol = build_pyscf_molecule(molecule, basis=basis)
    mf = {"rhf": scf.RHF, "uhf": scf.UHF, "rohf": scf.ROHF}[method](mol)
    mf.verbose = 0
    mf.max_cycle = max_cycle
    mf.chkfile = None  # no pyscf scratch file: set-up writes nothing outside the run folder
    with lib.with_omp_threads(1):
        mf.kernel()
        if not mf.converged:  # second-order SCF usually rescues hard cases (open-shell atoms)
            mf = mf.newton()
            mf.verbose = 0
            mf.max_cycle = max_cycle
            mf.kernel(mf.mo_coeff, mf.mo_occ)
    coeff_alpha, coeff_beta = _occupied(mf, method)
    return HartreeFock(
        energy=float(mf.e_tot),
        restricted=method != "uhf",
        converged=bool(mf.converged),
        n_alpha=molecule.n_alpha,
        n_beta=molecule.n_beta,
        coeff_alpha=coeff_alpha,
        coeff_beta=coeff_beta,
        mol=mol,
        scf=mf,
        method=method,
        cycles=max_cycle,
    )


def convergence_warning(hf: HartreeFock, basis: str) -> str | None:
    """One line to log when the SCF did not converge (None when it did)."""
    if hf.converged:
        return None
    fix = "--set system.hf=rohf or another" if hf.method == "uhf" else "another"
    return (
        f"warning: Hartree-Fock ({hf.method.upper()}, {basis}) did not converge in "
        f"{hf.cycles} cycles (E = {hf.energy:.6f} Ha); pretraining uses its orbitals anyway; "
        f"try {fix} system.basis (e.g. --set system.basis=sto-3g)"
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

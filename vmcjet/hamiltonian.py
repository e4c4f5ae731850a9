"""The molecular Hamiltonian in the Born-Oppenheimer approximation, atomic units.

For n electrons at r_i and nuclei of charge Z_I at R_I (bohr), the local energy of psi at a
configuration r is E_L(r) = (H psi)(r) / psi(r) = T(r) + V(r) (hartree) with

    T(r) = -(1/2) sum_i lap_i psi / psi = -(1/2) (lap log|psi| + |grad log|psi||^2),
    V(r) = sum_{i<j} 1/|r_i - r_j| - sum_{i,I} Z_I/|r_i - R_I| + sum_{I<J} Z_I Z_J/|R_I - R_J|.

The kinetic part comes from `vmcjet.laplacian.make_kinetic_energy` (method selectable); this module
adds the Coulomb potential and, for atoms with an effective core potential (their Z_I then being
the effective charges), the ECP's local potential and its non-local part (`vmcjet.ecp`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet import ecp
from vmcjet.errors import InputError
from vmcjet.laplacian.kinetic import make_kinetic_energy

Array = jax.Array
Params = Any


class Nuclei(NamedTuple):
    """Fixed nuclei of a molecule as arrays.

    Attributes:
        coords: nuclear positions, shape (n_atoms, 3), bohr.
        charges: nuclear charges Z, shape (n_atoms,), same dtype as `coords`.
    """

    coords: Array
    charges: Array


def make_nuclei(atoms: Any, charges: Any, dtype: Any = None) -> Nuclei:
    """Validates and converts nuclear positions and charges to arrays.

    Args:
        atoms: nuclear positions, shape (n_atoms, 3), bohr.
        charges: nuclear charges, shape (n_atoms,).
        dtype: dtype of both arrays; None keeps the dtype of `atoms` (float64 for numpy input).

    Returns:
        The `Nuclei`.

    Raises:
        InputError: for mismatched shapes.
    """
    coords = jnp.asarray(atoms, dtype=dtype)
    charges = jnp.asarray(charges, dtype=coords.dtype)
    if coords.ndim != 2 or coords.shape[1] != 3 or charges.shape != coords.shape[:1]:
        raise InputError(
            f"nuclei need atoms of shape (n_atoms, 3) and charges (n_atoms,), got {coords.shape} "
            f"and {charges.shape}; pass molecule.coords and molecule.charges"
        )
    return Nuclei(coords, charges)


def _upper(matrix: Array) -> Array:
    """Entries of the strict upper triangle of a square matrix (k, k), shape (k (k - 1) / 2,)."""
    return matrix[np.triu_indices(matrix.shape[0], k=1)]


def _self_distances(points: Array) -> Array:
    """|p_a - p_b| for points (k, 3), shape (k, k); the diagonal is 1 (never used).

    Adding the identity under the square root keeps the unused diagonal away from sqrt(0), whose
    gradient would be NaN.
    """
    diff = points[:, None, :] - points[None, :, :]
    eye = jnp.eye(points.shape[0], dtype=points.dtype)
    return jnp.sqrt(jnp.sum(diff**2, axis=-1) + eye)


def potential_energy(electrons: Array, nuclei: Nuclei) -> Array:
    """Coulomb energy of one configuration: electron-electron, electron-nucleus, nucleus-nucleus.

    Args:
        electrons: positions, shape (n, 3), bohr.
        nuclei: the fixed nuclei (`make_nuclei`), same dtype as `electrons`.

    Returns:
        Scalar potential energy, hartree.
    """
    e_e = jnp.sum(1.0 / _upper(_self_distances(electrons)))
    e_n_distances = jnp.linalg.norm(electrons[:, None, :] - nuclei.coords[None, :, :], axis=-1)
    e_n = -jnp.sum(nuclei.charges[None, :] / e_n_distances)
    pair_charges = nuclei.charges[:, None] * nuclei.charges[None, :]
    n_n = jnp.sum(_upper(pair_charges) / _upper(_self_distances(nuclei.coords)))
    return e_e + e_n + n_n


def over_walkers(fn: Callable[[Any], Any], walkers: Any, walker_batch_size: int | None) -> Any:
    """`fn` of one walker's arguments mapped over the leading axis of `walkers` (a pytree):
    all at once with vmap (None), or `lax.map` chunks of `walker_batch_size` walkers."""
    if walker_batch_size is None:
        return jax.vmap(fn)(walkers)
    return jax.lax.map(fn, walkers, batch_size=walker_batch_size)


def make_local_energy(
    signed_log_psi_fn: Callable[[Params, Array], tuple[Array, Array]],
    atoms: Any,
    charges: Any,
    *,
    method: str = "collapsed",
    chunk_size: int | None = None,
    walker_batch_size: int | None = None,
    ecps: tuple[ecp.AtomEcp, ...] = (),
) -> Callable[..., Array]:
    """Local energies E_L = T + V of a batch of walkers.

    Args:
        signed_log_psi_fn: (params, electrons (n, 3) bohr) -> (sign, log|psi|) scalars.
        atoms: nuclear positions, shape (n_atoms, 3), bohr.
        charges: nuclear charges (effective charges for atoms with an ECP), shape (n_atoms,).
        method: Laplacian method (see `vmcjet.laplacian.methods`), e.g. "collapsed", "loop",
            "hessian".
        chunk_size: directions per inner chunk of the Laplacian method.
        walker_batch_size: walkers per `lax.map` chunk of the kinetic energy and of the ECP's
            quadrature (None: all at once).
        ecps: the effective core potentials of the atoms that have one (`vmcjet.ecp.atom_ecps`).

    Returns:
        (params, walkers (B, n, 3) bohr, rotations=None) -> local energies (B,), hartree, in the
        walkers' dtype. With `ecps`, `rotations` (B, 3, 3) turn each walker's quadrature grid
        (`vmcjet.ecp.random_rotations`). Pure and jittable; walkers may be sharded along B.
    """
    atoms_np, charges_np = np.asarray(atoms), np.asarray(charges)
    make_nuclei(atoms_np, charges_np)  # validate shapes now, not at trace time

    def local_energy(params: Params, walkers: Array, rotations: Array | None = None) -> Array:
        kinetic = make_kinetic_energy(
            lambda electrons: signed_log_psi_fn(params, electrons)[1],
            method=method,
            chunk_size=chunk_size,
            walker_batch_size=walker_batch_size,
        )
        nuclei = make_nuclei(atoms_np, charges_np, dtype=walkers.dtype)
        potential = jax.vmap(potential_energy, in_axes=(0, None))(walkers, nuclei)
        energies = kinetic(walkers) + potential
        if not ecps:
            return energies
        if rotations is None:
            raise InputError("a local energy with ECPs needs rotations (B, 3, 3) of its grids")

        psi = functools.partial(signed_log_psi_fn, params)

        def core_part(args: tuple[Array, Array]) -> Array:
            electrons, rotation = args
            return ecp.local_energy_part(electrons, nuclei.coords, ecps) + ecp.nonlocal_energy_part(
                psi, electrons, nuclei.coords, ecps, rotation
            )

        return energies + over_walkers(core_part, (walkers, rotations), walker_batch_size)

    return local_energy

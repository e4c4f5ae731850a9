"""Kinetic energy of walkers from log|psi|, with the Laplacian method selectable.

For psi = exp(u) with u = log|psi| (away from nodes), lap psi / psi = lap u + |grad u|^2, so the
local kinetic energy of one configuration r (n electrons, (n, 3) bohr) is

    T(r) = -(1/2) (lap u(r) + |grad u(r)|^2)    (hartree; atomic units, electron mass 1).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from vmcjet.errors import InputError
from vmcjet.laplacian.methods import laplacian_method

Array = jax.Array


def make_local_kinetic_energy(
    log_abs_psi: Callable[[Array], Array],
    *,
    method: str = "collapsed",
    chunk_size: int | None = None,
) -> Callable[[Array], Array]:
    """Kinetic energy of one configuration.

    Args:
        log_abs_psi: electrons (n, 3) bohr -> scalar log|psi|.
        method: a name from `vmcjet.laplacian.methods.LAPLACIAN_METHODS`.
        chunk_size: directions per inner chunk, passed to the method.

    Returns:
        electrons (n, 3) bohr -> scalar kinetic energy, hartree.

    Raises:
        InputError: for an unknown method.
    """
    value_grad_lap = laplacian_method(method)(log_abs_psi, chunk_size=chunk_size)

    def local_kinetic_energy(electrons: Array) -> Array:
        _, grad, lap = value_grad_lap(electrons)
        return -0.5 * (lap + jnp.sum(grad**2))

    return local_kinetic_energy


def make_kinetic_energy(
    log_abs_psi: Callable[[Array], Array],
    *,
    method: str = "collapsed",
    chunk_size: int | None = None,
    walker_batch_size: int | None = None,
) -> Callable[[Array], Array]:
    """Kinetic energy of a batch of walkers.

    Args:
        log_abs_psi: electrons (n, 3) bohr -> scalar log|psi|.
        method: a name from `vmcjet.laplacian.methods.LAPLACIAN_METHODS`.
        chunk_size: directions per inner chunk, passed to the method.
        walker_batch_size: walkers per chunk of ``lax.map(..., batch_size=...)`` (bounds memory and
            is often faster on CPU); None evaluates all walkers at once with vmap. With walker
            chunks and no `chunk_size`, the method gets chunk_size = D (all directions at once);
            without walker chunks None goes to the method (collapsed: blocks of
            `methods.COLLAPSED_CHUNK_SIZE`).

    Returns:
        walkers (B, n, 3) bohr -> kinetic energies (B,), hartree.

    Raises:
        InputError: for an unknown method or a non-positive walker_batch_size.
    """
    if walker_batch_size is not None and walker_batch_size < 1:
        raise InputError(
            f"walker_batch_size={walker_batch_size} must be a positive integer or None"
        )
    laplacian_method(method)  # an unknown method fails here, not when traced

    def kinetic_energy(walkers: Array) -> Array:
        # A walker chunk already bounds the working set, so unless told otherwise its directions
        # go in one block (chunk_size = D): blocks would only add per-block work.
        chunk = chunk_size if walker_batch_size is None else chunk_size or walkers[0].size
        local = make_local_kinetic_energy(log_abs_psi, method=method, chunk_size=chunk)
        if walker_batch_size is None:
            return jax.vmap(local)(walkers)
        return jax.lax.map(local, walkers, batch_size=walker_batch_size)

    return kinetic_energy

"""Input features: electron-nucleus and electron-electron vectors and distances (bohr).

The distance to a nucleus with an effective core potential is softened to sqrt(|r - R|^2 + 1)
(bohr): the ECP's potential is finite at its nucleus, so the true wavefunction has no cusp there,
and a plain |r - R| in the features or the envelopes would put one in, a kinetic-energy term
~ 1/|r - R| that nothing cancels (docs/observables.md, "Pseudopotentials").

The self-distances r_ii are built as sqrt(|r_i - r_i|^2 + 1) * 0 so that they are exactly zero
with finite derivatives of every order (a plain norm has an infinite derivative at zero, which
would poison the gradient and Laplacian of everything downstream with NaN).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

SOFTENING = 1.0  # bohr: distances to ECP nuclei are sqrt(|r - R|^2 + SOFTENING^2)


def electron_nucleus(
    electrons: jax.Array, coords: jax.Array, smooth: np.ndarray | None = None
) -> tuple[jax.Array, jax.Array]:
    """Electron-nucleus vectors and distances.

    Args:
        electrons: (n, 3) electron positions, bohr.
        coords: (n_atoms, 3) nuclear positions, bohr.
        smooth: (n_atoms,) True for nuclei with an effective core potential, whose distances are
            softened to sqrt(|r_i - R_I|^2 + SOFTENING^2); None: none.

    Returns:
        ae: (n, n_atoms, 3) vectors r_i - R_I, bohr.
        r_ae: (n, n_atoms, 1) distances |r_i - R_I| (softened for `smooth` nuclei), bohr.
    """
    ae = electrons[:, None, :] - coords[None, :, :]
    squared = jnp.sum(ae * ae, axis=-1, keepdims=True)
    if smooth is not None and np.any(smooth):
        softening = np.where(smooth, SOFTENING**2, 0.0)[None, :, None].astype(electrons.dtype)
        squared = squared + softening
    return ae, jnp.sqrt(squared)


def electron_electron(electrons: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Electron-electron vectors and distances with a smooth zero diagonal.

    Args:
        electrons: (n, 3) electron positions, bohr.

    Returns:
        ee: (n, n, 3) vectors r_i - r_j, bohr.
        r_ee: (n, n, 1) distances |r_i - r_j| (exactly 0 on the diagonal), bohr.
    """
    n = electrons.shape[0]
    eye = np.eye(n, dtype=electrons.dtype)[:, :, None]
    ee = electrons[:, None, :] - electrons[None, :, :]
    r_ee = jnp.sqrt(jnp.sum(ee * ee, axis=-1, keepdims=True) + eye) * (1.0 - eye)
    return ee, r_ee


INPUTS = ("vectors", "distances")


def input_width(inputs: str) -> int:
    """Features per nucleus or per pair: 4 for "vectors" (x, y, z, r), 1 for "distances" (r)."""
    return 4 if inputs == "vectors" else 1


def stack_inputs(vectors: jax.Array, distances: jax.Array, inputs: str) -> jax.Array:
    """[vectors, distances] (..., 4) or distances alone (..., 1), per `inputs`."""
    if inputs == "vectors":
        return jnp.concatenate([vectors, distances], axis=-1)
    return distances


def spin_groups(n_alpha: int, n_beta: int) -> tuple[tuple[int, int], ...]:
    """(start, stop) electron index ranges of the non-empty spin channels, alpha first."""
    groups = ((0, n_alpha), (n_alpha, n_alpha + n_beta))
    return tuple((a, b) for a, b in groups if b > a)

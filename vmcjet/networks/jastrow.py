"""The electron-electron cusp Jastrow factor of the Psiformer paper (von Glehn et al., 2023).

    J(r) = sum_{i<j, same spin} -(1/4) a_par^2 / (|a_par| + r_ij)
         + sum_{i<j, opposite}  -(1/2) a_anti^2 / (|a_anti| + r_ij)

and psi = exp(J) sum_k det_k. Since dJ/dr_ij = c a^2 / (|a| + r_ij)^2 -> c at r_ij = 0, log|psi|
gets the Kato cusps 1/2 (opposite spins) and 1/4 (same spin) whatever the values of the two
parameters a_par and a_anti (initialised to 1). Parameters: 2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet.networks.features import electron_electron


def init_jastrow(*, dtype) -> dict:
    """{"same": (), "opposite": ()} length scales a_par and a_anti, bohr."""
    return {"same": jnp.ones((), dtype), "opposite": jnp.ones((), dtype)}


def pair_masks(n_alpha: int, n_beta: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, n) 0/1 masks of the pairs i < j with the same and with opposite spins."""
    spins = np.array([0] * n_alpha + [1] * n_beta)
    upper = np.triu(np.ones((spins.size, spins.size), dtype=bool), k=1)
    same = spins[:, None] == spins[None, :]
    return (upper & same).astype(np.float64), (upper & ~same).astype(np.float64)


def apply_jastrow(params: dict, electrons: jax.Array, n_alpha: int, n_beta: int) -> jax.Array:
    """J(r) for one walker; electrons (n, 3) bohr, alpha first. Returns a scalar."""
    _, r_ee = electron_electron(electrons)
    r = r_ee[..., 0]
    same, opposite = (m.astype(electrons.dtype) for m in pair_masks(n_alpha, n_beta))

    def term(a: jax.Array, cusp: float, mask: np.ndarray) -> jax.Array:
        return jnp.sum(mask * (-cusp * a * a / (jnp.abs(a) + r)))

    return term(params["same"], 0.25, same) + term(params["opposite"], 0.5, opposite)

"""Observables beyond the energy, estimated at evaluation: <S^2> and the dipole moment.

Each estimator maps one walker's electrons (n, 3) bohr, alpha electrons first, to a per-walker
value whose average over |psi|^2 is the expectation value; `vmcjet eval --observables s2,dipole`
averages it over the walkers of each step and reblocks the per-step means (vmcjet.statistics),
as for the energy. The estimators take any `signed_log_psi(params, electrons) -> (sign, log|psi|)`,
so tests can use exact wavefunctions. Formulas and units: docs/observables.md.

<S^2> for a wavefunction with fixed spins (n_alpha electrons spin up, the first ones, and n_beta
spin down), written through spin exchanges: with N = n_alpha + n_beta and P_ij the exchange of the
positions of electrons i and j,

    S^2 = N (4 - N) / 4 + n_alpha (n_alpha - 1) / 2 + n_beta (n_beta - 1) / 2
          - sum_{i alpha, j beta} psi(P_ij r) / psi(r),

which is Sz (Sz + 1) + n_beta for n_alpha >= n_beta (one electron: 3/4; a closed shell whose
psi is symmetric under each alpha-beta exchange: 0; the Sz = 0 triplet: 2). It costs
n_alpha n_beta evaluations of psi per walker.

Dipole moment (atomic units, e bohr; DEBYE_PER_AU converts): relative to the centre of nuclear
charge C = sum_I Z_I R_I / sum_I Z_I, mu = sum_I Z_I (R_I - C) - sum_i (r_i - C), where the
nuclear sum vanishes by the choice of C, so mu = -sum_i (r_i - C) per walker. For a neutral
molecule mu does not depend on the origin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet.errors import InputError

OBSERVABLES = ("s2", "dipole")

SignedLogPsi = Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]


def parse_observables(text: str) -> tuple[str, ...]:
    """Names from a comma-separated string ("" for none), each once, in the given order.

    Raises:
        InputError: an unknown name.
    """
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in OBSERVABLES]
    if unknown:
        raise InputError(
            f"unknown observable '{unknown[0]}'; choose from {', '.join(OBSERVABLES)} "
            "(comma-separated, e.g. --observables s2,dipole)"
        )
    return names


def spin_squared_fn(
    signed_log_psi: SignedLogPsi, n_alpha: int, n_beta: int
) -> Callable[[Any, jax.Array], jax.Array]:
    """`(params, electrons (n, 3)) -> <S^2> estimator` (scalar) for fixed spins, alpha first
    (formula in the module docstring)."""
    n = n_alpha + n_beta
    constant = n * (4 - n) / 4 + n_alpha * (n_alpha - 1) / 2 + n_beta * (n_beta - 1) / 2
    pairs = np.array([(i, n_alpha + j) for i in range(n_alpha) for j in range(n_beta)], int)

    def estimator(params: Any, electrons: jax.Array) -> jax.Array:
        if pairs.size == 0:
            return jnp.asarray(constant, electrons.dtype)
        sign, log_abs = signed_log_psi(params, electrons)

        def exchanged(pair: jax.Array) -> tuple[jax.Array, jax.Array]:
            i, j = pair[0], pair[1]
            swapped = electrons.at[i].set(electrons[j]).at[j].set(electrons[i])
            return signed_log_psi(params, swapped)

        signs, logs = jax.vmap(exchanged)(jnp.asarray(pairs))
        ratios = signs * sign * jnp.exp(logs - log_abs)
        return constant - jnp.sum(ratios)

    return estimator


def dipole_fn(coords: Any, charges: Any) -> Callable[[jax.Array], jax.Array]:
    """`electrons (n, 3) bohr -> dipole (3,)` in e bohr, relative to the centre of nuclear
    charge of the nuclei `coords` (N, 3) bohr with `charges` (N,) (module docstring)."""
    coords, charges = np.asarray(coords, float), np.asarray(charges, float)
    centre = jnp.asarray(charges @ coords / charges.sum())

    def estimator(electrons: jax.Array) -> jax.Array:
        return -jnp.sum(electrons - centre.astype(electrons.dtype)[None], axis=0)

    return estimator

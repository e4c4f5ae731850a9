"""Metropolis-Hastings sampling of |psi|^2 with Gaussian all-electron moves.

Each walker is one configuration of all n electrons, (n, 3) bohr. A move proposes
r' = r + w * N(0, 1) for every coordinate of every electron at once (w: the proposal width, bohr)
and accepts it with probability min(1, |psi(r')|^2 / |psi(r)|^2) = min(1, exp(2 (u(r') - u(r))))
with u = log|psi|. The proposal is symmetric, so this samples |psi|^2 exactly for a fixed width.

Width adaptation: after the `moves` moves of one step, the width is multiplied by
exp(adapt_rate * (acceptance - target)) and clipped to [min_width, max_width]. This moves the
acceptance towards the target within tens of steps (FermiNet's x1.1 per 100 steps takes thousands).
The width changes only between steps, never within the moves of one step.

Initial walkers: electrons are assigned to atoms so that each atom is as neutral as the total
charge allows and spins pair up on each atom (`assign_electrons`), then placed at their nucleus
plus Gaussian noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet.errors import InputError
from vmcjet.molecule import Molecule

Array = jax.Array
Params = Any


class McmcState(NamedTuple):
    """State of the sampler.

    Attributes:
        walkers: electron positions, shape (B, n, 3), bohr.
        log_abs_psi: log|psi| of each walker, shape (B,).
        width: proposal standard deviation, scalar, bohr.
        acceptance: fraction of proposals accepted during the last step, scalar in [0, 1].
    """

    walkers: Array
    log_abs_psi: Array
    width: Array
    acceptance: Array


def init_state(
    log_abs_psi_fn: Callable[[Params, Array], Array], params: Params, walkers: Array, width: float
) -> McmcState:
    """Sampler state for given walkers (B, n, 3) bohr and an initial width (bohr)."""
    log_abs_psi = jax.vmap(log_abs_psi_fn, in_axes=(None, 0))(params, walkers)
    return McmcState(
        walkers, log_abs_psi, jnp.asarray(width, walkers.dtype), jnp.zeros((), walkers.dtype)
    )


def _metropolis_move(batch_log_psi, params, walkers, log_psi, width, key):
    """One all-electron move of every walker; returns (walkers, log_psi, accepted (B,) bool)."""
    key_step, key_accept = jax.random.split(key)
    noise = jax.random.normal(key_step, walkers.shape, dtype=walkers.dtype)
    proposal = walkers + width * noise
    proposal_log_psi = batch_log_psi(params, proposal)
    log_uniform = jnp.log(jax.random.uniform(key_accept, log_psi.shape, dtype=walkers.dtype))
    # A NaN proposal (log|psi| not finite) compares False and is rejected.
    accepted = log_uniform < 2.0 * (proposal_log_psi - log_psi)
    walkers = jnp.where(accepted[:, None, None], proposal, walkers)
    log_psi = jnp.where(accepted, proposal_log_psi, log_psi)
    return walkers, log_psi, accepted


def make_mcmc_step(
    log_abs_psi_fn: Callable[[Params, Array], Array],
    *,
    moves: int,
    target_acceptance: float = 0.5,
    adapt_rate: float = 1.0,
    min_width: float = 1e-3,
    max_width: float = 2.0,
) -> Callable[..., tuple[McmcState, Array]]:
    """Builds a pure sampler step: `moves` Metropolis moves, then one width adaptation.

    Args:
        log_abs_psi_fn: (params, electrons (n, 3) bohr) -> scalar log|psi|.
        moves: Metropolis moves per step (>= 1).
        target_acceptance: acceptance rate the width adapts towards, in (0, 1).
        adapt_rate: width *= exp(adapt_rate * (acceptance - target)) after each step (0: fixed).
        min_width: lower bound of the width, bohr.
        max_width: upper bound of the width, bohr.

    Returns:
        `step(params, state, *, key) -> (state, acceptance)`: acceptance is the fraction of the
        B * moves proposals accepted (scalar). log|psi| of the incoming walkers is recomputed with
        `params` first, so the state stays valid after a parameter update.

    Raises:
        InputError: for moves < 1, a target outside (0, 1) or inconsistent width bounds.
    """
    if moves < 1:
        raise InputError(f"mcmc moves={moves} must be at least 1")
    if not 0.0 < target_acceptance < 1.0:
        raise InputError(f"target_acceptance={target_acceptance} must lie strictly in (0, 1)")
    if not 0.0 < min_width <= max_width:
        raise InputError(f"width bounds ({min_width}, {max_width}) need 0 < min_width <= max_width")
    batch_log_psi = jax.vmap(log_abs_psi_fn, in_axes=(None, 0))

    def step(params: Params, state: McmcState, *, key: Array) -> tuple[McmcState, Array]:
        def body(i, carry):
            walkers, log_psi, accepted = carry
            walkers, log_psi, accept = _metropolis_move(
                batch_log_psi, params, walkers, log_psi, state.width, jax.random.fold_in(key, i)
            )
            return walkers, log_psi, accepted + jnp.sum(accept.astype(walkers.dtype))

        log_psi = batch_log_psi(params, state.walkers)
        zero = jnp.zeros((), state.walkers.dtype)
        walkers, log_psi, accepted = jax.lax.fori_loop(
            0, moves, body, (state.walkers, log_psi, zero)
        )
        acceptance = accepted / (moves * walkers.shape[0])
        factor = jnp.exp(adapt_rate * (acceptance - target_acceptance))
        width = jnp.clip(state.width * factor, min_width, max_width)
        return McmcState(walkers, log_psi, width, acceptance), acceptance

    return step


def _neutral_counts(charges: np.ndarray, n_electrons: int) -> np.ndarray:
    """Electrons per atom (n_atoms,) summing to n_electrons, each atom as neutral as possible.

    Cations lose electrons from the atom with the most electrons, anions gain them on the atom
    with the largest Z - count (first index on ties). At most |charge| changes.
    """
    counts = np.rint(charges).astype(int)
    while counts.sum() > n_electrons:
        counts[np.argmax(counts)] -= 1
    while counts.sum() < n_electrons:
        counts[np.argmax(charges - counts)] += 1
    return counts


def assign_electrons(molecule: Molecule) -> tuple[np.ndarray, np.ndarray]:
    """Which atom each alpha and each beta electron starts at.

    Deterministic and bounded (at most n_electrons adjustments): every atom first gets
    floor(c/2) alpha and ceil(c/2) beta electrons (c: its electron count); then single spins are
    flipped, one at a time, on the atom where the flip best balances alpha and beta, until the
    totals are N_alpha and N_beta. Unpaired electrons of odd atoms are flipped first.

    Args:
        molecule: the molecule (nuclear charges, total charge, spin).

    Returns:
        (alpha_atoms (n_alpha,), beta_atoms (n_beta,)): atom indices, ints.

    Raises:
        InputError: if the charge and spin leave no electrons or an impossible spin.
    """
    n, n_alpha, n_beta = molecule.n_electrons, molecule.n_alpha, molecule.n_beta
    if n < 1 or n_alpha < 0 or n_beta < 0 or n_alpha + n_beta != n:
        raise InputError(
            f"charge {molecule.charge} and spin {molecule.spin} of {molecule.name} give "
            f"{n} electrons ({n_alpha} alpha, {n_beta} beta); choose a consistent charge and spin"
        )
    counts = _neutral_counts(np.asarray(molecule.charges, dtype=float), n)
    alpha = counts // 2
    for _ in range(abs(n_alpha - int(alpha.sum()))):
        beta = counts - alpha
        if alpha.sum() < n_alpha:
            alpha[np.argmax(np.where(beta > 0, beta - alpha, np.iinfo(int).min))] += 1
        else:
            alpha[np.argmax(np.where(alpha > 0, alpha - beta, np.iinfo(int).min))] -= 1
    atoms = np.arange(len(counts))
    return np.repeat(atoms, alpha), np.repeat(atoms, counts - alpha)


def init_walkers(
    molecule: Molecule,
    batch_size: int,
    *,
    key: Array,
    spread: float = 1.0,
    dtype: Any = jnp.float32,
) -> Array:
    """Initial walkers: each electron at its assigned nucleus plus Gaussian noise.

    Args:
        molecule: the molecule.
        batch_size: number of walkers B.
        key: PRNG key, the only source of randomness.
        spread: standard deviation of the noise, bohr.
        dtype: floating dtype of the walkers.

    Returns:
        Walkers, shape (B, n, 3), bohr; alpha electrons first.

    Raises:
        InputError: for batch_size < 1 or spread <= 0 (and see `assign_electrons`).
    """
    if batch_size < 1 or spread <= 0:
        raise InputError(f"batch_size={batch_size} and spread={spread} must both be positive")
    alpha_atoms, beta_atoms = assign_electrons(molecule)
    centres = np.asarray(molecule.coords)[np.concatenate([alpha_atoms, beta_atoms])]
    noise = jax.random.normal(key, (batch_size, *centres.shape), dtype=dtype)
    return jnp.asarray(centres, dtype=dtype)[None] + spread * noise

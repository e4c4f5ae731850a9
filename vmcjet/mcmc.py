"""Metropolis-Hastings sampling of |psi|^2 with Gaussian, nucleus-scaled or Langevin moves.

Each walker is one configuration of all n electrons, (n, 3) bohr; u = log|psi|. A move proposes
new positions for every electron at once, each electron independently from a Gaussian with its own
mean m_i(r) and width s_i(r) (bohr):

    r'_i = m_i(r) + s_i(r) xi_i,  xi_i ~ N(0, 1_3),
    log q(r -> r') = sum_i [-3 log s_i(r) - |r'_i - m_i(r)|^2 / (2 s_i(r)^2)] + const,

and accepts it with probability min(1, A),

    log A = 2 (u(r') - u(r)) + log q(r' -> r) - log q(r -> r'),

the Hastings ratio making |psi|^2 the stationary distribution for any proposal of this form.
Three proposals (`MCMC_PROPOSALS`), all built on one global width w (bohr):

- "gaussian": m_i = r_i, s_i = w. Symmetric: the Hastings term is exactly zero.
- "nucleus-scaled": m_i = r_i, s_i(r) = w min(1, l_i(r) / 1 bohr) with the length scale
  l_i(r) = min_I (|r_i - R_I| + 1 / Z_I) over the nuclei I (position R_I bohr, charge Z_I > 0).
  An electron in the core of a heavy nucleus (|r_i - R_I| ~ 1/Z_I) gets a step ~2 w / Z_I, so the
  core no longer sets the step of everybody else; valence electrons (l_i >= 1 bohr) get w. The
  width depends on the position, so the proposal is not symmetric and the Hastings term matters.
- "langevin" (Metropolis-adjusted Langevin, MALA): a Langevin step of time tau_i = s_i^2 with the
  nucleus-scaled s_i (constant s_i = w when no nuclei are given): m_i = r_i + tau_i v_i, where
  v_i = grad_i u is the drift of |psi|^2 (dr = grad u dt + dW) limited per electron in Umrigar's
  way, v_i <- v_i 2 / (1 + sqrt(1 + 2 tau_i |v_i|^2)). The limit leaves small drifts unchanged and
  bounds the drift step tau_i |v_i| by sqrt(2 tau_i), about one diffusion step, where |v_i| is
  large: at a nucleus (|v_i| -> Z) and at a node of psi (|v_i| -> infinity). The reverse density
  log q(r' -> r) uses the drift and widths at r', so every move needs grad u at the proposal; it
  is carried from move to move (one value-and-gradient evaluation per move).

Width adaptation: after the `moves` moves of one step, w is multiplied by
exp(adapt_rate * (acceptance - target)) and clipped to [min_width, max_width]. This moves the
acceptance towards the target within tens of steps (FermiNet's x1.1 per 100 steps takes thousands).
The width changes only between steps, never within the moves of one step, so each step is an
exact Metropolis-Hastings chain for |psi|^2.

Initial walkers: electrons are assigned to atoms so that each atom is as neutral as the total
charge allows and spins pair up on each atom (`assign_electrons`), then placed at their nucleus
plus Gaussian noise.

Mobility (`core_electrons`, `nearest_nucleus_distances`): `vmcjet eval` reports how far core-like
and valence-like electrons move per step and the step-to-step autocorrelation of their distance to
the nearest nucleus (vmcjet.evaluate).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet.config import MCMC_PROPOSALS
from vmcjet.errors import InputError
from vmcjet.molecule import Molecule

Array = jax.Array
Params = Any

REFERENCE_LENGTH = 1.0  # bohr: electrons whose length scale l_i exceeds this get the full width
CORE_MIN_CHARGE = 3.0  # nuclei with Z >= 3 have a 1s core (mobility measure)


class McmcState(NamedTuple):
    """State of the sampler.

    Attributes:
        walkers: electron positions, shape (B, n, 3), bohr.
        log_abs_psi: log|psi| of each walker, shape (B,).
        width: global proposal width w, scalar, bohr.
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


def _electron_nucleus_distances(electrons: Array, nuclei: Array) -> Array:
    """|r_i - R_I|: electrons (..., n, 3), nuclei (N, 3) bohr -> (..., n, N) bohr."""
    lead = (1,) * (electrons.ndim - 1)
    nuclei = jnp.reshape(jnp.asarray(nuclei, electrons.dtype), lead + nuclei.shape)
    return jnp.linalg.norm(electrons[..., None, :] - nuclei, axis=-1)


def nearest_nucleus_distances(electrons: Array, nuclei: Array) -> Array:
    """Distance of each electron to its nearest nucleus.

    Args:
        electrons: (..., n, 3) bohr.
        nuclei: (N, 3) bohr.

    Returns:
        (..., n) bohr.
    """
    return jnp.min(_electron_nucleus_distances(electrons, nuclei), axis=-1)


def core_electrons(walkers: Array, nuclei: Array, charges: Array) -> Array:
    """Core-like electrons: in each walker, the two electrons nearest each nucleus with Z >= 3.

    Args:
        walkers: (B, n, 3) bohr.
        nuclei: (N, 3) bohr.
        charges: (N,) nuclear charges.

    Returns:
        (B, n) bool; all False when no nucleus has Z >= 3.
    """
    distances = _electron_nucleus_distances(walkers, nuclei)
    rank = jnp.argsort(jnp.argsort(distances, axis=1), axis=1)
    heavy = np.reshape(np.asarray(charges) >= CORE_MIN_CHARGE, (1, 1, -1))
    return jnp.any((rank < 2) & heavy, axis=-1)


def nucleus_scaled_widths(electrons: Array, nuclei: Array, charges: Array, width: Array) -> Array:
    """Per-electron widths s_i = width * min(1, min_I (|r_i - R_I| + 1/Z_I) / 1 bohr).

    Args:
        electrons: (..., n, 3) bohr.
        nuclei: (N, 3) bohr.
        charges: (N,) nuclear charges Z_I > 0.
        width: global width w, scalar, bohr.

    Returns:
        (..., n) bohr, each in [w min(1, 1/max Z), w].
    """
    distances = _electron_nucleus_distances(electrons, nuclei)
    lead = (1,) * (electrons.ndim - 1)
    core_radii = jnp.reshape(1.0 / jnp.asarray(charges, electrons.dtype), lead + charges.shape)
    length = jnp.min(distances + core_radii, axis=-1)
    return width * jnp.minimum(length / REFERENCE_LENGTH, 1.0)


def limited_drift(grad_log_psi: Array, tau: Array) -> Array:
    """Umrigar-style per-electron drift limit: v_i 2 / (1 + sqrt(1 + 2 tau_i |v_i|^2)).

    Args:
        grad_log_psi: v = grad log|psi|, (B, n, 3), 1/bohr.
        tau: Langevin time step of each electron, (B, n), bohr^2.

    Returns:
        (B, n, 3) 1/bohr; tau_i |result_i| <= sqrt(2 tau_i); zero where v is not finite.
    """
    squared = jnp.sum(grad_log_psi**2, axis=-1)
    factor = 2.0 / (1.0 + jnp.sqrt(1.0 + 2.0 * tau * squared))
    drift = factor[..., None] * grad_log_psi
    return jnp.where(jnp.isfinite(drift), drift, 0.0)


def log_proposal_density(target: Array, mean: Array, scale: Array) -> Array:
    """log q of independent per-electron Gaussians, up to a constant that cancels in the ratio.

    Args:
        target: proposed positions, (B, n, 3) bohr.
        mean: proposal means, (B, n, 3) bohr.
        scale: proposal widths, (B, n) bohr.

    Returns:
        (B,): sum_i [-3 log s_i - |x_i - m_i|^2 / (2 s_i^2)].
    """
    squared = jnp.sum((target - mean) ** 2, axis=-1)
    return jnp.sum(-3.0 * jnp.log(scale) - squared / (2.0 * scale**2), axis=-1)


Proposal = Callable[[Array, Array, Array], tuple[Array, Array]]


def make_proposal(kind: str, nuclei: Array | None = None, charges: Array | None = None) -> Proposal:
    """The proposal `(walkers (B, n, 3), grad log|psi| (B, n, 3), width) -> (mean, scale)`.

    Args:
        kind: one of `MCMC_PROPOSALS`.
        nuclei: (N, 3) bohr; needed for "nucleus-scaled", optional for "langevin".
        charges: (N,) nuclear charges, all > 0; given together with `nuclei`.

    Returns:
        A function giving the proposal mean (B, n, 3) bohr and per-electron widths (B, n) bohr.

    Raises:
        InputError: for an unknown kind, missing nuclei, or non-positive charges.
    """
    if kind not in MCMC_PROPOSALS:
        raise InputError(f"mcmc proposal '{kind}' is not one of {', '.join(MCMC_PROPOSALS)}")
    if (nuclei is None) != (charges is None):
        raise InputError("mcmc proposal: give nuclei and charges together")
    if kind == "nucleus-scaled" and nuclei is None:
        raise InputError("mcmc proposal 'nucleus-scaled' needs the nuclei")
    if charges is not None and not np.all(np.asarray(charges) > 0):
        raise InputError(f"mcmc proposal: nuclear charges {charges} must all be positive")
    if nuclei is not None:
        nuclei, charges = np.asarray(nuclei, float), np.asarray(charges, float)
    scaled = kind != "gaussian" and nuclei is not None

    def propose(walkers: Array, grad_log_psi: Array, width: Array) -> tuple[Array, Array]:
        if scaled:
            scale = nucleus_scaled_widths(walkers, nuclei, charges, width)
        else:
            scale = jnp.full(walkers.shape[:-1], width, walkers.dtype)
        if kind != "langevin":
            return walkers, scale
        tau = scale**2
        return walkers + tau[..., None] * limited_drift(grad_log_psi, tau), scale

    return propose


def _metropolis_hastings_move(evaluate, propose, params, carry, width, key):
    """One all-electron move of every walker.

    `carry` is (walkers (B, n, 3), log|psi| (B,), grad log|psi| (B, n, 3)); returns the new carry
    and accepted (B,) bool.
    """
    walkers, log_psi, grad = carry
    key_step, key_accept = jax.random.split(key)
    mean, scale = propose(walkers, grad, width)
    noise = jax.random.normal(key_step, walkers.shape, dtype=walkers.dtype)
    proposal = mean + scale[..., None] * noise
    proposal_log_psi, proposal_grad = evaluate(params, proposal)
    reverse_mean, reverse_scale = propose(proposal, proposal_grad, width)
    hastings = log_proposal_density(walkers, reverse_mean, reverse_scale) - log_proposal_density(
        proposal, mean, scale
    )
    log_uniform = jnp.log(jax.random.uniform(key_accept, log_psi.shape, dtype=walkers.dtype))
    # A NaN proposal (log|psi| not finite) compares False and is rejected.
    accepted = log_uniform < 2.0 * (proposal_log_psi - log_psi) + hastings
    walkers = jnp.where(accepted[:, None, None], proposal, walkers)
    log_psi = jnp.where(accepted, proposal_log_psi, log_psi)
    grad = jnp.where(accepted[:, None, None], proposal_grad, grad)
    return (walkers, log_psi, grad), accepted


def _batch_evaluator(log_abs_psi_fn, with_gradient: bool):
    """`(params, walkers (B, n, 3)) -> (log|psi| (B,), grad log|psi| (B, n, 3) or zeros)`."""
    if with_gradient:
        return jax.vmap(jax.value_and_grad(log_abs_psi_fn, argnums=1), in_axes=(None, 0))
    batch_log_psi = jax.vmap(log_abs_psi_fn, in_axes=(None, 0))
    return lambda params, walkers: (batch_log_psi(params, walkers), jnp.zeros_like(walkers))


def make_mcmc_step(
    log_abs_psi_fn: Callable[[Params, Array], Array],
    *,
    moves: int,
    proposal: str = "gaussian",
    nuclei: Array | None = None,
    charges: Array | None = None,
    target_acceptance: float = 0.5,
    adapt_rate: float = 1.0,
    min_width: float = 1e-3,
    max_width: float = 2.0,
) -> Callable[..., tuple[McmcState, Array]]:
    """Builds a pure sampler step: `moves` Metropolis-Hastings moves, then one width adaptation.

    Args:
        log_abs_psi_fn: (params, electrons (n, 3) bohr) -> scalar log|psi|.
        moves: Metropolis-Hastings moves per step (>= 1).
        proposal: one of `MCMC_PROPOSALS` (see the module docstring).
        nuclei: nuclear positions (N, 3) bohr, for the nucleus-scaled widths.
        charges: nuclear charges (N,), all > 0, given with `nuclei`.
        target_acceptance: acceptance rate the width adapts towards, in (0, 1).
        adapt_rate: width *= exp(adapt_rate * (acceptance - target)) after each step (0: fixed).
        min_width: lower bound of the global width, bohr.
        max_width: upper bound of the global width, bohr.

    Returns:
        `step(params, state, *, key) -> (state, acceptance)`: acceptance is the fraction of the
        B * moves proposals accepted (scalar). log|psi| of the incoming walkers is recomputed with
        `params` first, so the state stays valid after a parameter update.

    Raises:
        InputError: for moves < 1, a target outside (0, 1), inconsistent width bounds, or an
            unknown proposal or one without the nuclei it needs.
    """
    if moves < 1:
        raise InputError(f"mcmc moves={moves} must be at least 1")
    if not 0.0 < target_acceptance < 1.0:
        raise InputError(f"target_acceptance={target_acceptance} must lie strictly in (0, 1)")
    if not 0.0 < min_width <= max_width:
        raise InputError(f"width bounds ({min_width}, {max_width}) need 0 < min_width <= max_width")
    propose = make_proposal(proposal, nuclei, charges)
    evaluate = _batch_evaluator(log_abs_psi_fn, with_gradient=proposal == "langevin")

    def step(params: Params, state: McmcState, *, key: Array) -> tuple[McmcState, Array]:
        def body(i, carry):
            carry, accepted = carry
            carry, accept = _metropolis_hastings_move(
                evaluate, propose, params, carry, state.width, jax.random.fold_in(key, i)
            )
            return carry, accepted + jnp.sum(accept.astype(state.walkers.dtype))

        zero = jnp.zeros((), state.walkers.dtype)
        start = (state.walkers, *evaluate(params, state.walkers))
        (walkers, log_psi, _), accepted = jax.lax.fori_loop(0, moves, body, (start, zero))
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

"""Observables beyond the energy, estimated at evaluation: <S^2>, the dipole moment, the
one-electron density and the forces on the nuclei.

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

One-electron density, spin-resolved: a histogram of the electron positions on a regular grid of
voxels (`DensityGrid`), divided by the samples and the voxel volume: electrons per bohr^3 for
alpha and beta electrons. Its integral over the box is the mean number of electrons inside it
(the electron count when the box holds all the density).

Dipole moment (atomic units, e bohr; DEBYE_PER_AU converts): relative to the centre of nuclear
charge C = sum_I Z_I R_I / sum_I Z_I, mu = sum_I Z_I (R_I - C) - sum_i (r_i - C), where the
nuclear sum vanishes by the choice of C, so mu = -sum_i (r_i - C) per walker. For a neutral
molecule mu does not depend on the origin.

Forces on the nuclei (hartree/bohr): the bare Hellmann-Feynman estimator, and the zero-variance
(Assaraf-Caffarel) estimator with the zero-bias (Pulay) term, which equals -dE/dR_I at fixed
parameters also for an inexact psi (`force_terms_fn`, `zv_zb_forces`; docs/observables.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet.errors import InputError

OBSERVABLES = ("s2", "dipole", "density", "forces")

SignedLogPsi = Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]


def check_with_ecp(names: tuple[str, ...], ecp: str) -> None:
    """Refuses forces with an effective core potential (system.ecp `ecp`).

    Raises:
        InputError: "forces" in `names` and `ecp` not empty.
    """
    if ecp.strip() and "forces" in names:
        raise InputError(
            "forces with an ECP are not implemented (the non-local part's nuclear derivative); "
            'drop forces from the observables or run all-electron (system.ecp = "")'
        )


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


class DensityGrid(NamedTuple):
    """A box [lower, upper] (bohr, per axis) cut into `points` voxels along each axis."""

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]
    points: int

    def edges(self, axis: int) -> np.ndarray:
        """Voxel edges along `axis`, bohr, shape (points + 1,)."""
        return np.linspace(self.lower[axis], self.upper[axis], self.points + 1)

    @property
    def voxel_volume(self) -> float:
        widths = (np.asarray(self.upper) - np.asarray(self.lower)) / self.points
        return float(np.prod(widths))


def density_grid(
    coords: Any, electrons: Any, *, points: int = 40, outside: float = 1e-3
) -> DensityGrid:
    """The default grid: the nuclei's extent (`coords` (N, 3) bohr) plus the smallest margin (at
    least 1 bohr) that leaves at most a fraction `outside` of the sample `electrons` (M, 3) bohr
    outside the box, the same margin on every side."""
    coords, electrons = np.asarray(coords, float), np.asarray(electrons, float)
    low, high = coords.min(axis=0), coords.max(axis=0)
    beyond = np.max(np.maximum(low - electrons, electrons - high), axis=1)  # (M,) bohr
    margin = max(1.0, float(np.quantile(beyond, 1.0 - outside)))
    return DensityGrid(tuple(low - margin), tuple(high + margin), points)


def density_counts_fn(
    grid: DensityGrid, n_alpha: int
) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """`(walkers (B, n, 3), weights (B,)) -> (counts (2, points**3), inside (B,))`: the weighted
    number of alpha and beta electrons per voxel (flat C order over x, y, z) and the number of
    each walker's electrons inside the box."""
    lower, upper = np.asarray(grid.lower), np.asarray(grid.upper)
    size = grid.points

    def counts(walkers: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
        scaled = (walkers - lower[None, None]) / (upper - lower)[None, None] * size
        cell = jnp.floor(scaled).astype(jnp.int32)  # (B, n, 3)
        inside = jnp.all((cell >= 0) & (cell < size), axis=-1)  # (B, n)
        flat = (cell[..., 0] * size + cell[..., 1]) * size + cell[..., 2]
        spin = (jnp.arange(walkers.shape[1]) >= n_alpha).astype(jnp.int32)
        index = jnp.where(inside, spin[None] * size**3 + flat, 0)
        mass = jnp.where(inside, weights[:, None], 0).astype(walkers.dtype)
        total = jnp.zeros(2 * size**3, walkers.dtype).at[index.ravel()].add(mass.ravel())
        return total.reshape(2, size**3), jnp.sum(inside, axis=1).astype(walkers.dtype)

    return counts


LogPsiAtNuclei = Callable[[Any, jax.Array, jax.Array], jax.Array]


class ForceTerms(NamedTuple):
    """Per-walker ingredients of the force estimators, each (n_atoms, 3) hartree/bohr except
    `d_log_psi` (1/bohr); see `force_terms_fn` and `zv_zb_forces`.

    Attributes:
        bare: the Hellmann-Feynman estimator (electron-nucleus attraction plus the nuclear
            repulsion); infinite variance.
        zero_variance: the same expectation with the singular part removed (Assaraf-Caffarel).
        d_log_psi: d log|psi| / d R_I at fixed parameters (the Pulay term's ingredient).
    """

    bare: jax.Array
    zero_variance: jax.Array
    d_log_psi: jax.Array


def nuclear_repulsion_forces(coords: Any, charges: Any) -> np.ndarray:
    """-dV_NN/dR_I = sum_{J != I} Z_I Z_J (R_I - R_J) / |R_I - R_J|^3, (N, 3) hartree/bohr."""
    coords, charges = np.asarray(coords, float), np.asarray(charges, float)
    diff = coords[:, None, :] - coords[None, :, :]
    distance = np.linalg.norm(diff, axis=-1)
    np.fill_diagonal(distance, np.inf)
    pair = (charges[:, None] * charges[None, :] / distance**3)[..., None] * diff
    return pair.sum(axis=1)


def force_terms_fn(
    log_psi_at: LogPsiAtNuclei, coords: Any, charges: Any
) -> Callable[[Any, jax.Array], ForceTerms]:
    """`(params, electrons (n, 3) bohr) -> ForceTerms` for the nuclei `coords` (N, 3) bohr with
    `charges` (N,); `log_psi_at(params, electrons, nuclei)` is log|psi| with the nuclei moved to
    `nuclei` (N, 3) at fixed parameters. One backward pass per walker gives both
    g_i = d log|psi| / d r_i and d log|psi| / d R_I. With x = r_i - R_I:

        bare_I = Z_I sum_i x / |x|^3 + F_NN,I
        zero_variance_I = Z_I sum_i [g_i / |x| - (x . g_i) x / |x|^3] + F_NN,I

    (formulas and their derivation: docs/observables.md, "Forces")."""
    nuclei = jnp.asarray(np.asarray(coords, float))
    z = jnp.asarray(np.asarray(charges, float))
    repulsion = jnp.asarray(nuclear_repulsion_forces(coords, charges))
    gradients = jax.grad(log_psi_at, argnums=(1, 2))

    def terms(params: Any, electrons: jax.Array) -> ForceTerms:
        dtype = electrons.dtype
        at = nuclei.astype(dtype)
        g, d_log_psi = gradients(params, electrons, at)
        x = electrons[None, :, :] - at[:, None, :]  # (N, n, 3)
        r = jnp.linalg.norm(x, axis=-1, keepdims=True)
        charge = z.astype(dtype)[:, None]
        bare = charge * jnp.sum(x / r**3, axis=1)
        radial = jnp.sum(x * g[None], axis=-1, keepdims=True)
        tangential = g[None] / r - radial * x / r**3
        zero_variance = charge * jnp.sum(tangential, axis=1)
        shift = repulsion.astype(dtype)
        return ForceTerms(bare + shift, zero_variance + shift, d_log_psi)

    return terms


def zv_zb_forces(terms: ForceTerms, energies: jax.Array, weights: jax.Array) -> jax.Array:
    """Per-walker values (B, N, 3) hartree/bohr whose `weights`-mean is the zero-variance,
    zero-bias force estimate of the batch,

        F_I = mean_b ZV_b - 2 B / (B - 1) mean_b (E_b - E) (d_b - d),

    with E and d the weighted means of the local energies (B,) and of d log|psi| / d R_I (the
    Pulay term, which makes F_I = -dE/dR_I also for an inexact psi; B / (B - 1) makes the
    covariance unbiased). `weights` (B,) are 1 for the walkers that count and 0 for the rest."""
    count = jnp.sum(weights)

    def weighted_mean(values: jax.Array) -> jax.Array:
        shaped = weights.reshape(weights.shape + (1,) * (values.ndim - 1))
        return jnp.sum(jnp.where(shaped > 0, values, 0), axis=0) / jnp.maximum(count, 1.0)

    safe_energies = jnp.where(weights > 0, energies, 0)
    residual = (safe_energies - weighted_mean(safe_energies))[:, None, None]
    centred = terms.d_log_psi - weighted_mean(terms.d_log_psi)[None]
    pulay = -2.0 * count / jnp.maximum(count - 1.0, 1.0) * residual * centred
    return terms.zero_variance + pulay

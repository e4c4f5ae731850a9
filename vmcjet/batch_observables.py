"""Observables on one batch of walkers, reduced to means over the walkers whose values are finite:
<S^2>, the dipole (e bohr) and the forces on the nuclei (hartree/bohr; bare Hellmann-Feynman and
ZV-ZB). `vmcjet eval` averages them per step (vmcjet.evaluate); training can monitor them every
`observables_every` steps (`make_monitor`). The estimators themselves are in vmcjet.observables.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from vmcjet import observables
from vmcjet.hamiltonian import over_walkers
from vmcjet.matmul_precision import with_matmul_precision
from vmcjet.session import Session
from vmcjet.step_parts import make_sampler_and_local_energy


def make_observables_fn(
    session: Session, names: tuple[str, ...]
) -> Callable[[Any, jax.Array], dict[str, jax.Array]]:
    """`(params, walkers (B, n, 3)) -> {name: per-walker values (B,) or (B, 3)}` for `names`,
    in walker chunks of `laplacian.walker_batch_size` when set (<S^2> evaluates psi n_alpha n_beta
    times per walker) and at the config's `matmul_precision`."""
    molecule, apply, config = session.molecule, session.wavefunction.apply, session.config
    estimators: dict[str, Callable[[Any, jax.Array], jax.Array]] = {}
    if "s2" in names:
        estimators["s2"] = observables.spin_squared_fn(apply, molecule.n_alpha, molecule.n_beta)
    if "dipole" in names:
        dipole = observables.dipole_fn(molecule.coords, molecule.charges)
        estimators["dipole"] = lambda params, electrons: dipole(electrons)

    def values(params: Any, walkers: jax.Array) -> dict[str, jax.Array]:
        chunk = config.laplacian.walker_batch_size
        return {
            name: over_walkers(functools.partial(fn, params), walkers, chunk)
            for name, fn in estimators.items()
        }

    return with_matmul_precision(values, config.matmul_precision)


def make_force_terms_fn(session: Session) -> Callable[[Any, jax.Array], observables.ForceTerms]:
    """`(params, walkers (B, n, 3)) -> ForceTerms` with leaves (B, N, 3) of the session's
    wavefunction (log|psi| differentiated with respect to the nuclei it is given, at fixed
    parameters), in chunks of `laplacian.walker_batch_size` when set and at the config's
    `matmul_precision`."""
    apply, molecule, config = session.wavefunction.apply, session.molecule, session.config
    terms = observables.force_terms_fn(
        lambda params, electrons, nuclei: apply(params, electrons, nuclei=nuclei)[1],
        molecule.coords,
        molecule.charges,
    )

    def batch(params: Any, walkers: jax.Array) -> observables.ForceTerms:
        chunk = config.laplacian.walker_batch_size
        return over_walkers(functools.partial(terms, params), walkers, chunk)

    return with_matmul_precision(batch, config.matmul_precision)


def step_forces(terms: observables.ForceTerms, energies: jax.Array, finite: jax.Array) -> jax.Array:
    """(2, N, 3) hartree/bohr: this step's mean bare Hellmann-Feynman and ZV-ZB forces over the
    walkers whose local energy and force terms are finite (none: NaN)."""
    flat = jnp.concatenate([t.reshape(t.shape[0], -1) for t in terms], axis=1)
    ok = finite & jnp.all(jnp.isfinite(flat), axis=1)
    zv_zb = observables.zv_zb_forces(terms, energies, ok.astype(energies.dtype))
    return jnp.stack([finite_mean(terms.bare, ok), finite_mean(zv_zb, ok)])


def make_batch_means(
    session: Session, names: tuple[str, ...]
) -> Callable[[Any, jax.Array, jax.Array], dict[str, jax.Array]]:
    """`(params, walkers (B, n, 3), local energies (B,)) -> {name: mean over the walkers}` of
    s2 (), dipole (3,) e bohr and forces (2, N, 3) hartree/bohr (bare, ZV-ZB) among `names`,
    each over the walkers whose local energy and own value are finite (none: NaN)."""
    observables_of = make_observables_fn(session, names)
    force_terms = make_force_terms_fn(session) if "forces" in names else None

    def means(params: Any, walkers: jax.Array, energies: jax.Array) -> dict[str, jax.Array]:
        finite = jnp.isfinite(energies)
        result = {
            name: finite_mean(v, finite) for name, v in observables_of(params, walkers).items()
        }
        if force_terms is not None:
            result["forces"] = step_forces(force_terms(params, walkers), energies, finite)
        return result

    return means


MONITORED = ("s2", "dipole", "forces")  # observables `observables_every` can monitor


def make_monitor(
    session: Session, names: tuple[str, ...]
) -> Callable[[Any, jax.Array], dict[str, jax.Array]]:
    """`(params, walkers (B, n, 3)) -> {name: batch mean}` of the `MONITORED` observables among
    `names` on one batch (training-time monitoring; `make_batch_means`), jitted. A pure
    function of its arguments: it draws no random numbers and changes no state. With an ECP
    the quadrature grids are not rotated (forces, the one monitored value that uses the local
    energies, are refused with an ECP; the others use them only to skip non-finite walkers)."""
    _, local_energy = make_sampler_and_local_energy(
        session.wavefunction, session.molecule, session.config
    )
    batch_means = make_batch_means(session, tuple(n for n in names if n in MONITORED))

    def monitor(params: Any, walkers: jax.Array) -> dict[str, jax.Array]:
        rotations = None
        if session.molecule.ecp:  # unrotated grids
            rotations = jnp.broadcast_to(jnp.eye(3, dtype=walkers.dtype), (walkers.shape[0], 3, 3))
        return batch_means(params, walkers, local_energy(params, walkers, rotations))

    return jax.jit(monitor)


def finite_mean(values: jax.Array, finite: jax.Array) -> jax.Array:
    """Mean over the walkers (axis 0) of per-walker `values` (B, ...) where `finite` (B,) and
    every entry of the walker's value are finite; NaN when no walker is."""
    ok = finite & jnp.all(jnp.isfinite(values.reshape(values.shape[0], -1)), axis=1)
    mask = ok.reshape(ok.shape + (1,) * (values.ndim - 1))
    total = jnp.sum(jnp.where(mask, values, 0), axis=0)
    count = jnp.maximum(jnp.sum(ok), 1).astype(total.dtype)
    return jnp.where(jnp.any(ok), total / count, jnp.nan)

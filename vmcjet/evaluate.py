"""`vmcjet eval` (MCMC with frozen parameters) and `vmcjet analyze` (stored statistics);
`vmcjet plot` is in vmcjet.plots.

Error bars come from reblocking (vmcjet.statistics) of the per-step mean local energies, so the
autocorrelation between steps is accounted for.

The energy's tau cannot show whether valence electrons move, so `vmcjet eval` also reports the
mobility of core-like and valence-like electrons (`mcmc.core_electrons`: in each walker at the
start, the two electrons nearest each nucleus with Z >= 3; all others are valence-like). Per group:
the correlation between consecutive steps (`mcmc.moves` moves apart) of each electron's distance to
its nearest nucleus, pooled over walkers, electrons and steps (1: frozen, 0: independent), and the
mean squared displacement per move (bohr^2, from the displacement over one step).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet import batch_observables, mcmc, observables, runfolder, statistics
from vmcjet.errors import InputError
from vmcjet.fileio import atomic_path, atomic_write_text
from vmcjet.molecule import Molecule
from vmcjet.session import Session, open_session, restore_state, run_molecule, stream_key
from vmcjet.step_parts import make_sampler_and_local_energy, quadrature_rotations
from vmcjet.train import masked_moments
from vmcjet.units import DEBYE_PER_AU, MILLIHARTREE_PER_HARTREE


def summary(
    energies: np.ndarray, molecule: Molecule, extra: dict[str, float] | None = None
) -> dict[str, Any]:
    """Reblocked estimate of per-step energies (hartree) and the difference to the reference."""
    estimate = statistics.estimate(np.asarray(energies, dtype=np.float64))
    record: dict[str, Any] = {
        "energy": float(estimate.mean),
        "error": float(estimate.error),
        "formatted": str(estimate),
        "autocorrelation_time": float(estimate.tau),
        "samples": int(estimate.n),
        **(extra or {}),
    }
    if molecule.exact_energy is not None:
        record["reference"] = molecule.exact_energy
        record["difference_mha"] = (
            estimate.mean - molecule.exact_energy
        ) * MILLIHARTREE_PER_HARTREE
        record["difference_error_mha"] = estimate.error * MILLIHARTREE_PER_HARTREE
    return record


def mobility_sums(before: jax.Array, after: jax.Array, nuclei: Any, core: jax.Array) -> jax.Array:
    """Sums over walkers and electrons of one sampler step, per group (core-like, valence-like).

    Args:
        before: walkers before the step, (B, n, 3) bohr.
        after: walkers after the step, (B, n, 3) bohr.
        nuclei: nuclear positions, (N, 3) bohr.
        core: core-like electrons, (B, n) bool (`mcmc.core_electrons`).

    Returns:
        (2, 7), rows core and valence; columns: electrons, sum d, sum d^2, sum d', sum d'^2,
        sum d d', sum |r' - r|^2, with d and d' the nearest-nucleus distances (bohr) before and
        after the step.
    """
    d0 = mcmc.nearest_nucleus_distances(before, nuclei)
    d1 = mcmc.nearest_nucleus_distances(after, nuclei)
    squared_step = jnp.sum((after - before) ** 2, axis=-1)
    terms = jnp.stack([jnp.ones_like(d0), d0, d0**2, d1, d1**2, d0 * d1, squared_step], axis=-1)
    groups = jnp.stack([core, ~core]).astype(terms.dtype)
    return jnp.einsum("gbn,bnk->gk", groups, terms)


def mobility(sums: np.ndarray, moves: int, walker_steps: int) -> dict[str, dict[str, float]]:
    """Per group with electrons: electrons per walker, the step-to-step correlation of the
    nearest-nucleus distance, and the mean squared displacement per move (bohr^2).

    Args:
        sums: `mobility_sums` added over the steps, (2, 7).
        moves: MCMC moves per step.
        walker_steps: walkers times steps that went into `sums`.
    """
    result = {}
    for name, row in zip(("core", "valence"), sums, strict=True):
        count, s0, q0, s1, q1, cross, squared_steps = row
        if count == 0:
            continue
        m0, m1 = s0 / count, s1 / count
        spread = np.sqrt(max(q0 / count - m0**2, 0.0) * max(q1 / count - m1**2, 0.0))
        result[name] = {
            "electrons_per_walker": float(count / walker_steps),
            "distance_autocorrelation": float((cross / count - m0 * m1) / spread),
            "msd_per_move": float(squared_steps / (count * moves)),
        }
    return result


def _force_lines(forces: dict[str, Any]) -> list[str]:
    """One line per nucleus and estimator of eval.json's "forces" (hartree/bohr)."""
    lines = []
    for name, label in (("zv_zb", "ZV-ZB"), ("hellmann_feynman", "bare HF")):
        entry = forces[name]
        for atom, (force, error) in enumerate(zip(entry["forces"], entry["errors"], strict=True)):
            components = ", ".join(
                statistics.format_value_error(f, e) for f, e in zip(force, error, strict=True)
            )
            lines.append(f"force {atom:<5} {label:<7} ({components}) Ha/bohr")
        net = ", ".join(
            statistics.format_value_error(f, e)
            for f, e in zip(entry["net"], entry["net_errors"], strict=True)
        )
        lines.append(f"force net   {label:<7} ({net}) Ha/bohr (zero in expectation)")
    lines.append(f"            bare HF: {forces['hellmann_feynman']['note']}")
    return lines


def format_summary(record: dict[str, Any]) -> str:
    lines = [
        f"energy      {record['formatted']} Ha  ({record['samples']} steps, reblocked)",
        f"tau         {record['autocorrelation_time']:.2f} steps",
    ]
    for key in ("variance", "acceptance"):
        if key in record:
            lines.append(f"{key:<11} {record[key]:.4f}")
    if "reference" in record:
        lines.append(
            f"reference   {record['reference']:.6f} Ha; difference "
            f"{record['difference_mha']:+.2f} ± {record['difference_error_mha']:.2f} mHa"
        )
    for name, group in record.get("mobility", {}).items():
        lines.append(
            f"{name:<11} {group['electrons_per_walker']:.0f} electrons/walker: nearest-nucleus "
            f"distance autocorrelation {group['distance_autocorrelation']:.3f} per step, "
            f"msd {group['msd_per_move']:.2e} bohr²/move"
        )
    if "s2" in record:
        lines.append(f"<S^2>       {record['s2']['formatted']}")
    if "density" in record:
        density = record["density"]
        lines.append(
            f"density     {density['file']}: {density['grid_points']}^3 voxels, integral over the "
            f"box {density['integral_formatted']} of {density['electrons']} electrons"
        )
    if "forces" in record:
        lines.extend(_force_lines(record["forces"]))
    if "dipole" in record:
        dipole = record["dipole"]
        components = ", ".join(
            statistics.format_value_error(m, e)
            for m, e in zip(dipole["components_au"], dipole["errors_au"], strict=True)
        )
        lines.append(
            f"dipole      ({components}) e bohr; |mu| = "
            f"{statistics.format_value_error(dipole['magnitude_au'], dipole['magnitude_error_au'])}"
            f" e bohr = {dipole['magnitude_debye']:.3f} ± {dipole['magnitude_error_debye']:.3f} D"
        )
    return "\n".join(lines)


def make_eval_step(
    session: Session,
    names: tuple[str, ...] = (),
    grid: observables.DensityGrid | None = None,
) -> Callable[..., Any]:
    """`step(params, sampler, core, *, key, index) -> (sampler, mean E_L, variance, acceptance,
    mobility sums (2, 7), {observable: mean over the walkers})`, jitted; `index` is the eval
    step's number (it selects the ECP quadrature rotations); `core` (B, n) bool marks
    the core-like electrons; the observables in `names` are averaged over the walkers whose
    local energy and the observable's own value are finite (no such walker: NaN). With a
    density `grid`, "density" maps to (electrons inside the box
    per walker, voxel counts (2, points**3) of this step's walkers)."""
    sample, local_energy = make_sampler_and_local_energy(
        session.wavefunction, session.molecule, session.config
    )
    nuclei = session.molecule.coords
    batch_means = batch_observables.make_batch_means(session, names)
    density_counts = (
        None if grid is None else observables.density_counts_fn(grid, session.molecule.n_alpha)
    )

    molecule, seed = session.molecule, session.config.seed

    def step(
        params: Any, sampler: mcmc.McmcState, core: jax.Array, *, key: jax.Array, index: jax.Array
    ) -> tuple[Any, ...]:
        before = sampler.walkers
        sampler, acceptance = sample(params, sampler, key=key)
        rotations = quadrature_rotations(molecule, seed, "eval_ecp", index, sampler.walkers)
        energies = local_energy(params, sampler.walkers, rotations)
        finite = jnp.isfinite(energies)
        mean, variance = masked_moments(energies, finite)
        mean = jnp.where(jnp.any(finite), mean, jnp.nan)  # no finite walker: no energy
        sums = mobility_sums(before, sampler.walkers, nuclei, core)
        means = batch_means(params, sampler.walkers, energies)
        if density_counts is not None:
            counts, inside = density_counts(sampler.walkers, finite.astype(energies.dtype))
            means["density"] = (
                batch_observables.finite_mean(inside, finite),
                counts,
                jnp.sum(finite),
            )
        return sampler, mean, variance, acceptance, sums, means

    return jax.jit(step)


def _scalar_record(values: list) -> dict[str, Any]:
    if len(values) < 2:
        raise InputError(
            f"only {len(values)} evaluation steps gave a finite observable; evaluate more steps "
            "or check the wavefunction"
        )
    estimate = statistics.estimate(np.asarray(values, dtype=np.float64))
    return {
        "value": estimate.mean,
        "error": estimate.error,
        "formatted": str(estimate),
        "autocorrelation_time": estimate.tau,
    }


DENSITY_FILE = "density.h5"


def write_density(
    folder: Path, grid: observables.DensityGrid, counts: np.ndarray, samples: int
) -> dict[str, Any]:
    """RUN/density.h5 (written to a temporary file, then renamed): datasets `alpha` and `beta`
    (points, points, points) in electrons per bohr^3 on the voxels of `grid` (axes x, y, z) and
    `edges_x`, `edges_y`, `edges_z` (points + 1,) bohr; `samples` walker samples went into the
    voxel `counts` (2, points**3). Returns the eval.json entries describing it."""
    import h5py

    shape = (grid.points,) * 3
    density = counts / (max(samples, 1) * grid.voxel_volume)
    with atomic_path(folder / DENSITY_FILE) as temporary, h5py.File(temporary, "w") as handle:
        handle["alpha"] = density[0].reshape(shape)
        handle["beta"] = density[1].reshape(shape)
        for axis, name in enumerate("xyz"):
            handle[f"edges_{name}"] = grid.edges(axis)
        handle.attrs["samples"] = samples
        handle.attrs["units"] = "electrons per bohr^3; edges in bohr"
    return {
        "file": DENSITY_FILE,
        "grid_points": grid.points,
        "box_lower_bohr": list(grid.lower),
        "box_upper_bohr": list(grid.upper),
        "samples": samples,
    }


def observable_records(series: dict[str, list]) -> dict[str, dict[str, Any]]:
    """Reblocked estimates of the per-step means of each observable (eval.json entries)."""
    records: dict[str, dict[str, Any]] = {}
    if "s2" in series:
        records["s2"] = _scalar_record(series["s2"])
    if "density" in series:  # per step: electrons inside the density's box, per walker
        integral = _scalar_record(series["density"])
        records["density"] = {f"integral_{key}": value for key, value in integral.items()}
    if "dipole" in series:
        steps = np.asarray(series["dipole"], dtype=np.float64)  # (steps, 3)
        parts = [statistics.estimate(steps[:, k]) for k in range(3)]
        mu = np.array([p.mean for p in parts])
        errors = np.array([p.error for p in parts])
        size = float(np.linalg.norm(mu))
        size_error = float(np.linalg.norm(mu * errors) / size) if size > 0 else float(errors.max())
        records["dipole"] = {
            "components_au": mu.tolist(),
            "errors_au": errors.tolist(),
            "magnitude_au": size,
            "magnitude_error_au": size_error,
            "magnitude_debye": size * DEBYE_PER_AU,
            "magnitude_error_debye": size_error * DEBYE_PER_AU,
            "origin": "centre of nuclear charge",
        }
    if "forces" in series:
        records["forces"] = force_records(np.asarray(series["forces"], dtype=np.float64))
    return records


def force_records(steps: np.ndarray) -> dict[str, Any]:
    """eval.json's "forces" from the per-step means (steps, 2, N, 3) of `step_forces`: per
    estimator, forces and reblocked error bars (N, 3) hartree/bohr, and the net force (3,) (the
    sum over nuclei, zero in expectation by translation invariance) with the reblocked error bars
    of the per-step sums (the nuclei's estimates share their electrons, so they are correlated)."""
    records: dict[str, Any] = {"units": "hartree/bohr", "atoms": steps.shape[2]}
    notes = {
        "hellmann_feynman": "infinite variance: its error bar is only indicative",
        "zv_zb": "zero-variance zero-bias estimator: -dE/dR also for an inexact psi",
    }
    for index, name in enumerate(("hellmann_feynman", "zv_zb")):
        parts = [
            [statistics.estimate(steps[:, index, atom, k]) for k in range(3)]
            for atom in range(steps.shape[2])
        ]
        net = [statistics.estimate(steps[:, index, :, k].sum(axis=1)) for k in range(3)]
        records[name] = {
            "forces": [[p.mean for p in atom] for atom in parts],
            "errors": [[p.error for p in atom] for atom in parts],
            "net": [p.mean for p in net],
            "net_errors": [p.error for p in net],
            "note": notes[name],
        }
    return records


# Walker samples (steps x batch) `vmcjet eval` averages over by default: on LiH with the default
# batch of 256 this gave an error bar of 0.066 mHa (docs/results.md, "Optimiser by batch").
EVAL_SAMPLES = 1_000_000
MIN_EVAL_STEPS = 1000


def default_eval_steps(batch_size: int) -> int:
    """ceil(EVAL_SAMPLES / batch_size) steps, at least MIN_EVAL_STEPS (reblocking needs many)."""
    return max(MIN_EVAL_STEPS, -(-EVAL_SAMPLES // batch_size))


def evaluate(
    folder: str | Path,
    steps: int | None = None,
    *,
    observables_text: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """MCMC with the newest checkpoint's parameters for `steps` steps (None:
    `default_eval_steps` of the run's batch), with the observables named in `observables_text`
    (comma-separated; None: the run config's `observables`); writes eval.json."""
    if steps is not None and steps <= 0:
        raise InputError(f"--steps must be positive, got {steps}")
    folder = runfolder.existing_run_folder(folder)
    config = runfolder.read_config(folder)
    names = observables.parse_observables(
        config.observables if observables_text is None else observables_text
    )
    observables.check_with_ecp(names, config.system.ecp)
    steps = default_eval_steps(config.batch_size) if steps is None else steps
    molecule = run_molecule(config)
    session = open_session(config, molecule)
    state, path = restore_state(session, folder / runfolder.CHECKPOINT_DIR, log=log)
    log(f"evaluating {path} (step {int(state.step)})")
    grid = (
        observables.density_grid(molecule.coords, np.asarray(state.sampler.walkers).reshape(-1, 3))
        if "density" in names
        else None
    )
    step = make_eval_step(session, names, grid)
    key = stream_key(jax.random.key(config.seed), "eval")
    sampler, means, variances, acceptances = state.sampler, [], [], []
    core = mcmc.core_electrons(sampler.walkers, molecule.coords, molecule.all_electron_charges)
    sums = np.zeros((2, 7))
    series: dict[str, list] = {name: [] for name in names}
    counts = None if grid is None else np.zeros((2, grid.points**3))
    density_samples = 0
    for t in range(steps):
        sampler, mean, variance, acceptance, step_sums, step_observables = step(
            state.params, sampler, core, key=jax.random.fold_in(key, t), index=t
        )
        if np.isfinite(float(mean)):
            for name, value in step_observables.items():
                if name == "density":
                    value, step_counts, finite_walkers = value
                    counts += np.asarray(step_counts, dtype=np.float64)
                    density_samples += int(finite_walkers)
                if np.all(np.isfinite(value)):  # else no walker had a finite value this step
                    series[name].append(np.asarray(value))
        means.append(float(mean))
        variances.append(float(variance))
        acceptances.append(float(acceptance))
        sums += np.asarray(step_sums, dtype=np.float64)
    extra = {
        "variance": float(np.mean(variances)),
        "acceptance": float(np.mean(acceptances)),
        "proposal": config.mcmc.proposal,
        "width": float(sampler.width),
        "mobility": mobility(sums, config.mcmc.moves, steps * sampler.walkers.shape[0]),
    }
    measured = np.array(means)[np.isfinite(means)]
    if measured.size < 2:
        raise InputError(
            f"only {measured.size} of {steps} evaluation steps had a finite energy; "
            "the checkpoint's wavefunction is unusable (resume from an earlier one)"
        )
    extra["skipped_steps"] = steps - int(measured.size)
    record = {**summary(measured, molecule, extra), **observable_records(series)}
    if grid is not None:
        written = write_density(folder, grid, counts, density_samples)
        record["density"] = {**record["density"], **written, "electrons": molecule.n_electrons}
    atomic_write_text(folder / "eval.json", json.dumps(record, indent=2) + "\n")
    return record


def analyze(folder: str | Path, *, discard: float = 0.5) -> dict[str, Any]:
    """Reblocked energy of the stored training statistics, after discarding a leading fraction."""
    if not 0.0 <= discard < 1.0:
        raise InputError(f"--discard must be in [0, 1), got {discard}")
    folder = runfolder.existing_run_folder(folder)
    column = runfolder.stats_columns(folder)
    total = column["step"].size
    kept = {k: v[int(discard * total) :] for k, v in column.items()}
    measured = np.isfinite(kept["energy"])  # skipped steps have no energy
    if np.count_nonzero(measured) < 4:
        raise InputError(
            f"'{folder}' has {np.count_nonzero(measured)} steps with an energy after discarding "
            f"{discard:.0%}; run longer first"
        )
    energies = kept["energy"][measured]
    extra = {
        "variance": float(np.mean(kept["variance"][measured])),
        "acceptance": float(np.mean(kept["acceptance"])),
        "steps_total": total,
        "skipped_steps": int(np.count_nonzero(~measured)),
    }
    return summary(energies, run_molecule(runfolder.read_config(folder)), extra)

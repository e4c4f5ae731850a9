"""Time and memory of one optimisation step, split into its parts, at one or several batch sizes.

Parts: sampling (the MCMC moves), local energy, gradients (what the optimiser needs: per-walker
gradients O for SPRING, the energy gradient for Adam), the optimiser's update, and the whole
jitted step (it can be faster than the sum: XLA fuses across the parts). Each part is compiled on
its own, with the walker chunks the train step would use, and XLA's compiled memory analysis gives
its temporary memory. All parts of all batch sizes are called in turn (interleaved, so drifting
machine load hits them alike) `repeats` times after one warm-up call; medians are reported, in ms
per step and in microseconds per walker with the ratio to the smallest batch.
`vmcjet bench step` calls `run` (one batch) or `sweep` (`--batch-sizes`, writes a table, JSON and
a plot under benchmarks/results/).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

from vmcjet.bench import interleaved_medians, machine_info
from vmcjet.config import Config
from vmcjet.memory import MIB, default_working_set_mib
from vmcjet.molecule import Molecule
from vmcjet.session import Session, initial_state, open_session, run_molecule
from vmcjet.step_parts import make_step_parts, quadrature_rotations
from vmcjet.train import TrainState

PARTS = ("sampling", "local_energy", "gradients", "update", "whole_step")


def _compiled(fn: Callable[..., Any], *args: Any) -> tuple[Callable[[], Any], float]:
    """A zero-argument call of `fn(*args)`, compiled, and its XLA temporaries (MiB)."""
    compiled = jax.jit(fn).lower(*args).compile()
    return (lambda: compiled(*args)), compiled.memory_analysis().temp_size_in_bytes / MIB


def _opened(config: Config) -> tuple[Molecule, Session, TrainState]:
    """The run's molecule, its session and an initial state (template walkers, no burn-in)."""
    molecule = run_molecule(config)
    session = open_session(config, molecule)
    return molecule, session, initial_state(session, template_only=True)


def _step_call(session: Session, state: TrainState) -> Callable[[], Any]:
    """A zero-argument call of the session's whole jitted step from `state`."""
    key = jax.random.key(0)
    return lambda: session.step(state, root_key=key)


def whole_step(config: Config) -> Callable[[], Any]:
    """A zero-argument call of one whole optimisation step of `config` on an initial state (the
    session compiles it on the first call); the parts are not built."""
    _, session, state = _opened(config)
    return _step_call(session, state)


def step_parts(config: Config) -> dict[str, tuple[Callable[[], Any], float | None]]:
    """Per part: a zero-argument call, compiled, on an initial state, and its temporaries (MiB;
    None for the whole step, which the session compiles)."""
    molecule, session, state = _opened(config)
    wavefunction = session.wavefunction
    optimiser, sample, local_energy, gradient_batch = make_step_parts(
        wavefunction, molecule, config
    )
    key = jax.random.key(0)
    walkers = state.sampler.walkers
    rotations = quadrature_rotations(molecule, config.seed, "ecp", state.step, walkers)
    energies = jax.jit(local_energy)(state.params, walkers, rotations)
    residuals = energies - energies.mean()
    finite = jax.numpy.isfinite(energies)
    batch = jax.jit(gradient_batch)(state.params, walkers, residuals, finite)
    return {
        "sampling": _compiled(lambda p, s: sample(p, s, key=key), state.params, state.sampler),
        "local_energy": _compiled(local_energy, state.params, walkers, rotations),
        "gradients": _compiled(gradient_batch, state.params, walkers, residuals, finite),
        "update": _compiled(optimiser.update, batch, state.opt_state, state.params),
        "whole_step": (_step_call(session, state), None),
    }


def sweep(config: Config, batch_sizes: Sequence[int], *, repeats: int = 15) -> list[dict]:
    """Rows (batch, part, ms, us per walker, ratio of us per walker to the first batch, MiB).

    Every batch's inputs stay alive for the interleaved rounds (SPRING's O of each batch among
    them): at sizes near the machine's memory, time one batch per process.
    """
    parts = {}
    for batch in batch_sizes:
        for name, (fn, mib) in step_parts(dataclasses.replace(config, batch_size=batch)).items():
            parts[(batch, name)] = (fn, mib)
    medians = interleaved_medians({key: fn for key, (fn, _) in parts.items()}, repeats)
    first = batch_sizes[0]
    rows = []
    for (batch, name), ms in medians.items():
        per_walker = 1e3 * ms / batch
        base = 1e3 * medians[(first, name)] / first
        rows.append(
            {
                "batch": batch,
                "part": name,
                "ms": ms,
                "us_per_walker": per_walker,
                "per_walker_ratio": per_walker / base,
                "temp_mib": parts[(batch, name)][1],
            }
        )
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table: one line per batch, per part `ms (us/walker, ratio)` and temporaries."""
    batches = sorted({row["batch"] for row in rows})
    by_key = {(row["batch"], row["part"]): row for row in rows}
    header = "| batch | " + " | ".join(PARTS) + " |"
    lines = [header, "|" + "---|" * (len(PARTS) + 1)]
    for batch in batches:
        cells = []
        for part in PARTS:
            row = by_key[(batch, part)]
            mib = "" if row["temp_mib"] is None else f", {row['temp_mib']:.1f} MiB"
            cells.append(
                f"{row['ms']:.1f} ms ({row['us_per_walker']:.1f} us/w, "
                f"x{row['per_walker_ratio']:.2f}{mib})"
            )
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: Sequence[dict], path: Path) -> bool:
    """Microseconds per walker against the batch, one line per part; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for part in PARTS:
        points = sorted((r["batch"], r["us_per_walker"]) for r in rows if r["part"] == part)
        ax.plot(*zip(*points, strict=True), marker="o", label=part)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("walkers per step")
    ax.set_ylabel("microseconds per walker (median)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_sweep(rows: Sequence[dict], out: Path, stem: str, config: Config, command: str) -> Path:
    """Writes `stem`.md, .json and (with matplotlib) .png under `out`; returns the .md path."""
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "command": command,
        "molecule": config.system.molecule,
        "optimizer": config.optim.optimizer,
        "memory_budget_mib": config.memory_budget_mib,
        "working_set_mib": config.working_set_mib or default_working_set_mib(jax.default_backend()),
        "precision": config.precision,
        "matmul_precision": config.matmul_precision,
        "machine": machine_info(),  # platform, versions, load, allocator and BLAS settings
        "rows": list(rows),
    }
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2))
    text = f"`{command}`\n\n{format_table(rows)}\n"
    md = out / f"{stem}.md"
    md.write_text(text)
    plot(rows, out / f"{stem}.png")
    return md


def run(config: Config, *, repeats: int = 10, log: Callable[[str], None] = print) -> dict:
    """Median milliseconds of each part of a step at the config's batch size."""
    rows = sweep(config, [config.batch_size], repeats=repeats)
    for row in rows:
        mib = "" if row["temp_mib"] is None else f"  temporaries {row['temp_mib']:8.1f} MiB"
        log(f"{row['part']:>16}: {row['ms']:9.2f} ms  {row['us_per_walker']:8.2f} us/walker{mib}")
    return {row["part"]: row["ms"] for row in rows}

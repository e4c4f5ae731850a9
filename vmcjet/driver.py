"""`vmcjet run`: owns all I/O around the optimisation generator.

Set-up (new run: folder, config, metadata, parameters, Hartree-Fock pretraining, walkers, burn-in;
resumed run: the newest valid checkpoint), then the loop over `train.optimise`, writing a stats row
per step, checkpoints every N steps / M minutes, at the end, and on SIGINT/SIGTERM.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from vmcjet import checkpoint, distributed, runfolder
from vmcjet import config as config_lib
from vmcjet.config import Config
from vmcjet.errors import InputError, NonFiniteError
from vmcjet.molecule import Molecule
from vmcjet.progress import Reporter
from vmcjet.session import Session, fresh_walkers, initial_state, open_session, restore_state
from vmcjet.train import StepStats, TrainState, optimise

# Settings that must not change when a run is resumed (walkers and parameters depend on them).
FROZEN_ON_RESUME = (
    "system.molecule",
    "system.charge",
    "system.spin",
    "network",
    "batch_size",
    "precision",
)


def check_resume_compatible(stored: Config, requested: Config, *, reinit_walkers: bool) -> None:
    """A changed molecule, network or batch size on resume is an InputError naming the setting."""
    for key in FROZEN_ON_RESUME:
        if key == "batch_size" and reinit_walkers:
            continue
        old, new = config_lib.get_setting(stored, key), config_lib.get_setting(requested, key)
        if old != new:
            raise InputError(
                f"cannot resume: setting '{key}' differs (run has {old!r}, asked for {new!r}); "
                "drop the flag, or start a new run"
                + ("" if key != "batch_size" else " (or pass --reinit-walkers)")
            )


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between steps (then: checkpoint, clean exit)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous = {}

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _row(step: int, stats: StepStats, history: list[float], seconds: float) -> dict[str, Any]:
    energy = float(stats.energy)
    history.append(energy)
    window = history[-max(1, len(history) // 10) :]
    return {
        "step": step,
        "energy": energy,
        "running_mean": float(np.mean(window)),
        "variance": float(stats.variance),
        "acceptance": float(stats.acceptance),
        "width": float(stats.width),
        "nonfinite": int(stats.nonfinite),
        "skipped": int(stats.skipped),
        "seconds": seconds,
    }


def _checkpoint_metadata(session: Session) -> dict[str, Any]:
    return {
        "config_toml": config_lib.to_toml(session.config),
        "config_hash": config_lib.config_hash(session.config),
        "seed": session.config.seed,
        "molecule": session.molecule.name,
    }


def _save(session: Session, folder: Path, state: TrainState) -> None:
    """Every process gathers the state; process 0 alone writes the checkpoint."""
    host_state = distributed.gather_to_host(state)
    if jax.process_index() == 0:
        checkpoint.save_checkpoint(
            folder / runfolder.CHECKPOINT_DIR,
            step=int(state.step),
            state=host_state,
            metadata=_checkpoint_metadata(session),
            keep=session.config.checkpoint.keep,
        )


class _SaveSchedule:
    """When to write a checkpoint: every N steps and/or every M minutes (0 disables either)."""

    def __init__(self, every_steps: int, every_minutes: float):
        self._steps, self._seconds = every_steps, 60.0 * every_minutes
        self._last = time.monotonic()

    def due(self, step: int) -> bool:
        by_steps = self._steps > 0 and (step + 1) % self._steps == 0
        by_time = self._seconds > 0 and time.monotonic() - self._last >= self._seconds
        return by_steps or by_time

    def saved(self) -> None:
        self._last = time.monotonic()


def _check_skipped(skipped_in_row: int, limit: int, step: int) -> None:
    if skipped_in_row >= limit:
        raise NonFiniteError(
            f"{skipped_in_row} consecutive steps had non-finite updates (last at step {step}); "
            "the last checkpoint is kept; lower optim.lr (--set optim.lr=...) and --resume"
        )


def _loop(session: Session, folder: Path, state: TrainState, reporter: Reporter) -> TrainState:
    """Runs the remaining steps; returns the final state (or the state when a signal arrived)."""
    policy, total = session.config.checkpoint, session.config.steps
    schedule = _SaveSchedule(policy.every_steps, policy.every_minutes)
    writer = runfolder.StatsWriter(folder) if jax.process_index() == 0 else None
    stats_path = folder / runfolder.STATS_FILE
    history = [float(r["energy"]) for r in runfolder.read_stats_rows(stats_path)] if writer else []
    skipped_in_row = 0
    reporter.start(int(state.step))
    try:
        with _StopRequest() as stop:
            clock = time.monotonic()
            steps = optimise(session.step, state, root_key=session.root_key, total_steps=total)
            for step, new_state, stats in steps:
                state, now = new_state, time.monotonic()
                row = _row(step, stats, history, now - clock)
                clock = now
                if writer:
                    writer.write(row)
                reporter.step(step, total, row["energy"], row["running_mean"])
                skipped_in_row = skipped_in_row + 1 if row["skipped"] else 0
                _check_skipped(skipped_in_row, policy.max_skipped_steps, step)
                if stop.signal is not None:
                    _save(session, folder, state)
                    reporter.log(f"stopped by signal {stop.signal} after step {step + 1}; saved")
                    return state
                if schedule.due(step):
                    _save(session, folder, state)
                    schedule.saved()
        _save(session, folder, state)
        return state
    finally:
        if writer:
            writer.close()


def _start(
    session: Session,
    folder: Path,
    reporter: Reporter,
    *,
    resume: bool,
    stored_batch: int,
    reinit_walkers: bool,
    argv: list[str] | None,
) -> TrainState:
    """The state to continue from (resumed run) or the initial state (new run)."""
    if not resume:
        if jax.process_index() == 0:
            runfolder.write_metadata(folder, {**session.metadata(), "argv": argv})
        state = initial_state(session, log=reporter.log)
        _save(session, folder, state)
        return state
    state, path = restore_state(
        session, folder / runfolder.CHECKPOINT_DIR, log=reporter.log, batch_size=stored_batch
    )
    reporter.log(f"resuming from {path.name} (step {int(state.step)})")
    if jax.process_index() == 0:
        runfolder.truncate_stats(folder, int(state.step))
    return fresh_walkers(session, state, log=reporter.log) if reinit_walkers else state


def run(
    config: Config,
    molecule: Molecule,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    reinit_walkers: bool = False,
    argv: list[str] | None = None,
) -> Path:
    """Runs (or resumes) an optimisation; returns the run folder.

    In a multi-process run every process calls this with the same arguments; process 0 alone
    writes files, so `out` must be given (a shared folder).
    """
    distributed.initialize_distributed()  # before anything touches the devices
    main = jax.process_index() == 0
    stored_batch = config.batch_size
    if resume is not None:
        folder = runfolder.existing_run_folder(resume)
        stored = runfolder.read_config(folder)
        check_resume_compatible(stored, config, reinit_walkers=reinit_walkers)
        stored_batch = stored.batch_size
    elif jax.process_count() > 1 and out is None:
        raise InputError("a multi-process run needs --out (a folder every process can see)")
    session = open_session(config, molecule)  # checks devices and batch size before any file
    if resume is None:
        folder = runfolder.new_run_folder(out, molecule.name) if main else Path(out)
    reporter = Reporter(folder / runfolder.LOG_FILE if main else None, log_every=config.log_every)
    try:
        state = _start(
            session,
            folder,
            reporter,
            resume=resume is not None,
            stored_batch=stored_batch,
            reinit_walkers=reinit_walkers,
            argv=argv,
        )
        if main:
            runfolder.write_config(folder, config)
        reporter.log(f"{molecule.name}: {molecule.n_electrons} electrons, run folder {folder}")
        state = _loop(session, folder, state, reporter)
        reporter.log(f"done: {int(state.step)} steps; `vmcjet eval {folder}` for an error bar")
        return folder
    finally:
        reporter.close()

"""`vmcjet run`: owns all I/O around the optimisation generator.

Set-up (new run: folder, lock, config, metadata, parameters, Hartree-Fock pretraining, walkers,
burn-in, the step-0 checkpoint; resumed run: the newest valid checkpoint), then the loop over
`train.optimise`, writing a stats row per step, checkpoints every N steps / M minutes, at the end,
and on SIGINT/SIGTERM.

Process 0 holds the run folder's lock (`vmcjet.runlock`) from before the first write to the end.
config.toml is written before set-up and the step-0 checkpoint ends it, so a folder with a config
but no checkpoint (set-up failed or was killed) is started again by the same command or --resume.
A SIGINT/SIGTERM during set-up raises `Interrupted` (one line from the CLI); during the loop it
leads to a checkpoint and a clean exit. A step without any finite walker (or with a non-finite
energy or variance) is skipped: its stats row has no energy and it counts towards
`checkpoint.max_skipped_steps`.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from vmcjet import checkpoint, distributed, runfolder
from vmcjet import config as config_lib
from vmcjet.config import Config
from vmcjet.errors import InputError, Interrupted, NonFiniteError, ResourceError
from vmcjet.molecule import Molecule
from vmcjet.progress import Reporter
from vmcjet.runlock import RunLock
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
    "seed",  # every step's key derives from the seed: another seed breaks the exact restart
    "optim.optimizer",  # the optimiser state in the checkpoint belongs to one optimiser
)


def check_more_steps(step: int, steps: int) -> None:
    """A resume must have steps left: `steps` at or below the restored step is an InputError."""
    if steps <= step:
        raise InputError(
            f"cannot resume: the run is at step {step} and steps = {steps} asks for no more; "
            f"give --steps with a total above {step}"
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
    """The stats row of a step. A step without a finite energy and variance reports neither
    (NaN: an empty cell) and is left out of `history`, the energies the running mean is over."""
    energy, variance = float(stats.energy), float(stats.variance)
    measured = math.isfinite(energy) and math.isfinite(variance)
    if measured:
        history.append(energy)
    window = history[-max(1, len(history) // 10) :]
    return {
        "step": step,
        "energy": energy if measured else math.nan,
        "running_mean": float(np.mean(window)) if window else math.nan,
        "variance": variance if measured else math.nan,
        "acceptance": float(stats.acceptance),
        "width": float(stats.width),
        "nonfinite": int(stats.nonfinite),
        "skipped": int(stats.skipped) or int(not measured),
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


def _finite_energies(path: Path) -> list[float]:
    """The energies of the steps already in stats.csv that have one (skipped steps have none)."""
    if not path.exists():
        return []
    cells = [row["energy"] for row in runfolder.read_stats_rows(path)]
    return [value for value in map(float, filter(None, cells)) if math.isfinite(value)]


def _check_skipped(skipped_in_row: int, limit: int, step: int) -> None:
    if skipped_in_row >= limit:
        raise NonFiniteError(
            f"{skipped_in_row} consecutive steps had non-finite updates or no finite energy "
            f"(last at step {step}); "
            "the last checkpoint is kept; lower optim.lr (--set optim.lr=...) and --resume"
        )


def _loop(
    session: Session, folder: Path, state: TrainState, reporter: Reporter, deadline: float | None
) -> TrainState:
    """Runs the remaining steps; returns the final state, or the state after the step when a
    signal arrived or the `time.monotonic()` deadline (None: none) passed, saved."""
    policy, total = session.config.checkpoint, session.config.steps
    schedule = _SaveSchedule(policy.every_steps, policy.every_minutes)
    writer = runfolder.StatsWriter(folder) if jax.process_index() == 0 else None
    monitor = _monitor(session)  # every process computes it (walkers may be sharded)
    stats_path = folder / runfolder.STATS_FILE
    history = _finite_energies(stats_path) if writer else []
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
                if monitor and (step + 1) % session.config.observables_every == 0:
                    record = _listed(monitor(state.params, state.sampler.walkers))
                    if writer:
                        runfolder.append_monitor(folder, {"step": step, **record})
                reporter.step(step, total, row["energy"], row["running_mean"])
                skipped_in_row = skipped_in_row + 1 if row["skipped"] else 0
                _check_skipped(skipped_in_row, policy.max_skipped_steps, step)
                if stop.signal is not None:
                    _save(session, folder, state)
                    reporter.log(f"stopped by signal {stop.signal} after step {step + 1}; saved")
                    return state
                if deadline is not None and now >= deadline:
                    _save(session, folder, state)
                    reporter.log(
                        f"time limit of {session.config.max_minutes:g} min reached after step "
                        f"{step + 1}; saved (`vmcjet run --resume {folder}` continues)"
                    )
                    return state
                if schedule.due(step):
                    _save(session, folder, state)
                    schedule.saved()
        _save(session, folder, state)
        return state
    finally:
        if writer:
            writer.close()


def _monitor(session: Session) -> Any:
    """The training-time monitor of `config.observables_every` (None: no monitoring)."""
    config = session.config
    from vmcjet import batch_observables, observables

    names = observables.parse_observables(config.observables)
    if config.observables_every == 0 or not set(names) & set(batch_observables.MONITORED):
        return None
    return batch_observables.make_monitor(session, names)


def _listed(record: dict[str, Any]) -> dict[str, Any]:
    """Arrays as (nested) lists of floats, for JSON."""
    return {name: np.asarray(value, dtype=np.float64).tolist() for name, value in record.items()}


def _set_up(
    session: Session, folder: Path, reporter: Reporter, argv: list[str] | None
) -> TrainState:
    """A new run (or one whose set-up did not finish): config and metadata first, then the
    initial state; the step-0 checkpoint marks the set-up as done."""
    if jax.process_index() == 0:
        runfolder.write_config(folder, session.config)
        runfolder.write_metadata(folder, {**session.metadata(), "argv": argv})
        toml = config_lib.to_toml(session.config)
        runfolder.append_history(folder, {"event": "start", "argv": argv, "config_toml": toml})
        (folder / runfolder.STATS_FILE).unlink(missing_ok=True)  # rows of an unfinished set-up
        (folder / runfolder.MONITOR_FILE).unlink(missing_ok=True)
    state = initial_state(session, log=reporter.log)
    _save(session, folder, state)
    return state


def _record_resume(
    folder: Path, stored: Config, config: Config, step: int, argv: list[str] | None, log: Any
) -> None:
    """Appends the resume and the settings it changes to the history; rewrites config.toml."""
    changes = runfolder.config_changes(stored, config)
    if changes:
        listed = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())
        log(f"resume changes {listed} (recorded in {runfolder.HISTORY_FILE})")
        runfolder.write_config(folder, config)
    record = {"event": "resume", "step": step, "argv": argv, "changes": changes}
    runfolder.append_history(folder, record)


def _resume(
    session: Session,
    folder: Path,
    reporter: Reporter,
    *,
    stored: Config,
    reinit_walkers: bool,
    argv: list[str] | None,
) -> TrainState:
    """The newest valid checkpoint; stats.csv cut back to its step; the resume recorded."""
    state, path = restore_state(
        session,
        folder / runfolder.CHECKPOINT_DIR,
        log=reporter.log,
        batch_size=stored.batch_size,
    )
    step = int(state.step)
    check_more_steps(step, session.config.steps)
    reporter.log(f"resuming from {path.name} (step {step})")
    if jax.process_index() == 0:
        runfolder.truncate_stats(folder, step)
        runfolder.truncate_monitor(folder, step)
        _record_resume(folder, stored, session.config, step, argv, reporter.log)
    return fresh_walkers(session, state, log=reporter.log) if reinit_walkers else state


def _start(
    session: Session,
    folder: Path,
    reporter: Reporter,
    *,
    resume: bool,
    reinit_walkers: bool,
    argv: list[str] | None,
) -> TrainState:
    """The state to continue from (resumed run) or the initial state (new run)."""
    if resume:
        stored = runfolder.read_config(folder)
        check_resume_compatible(stored, session.config, reinit_walkers=reinit_walkers)
        if runfolder.has_checkpoints(folder):
            return _resume(
                session, folder, reporter, stored=stored, reinit_walkers=reinit_walkers, argv=argv
            )
    elif jax.process_index() == 0:
        runfolder.check_new_run(folder)
    if (folder / runfolder.CONFIG_FILE).exists():
        reporter.log(f"the set-up of the run in {folder} did not finish; starting it again")
    return _set_up(session, folder, reporter, argv)


def _oom_message(config: Config) -> str:
    return (
        f"out of memory (XLA RESOURCE_EXHAUSTED) with batch_size = {config.batch_size}, "
        f"memory_budget_mib = {config.memory_budget_mib}, laplacian.walker_batch_size = "
        f"{config.laplacian.walker_batch_size}; lower --batch-size, or set memory_budget_mib "
        "(e.g. --set memory_budget_mib=2000) or laplacian.walker_batch_size"
    )


@contextlib.contextmanager
def _memory_errors(config: Config) -> Iterator[None]:
    """A failed allocation (XLA RESOURCE_EXHAUSTED, or MemoryError) becomes one ResourceError
    naming the batch and memory settings."""
    try:
        yield
    except ResourceError:
        raise
    except MemoryError:
        raise ResourceError(_oom_message(config)) from None
    except jax.errors.JaxRuntimeError as err:
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        raise ResourceError(_oom_message(config)) from None


def _lock(folder: Path, main: bool) -> contextlib.AbstractContextManager:
    """Process 0 holds the run folder's lock; the other processes of a run do not write."""
    if not main:
        return contextlib.nullcontext()
    return RunLock(folder, log=lambda line: print(line, file=sys.stderr))


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
    writes files (and holds the folder's lock), so `out` must be given (a shared folder).

    Raises:
        InputError: another process writes the folder, a bad flag or setting, an existing run.
        ResourceError: XLA could not allocate memory (RESOURCE_EXHAUSTED).
    """
    started = time.monotonic()
    config_lib.validate(config)
    minutes = config.max_minutes
    deadline = None if minutes is None else started + 60.0 * minutes
    distributed.initialize_distributed()  # before anything touches the devices
    main = jax.process_index() == 0
    if resume is not None:
        folder = runfolder.existing_run_folder(resume)
        stored = runfolder.read_config(folder)
        check_resume_compatible(stored, config, reinit_walkers=reinit_walkers)
    elif jax.process_count() > 1 and out is None:
        raise InputError("a multi-process run needs --out (a folder every process can see)")
    session = open_session(config, molecule)  # checks devices and batch size before any file
    if resume is None:
        folder = runfolder.new_run_folder(out, molecule.name) if main else Path(out)
    with _lock(folder, main), _memory_errors(config):
        log_path = folder / runfolder.LOG_FILE if main else None
        reporter = Reporter(log_path, log_every=config.log_every)
        try:
            state = _start(
                session,
                folder,
                reporter,
                resume=resume is not None,
                reinit_walkers=reinit_walkers,
                argv=argv,
            )
            reporter.log(f"{molecule.name}: {molecule.n_electrons} electrons, run folder {folder}")
            state = _loop(session, folder, state, reporter, deadline)
            reporter.log(f"done: {int(state.step)} steps; `vmcjet eval {folder}` for an error bar")
            return folder
        except Interrupted as stop:
            reporter.log(str(stop))
            raise
        finally:
            reporter.close()

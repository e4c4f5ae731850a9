"""The run folder: resolved config, metadata, per-step statistics, log, checkpoints.

Layout of `runs/<molecule>-<YYYYmmdd-HHMMSS>/`:
    config.toml      resolved configuration (what `--print-config` would print)
    metadata.json    versions, devices, seed, command line, molecule, start time
    stats.csv        one row per optimisation step, flushed every row
    run.log          the log lines printed during the run
    checkpoints/     ckpt_<step>.h5 (see vmcjet.checkpoint)
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

from vmcjet import config as config_lib
from vmcjet.errors import CheckpointError, InputError

STATS_COLUMNS = (
    "step",
    "energy",  # mean local energy over finite walkers (hartree)
    "running_mean",  # mean of `energy` over the last 10% of steps so far (hartree)
    "variance",  # variance of the local energy (hartree^2)
    "acceptance",  # MCMC acceptance rate of this step
    "width",  # MCMC proposal width (bohr)
    "nonfinite",  # walkers with a non-finite local energy or log|psi| this step
    "skipped",  # 1 if the parameter update was skipped (non-finite gradient)
    "seconds",  # wall time of this step (s)
)
CONFIG_FILE = "config.toml"
METADATA_FILE = "metadata.json"
STATS_FILE = "stats.csv"
LOG_FILE = "run.log"
CHECKPOINT_DIR = "checkpoints"


def new_run_folder(out: str | Path | None, molecule_name: str) -> Path:
    """Creates the folder of a new run; an existing run there is an InputError (use --resume)."""
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{molecule_name}-{stamp}"
    folder = Path(out)
    if (folder / CONFIG_FILE).exists() or (folder / CHECKPOINT_DIR).exists():
        raise InputError(
            f"output folder '{folder}' already holds a run; use --resume {folder} or another --out"
        )
    (folder / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    return folder


def existing_run_folder(path: str | Path) -> Path:
    """The folder of a run to resume or evaluate; a missing one is a CheckpointError."""
    folder = Path(path)
    if not (folder / CONFIG_FILE).is_file():
        raise CheckpointError(
            f"'{folder}' is not a vmcjet run folder (no {CONFIG_FILE}); "
            "give the folder that `vmcjet run` wrote"
        )
    return folder


def read_config(folder: Path) -> config_lib.Config:
    return config_lib.build_config(folder / CONFIG_FILE)


def write_config(folder: Path, config: config_lib.Config) -> None:
    (folder / CONFIG_FILE).write_text(config_lib.to_toml(config))


def write_metadata(folder: Path, entries: Mapping[str, object]) -> None:
    """metadata.json with the given entries plus Python/platform versions and the command line."""
    import jax

    import vmcjet

    record = {
        "vmcjet_version": vmcjet.__version__,
        "jax_version": jax.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
        "command_line": sys.argv,
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        **entries,
    }
    (folder / METADATA_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")


def truncate_stats(folder: Path, step: int) -> None:
    """Keeps the header and the rows with step < `step` (the resumed run rewrites the rest)."""
    path = folder / STATS_FILE
    if not path.exists():
        return
    rows = read_stats_rows(path)
    kept = [row for row in rows if int(row["step"]) < step]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=STATS_COLUMNS)
        writer.writeheader()
        writer.writerows(kept)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_stats_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("seconds") not in (None, "")]


class StatsWriter:
    """Appends one CSV row per step, flushed at once so a kill loses at most the current row."""

    def __init__(self, folder: Path):
        path = folder / STATS_FILE
        new = not path.exists() or path.stat().st_size == 0
        self._handle = open(path, "a", newline="")  # noqa: SIM115 (closed in close())
        self._writer = csv.DictWriter(self._handle, fieldnames=STATS_COLUMNS)
        if new:
            self._writer.writeheader()

    def write(self, row: Mapping[str, object]) -> None:
        self._writer.writerow({k: _format(row[k]) for k in STATS_COLUMNS})
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _format(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)

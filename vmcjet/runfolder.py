"""The run folder: resolved config, metadata, per-step statistics, log, checkpoints.

Layout of `runs/<molecule>-<YYYYmmdd-HHMMSS>/`:
    config.toml      resolved configuration (what `--print-config` would print), written before
                     set-up; replaced atomically when a resume changes a setting
    config_history.jsonl  the original config (first line) and each resume's changes
    metadata.json    versions, devices, seed, command line, molecule, start time
    stats.csv        one row per optimisation step, flushed every row (skipped steps: no energy)
    run.log          the log lines printed during the run
    run.lock         flock'ed by the one process writing the folder (vmcjet.runlock)
    checkpoints/     ckpt_<step>.h5 (see vmcjet.checkpoint); the first, step 0, ends set-up

Set-up is finished once a checkpoint exists: a folder with config.toml but no checkpoint (set-up
failed or was killed) is started again by the same command or by --resume.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vmcjet import config as config_lib
from vmcjet.errors import CheckpointError, InputError
from vmcjet.fileio import atomic_path, atomic_write_text, read_text

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
# Observables monitored during training (config `observables_every`): one JSON line per entry.
MONITOR_FILE = "observables.jsonl"
LOG_FILE = "run.log"
CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "config_history.jsonl"


def new_run_folder(out: str | Path | None, molecule_name: str) -> Path:
    """Creates (if needed) the folder of a new run and returns it; nothing else is checked here
    (`check_new_run` does that once the folder is locked)."""
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{molecule_name}-{stamp}"
    folder = Path(out)
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise InputError(
            f"--out '{folder}' cannot be a run folder: '{blocker}' is a file; choose another --out"
        )
    (folder / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    return folder


def has_checkpoints(folder: Path) -> bool:
    """True once set-up finished: the run wrote its step-0 checkpoint (or later ones)."""
    from vmcjet.checkpoint import list_checkpoints

    return bool(list_checkpoints(folder / CHECKPOINT_DIR))


def check_new_run(folder: Path) -> None:
    """A folder whose run finished its set-up (it has checkpoints) needs --resume."""
    if has_checkpoints(folder):
        raise InputError(
            f"output folder '{folder}' already holds a run; use --resume {folder} or another --out"
        )


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
    """The run's current configuration (config.toml); a malformed file is an InputError."""
    return config_lib.build_config(folder / CONFIG_FILE)


def write_config(folder: Path, config: config_lib.Config) -> None:
    """config.toml, replaced atomically (the history of changes is in config_history.jsonl)."""
    atomic_write_text(folder / CONFIG_FILE, config_lib.to_toml(config))


def config_changes(old: config_lib.Config, new: config_lib.Config) -> dict[str, list[Any]]:
    """{dotted key: [old value, new value]} for every setting that differs."""
    flat_old, flat_new = _flatten(config_lib.to_dict(old)), _flatten(config_lib.to_dict(new))
    return {k: [flat_old[k], v] for k, v in flat_new.items() if flat_old.get(k) != v}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def append_history(folder: Path, record: Mapping[str, Any]) -> None:
    """Appends one JSON line to config_history.jsonl (flushed and fsynced).

    The first record of a run ("start") holds the original config TOML; each resume adds a
    "resume" record with the step, the command line and the settings it changed.
    """
    entry = {"time": datetime.datetime.now().isoformat(timespec="seconds"), **record}
    with open(folder / HISTORY_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_metadata(folder: Path, entries: Mapping[str, object]) -> None:
    """metadata.json with the given entries plus `environment_info()` (versions, devices,
    settings: what `vmcjet info` shows) and the command line."""
    from vmcjet.environment import environment_info

    record = {
        **environment_info(),
        "command_line": sys.argv,
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        **entries,
    }
    atomic_write_text(folder / METADATA_FILE, json.dumps(record, indent=2, default=str) + "\n")


def truncate_stats(folder: Path, step: int) -> None:
    """Keeps the header and the rows with step < `step` (the resumed run rewrites the rest)."""
    path = folder / STATS_FILE
    if not path.exists():
        return
    rows = read_stats_rows(path)
    kept = [row for row in rows if int(row["step"]) < step]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=STATS_COLUMNS)
        writer.writeheader()
        writer.writerows(kept)
        handle.flush()
        os.fsync(handle.fileno())


def append_monitor(folder: Path, record: Mapping[str, Any]) -> None:
    """Appends one JSON line (a step's monitored observables) to observables.jsonl."""
    with open(folder / MONITOR_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(dict(record)) + "\n")


def truncate_monitor(folder: Path, step: int) -> None:
    """Keeps the observables.jsonl lines with step < `step` (as `truncate_stats`); a line cut
    short by a crash is dropped."""
    path = folder / MONITOR_FILE
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", step) < step:
            kept.append(line + "\n")
    atomic_write_text(path, "".join(kept))


def read_stats_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of stats.csv as text; a last line cut short by a kill is left out.

    Raises:
        InputError: the file is missing, not UTF-8, or not a vmcjet statistics table (the
            message names the line).
    """
    if not path.is_file():
        raise InputError(
            f"'{path.parent}' has no {STATS_FILE} (the run has not finished its set-up, or the "
            "file was moved); run some steps first"
        )
    fix = "repair the file, or move it away (its rows are then lost)"
    text = read_text(path, "statistics file", fix)
    text = text[: text.rfind("\n") + 1]  # drop a partial last line
    rows = []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if reader.fieldnames is not None and list(reader.fieldnames) != list(STATS_COLUMNS):
            raise InputError(f"statistics file '{path}' has an unknown header; {fix}")
        for row in reader:
            if row.get("seconds") in (None, ""):
                continue
            if not _valid_row(row):
                raise InputError(
                    f"statistics file '{path}' line {reader.line_num} is malformed; {fix}"
                )
            rows.append(row)
    except csv.Error as err:
        raise InputError(f"statistics file '{path}' is not CSV ({err}); {fix}") from None
    return rows


def _valid_row(row: Mapping[str, Any]) -> bool:
    """A row whose step is an integer and whose other cells are numbers or empty."""
    if None in row:  # more cells than columns
        return False
    try:
        int(row["step"])
        for key in STATS_COLUMNS[1:]:
            if row[key] != "":
                float(row[key])
    except (TypeError, ValueError):
        return False
    return True


def stats_columns(folder: Path) -> dict[str, np.ndarray]:
    """stats.csv as float arrays by column; empty cells (skipped steps) are NaN."""
    rows = read_stats_rows(folder / STATS_FILE)
    return {
        key: np.array([float(r[key]) if r[key] != "" else np.nan for r in rows], dtype=np.float64)
        for key in STATS_COLUMNS
    }


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
    """A CSV cell: floats exactly (repr); a non-finite float is an empty cell (no value)."""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)

"""Energy against wall time of `vmcjet run`: time to accuracy, for choosing defaults (issue 11, 12).

    python benchmarks/time_to_accuracy.py run --out runs/tta/lih-kfac-b512 -- \\
        --molecule LiH --steps 10000 --batch-size 512 --set optim.optimizer=kfac
    python benchmarks/time_to_accuracy.py report runs/tta/* --name tta-lih --threshold 1.5

`run` runs `vmcjet run ARGS --out OUT` and writes OUT/wall_time.json (start and end, seconds since
the epoch, and the exit status), so that the time of every step counts from the command's start:
Hartree-Fock, pretraining, burn-in and compilation included. Step t ends at
    t_end(t) = (wall - sum of stats.csv's `seconds`) + sum of `seconds` up to t,
i.e. everything that is not a training step is put before the first step (the last checkpoint's
write after the final step is a small overestimate of the set-up).

`report` writes NAME.md, .json and (with matplotlib) .png under --output: per run the set-up time,
the median step time, the mean training energy minus the reference in windows of --window steps
(the window mean of a noisy energy, as the issue defines "within X mHa"), and the wall time at
which a window mean first comes within --threshold mHa of the reference.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from vmcjet import runfolder  # noqa: E402
from vmcjet.session import run_molecule  # noqa: E402
from vmcjet.units import MILLIHARTREE_PER_HARTREE  # noqa: E402

WALL_FILE = "wall_time.json"


def run(out: Path, vmcjet_args: list[str]) -> int:
    """Runs `vmcjet run ARGS --out OUT`, timed; returns its exit status."""
    command = [sys.executable, "-m", "vmcjet", "run", *vmcjet_args, "--out", str(out)]
    start = time.time()
    status = subprocess.call(command)
    out.mkdir(parents=True, exist_ok=True)
    record = {"command": shlex.join(command[2:]), "start": start, "end": time.time()}
    (out / WALL_FILE).write_text(json.dumps({**record, "status": status}, indent=2))
    return status


def curve(folder: Path, window: int) -> dict:
    """Set-up time, median step time and window means (mHa above the reference) of one run."""
    wall = json.loads((folder / WALL_FILE).read_text())
    stats = runfolder.stats_columns(folder)
    seconds = np.asarray(stats["seconds"], dtype=float)
    energy = np.asarray(stats["energy"], dtype=float)
    total = wall["end"] - wall["start"]
    setup = total - float(np.sum(seconds))
    ends = setup + np.cumsum(seconds)
    reference = run_molecule(runfolder.read_config(folder)).exact_energy
    windows = []
    for start in range(0, len(energy) - window + 1, window):
        chunk = energy[start : start + window]
        mean_mha = (np.nanmean(chunk) - reference) * MILLIHARTREE_PER_HARTREE
        windows.append(
            {
                "steps": start + window,
                "end_s": float(ends[start + window - 1]),
                "mean_mha": float(mean_mha),
            }
        )
    return {
        "run": folder.name,
        "command": wall["command"],
        "status": wall["status"],
        "wall_s": total,
        "setup_s": setup,
        "median_step_ms": 1e3 * float(np.median(seconds)) if len(seconds) else None,
        "steps": int(len(energy)),
        "windows": windows,
    }


def first_within(record: dict, threshold_mha: float) -> float | None:
    """Wall time (s) at the end of the first window whose mean is within the threshold."""
    for window in record["windows"]:
        if abs(window["mean_mha"]) <= threshold_mha:
            return window["end_s"]
    return None


def report(folders: list[Path], *, name: str, output: Path, window: int, threshold: float) -> Path:
    """Writes NAME.md/.json/.png under `output`; returns the .md path."""
    records = [curve(folder, window) for folder in folders]
    for record in records:
        record["time_to_threshold_s"] = first_within(record, threshold)
    output.mkdir(parents=True, exist_ok=True)
    settings = {"window": window, "threshold_mha": threshold}
    (output / f"{name}.json").write_text(json.dumps({**settings, "runs": records}, indent=2))
    lines = [
        f"Window {window} steps; time to a window mean within {threshold} mHa of the reference.",
        "",
        "| run | command | set-up s | median step ms | steps | wall s | time to threshold s "
        "| last window mHa |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        last = r["windows"][-1]["mean_mha"] if r["windows"] else float("nan")
        reached = r["time_to_threshold_s"]
        lines.append(
            f"| {r['run']} | `{r['command']}` | {r['setup_s']:.0f} | {r['median_step_ms']:.1f} "
            f"| {r['steps']} | {r['wall_s']:.0f} | {'-' if reached is None else f'{reached:.0f}'} "
            f"| {last:+.2f} |"
        )
    md = output / f"{name}.md"
    md.write_text("\n".join(lines) + "\n")
    _plot(records, output / f"{name}.png", threshold)
    return md


def _plot(records: list[dict], path: Path, threshold: float) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in records:
        ends = [w["end_s"] / 60 for w in r["windows"]]
        errors = [max(abs(w["mean_mha"]), 1e-2) for w in r["windows"]]
        ax.plot(ends, errors, marker=".", label=r["run"])
    ax.axhline(threshold, color="grey", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("wall time from the command's start (min)")
    ax.set_ylabel("|window mean - reference| (mHa)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="vmcjet run, timed from the command's start")
    run_parser.add_argument("--out", required=True, type=Path)
    run_parser.add_argument("vmcjet_args", nargs=argparse.REMAINDER)
    report_parser = commands.add_parser("report", help="curves and times to accuracy of runs")
    report_parser.add_argument("folders", nargs="+", type=Path)
    report_parser.add_argument("--name", required=True)
    report_parser.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    report_parser.add_argument("--window", type=int, default=500)
    report_parser.add_argument("--threshold", type=float, default=1.5, help="mHa")
    args = parser.parse_args(argv)
    if args.command == "run":
        extra = args.vmcjet_args[1:] if args.vmcjet_args[:1] == ["--"] else args.vmcjet_args
        return run(args.out, extra)
    folders = [f for f in args.folders if (f / WALL_FILE).exists()]
    print(
        report(
            folders,
            name=args.name,
            output=args.output,
            window=args.window,
            threshold=args.threshold,
        ).read_text()
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Small, fast run settings shared by the driver tests (tiny network, few walkers and moves).

A helper module, not a conftest: test modules import it by name (`from tiny_runs import ...`),
and two conftest modules of one name clash in `sys.modules` under some test orders."""

import csv
from pathlib import Path

TINY = [
    "--set",
    "network.determinants=1",
    "--set",
    "network.ferminet.hidden_one=8",
    "--set",
    "network.ferminet.hidden_two=4",
    "--set",
    "network.ferminet.layers=1",
    "--set",
    "mcmc.moves=2",
    "--set",
    "mcmc.burn_in=10",
    "--set",
    "pretrain.iterations=5",
    "--set",
    "system.basis=sto-3g",
    "--set",
    "log_every=1000",
    # the tiny batches would get KFAC (defaults.choose_optimiser); tests that want KFAC set it
    "--set",
    "optim.optimizer=spring",
]


def tiny_run_args(folder: Path, *, molecule="H2", steps=6, batch=8, extra=()) -> list[str]:
    """argv of `vmcjet run` for a tiny run writing to `folder`."""
    args = ["run", "--molecule", molecule, "--steps", str(steps), "--batch-size", str(batch)]
    return args + ["--out", str(folder), *TINY, *extra]


def stats_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "stats.csv", newline="") as handle:
        return list(csv.DictReader(handle))

"""Size-aware defaults: the ONE rule table from a system's size to the settings of its run.

`vmcjet run --molecule X` (and `vmcjet bench step`) resolve the config in this order, each layer
overriding the one before (so every table choice can be overridden and user values always win):

    Config() defaults -> SIZE_RULES row for X -> TOML file (--config) -> flags -> --set

The row is chosen by the electron count n of the system (after --charge); the initial MCMC width
also depends on the heaviest nuclear charge Z_max:

    mcmc.width = min(row.width, row.width_z / Z_max)   (bohr, rounded to 1e-4 bohr)

because the core electrons of a heavy nucleus sit at ~1/Z bohr and set the width at which half the
moves are accepted (N2, Z_max 7: 0.048 bohr after adaptation, issue 12). The width still adapts
during the run; a good start saves burn-in.

Rows with n <= 4 electrons are exactly the measured LiH defaults of `Config()` (docs/results.md);
a test keeps the two equal. In the rows for n > 4 the MCMC moves and KFAC's decay are chosen from
measured energy-vs-wall-time curves (Ne, N2), and so are the network widths, determinants and
batches (Ne, N2), row 3's proposal and SPRING decay (N2), and the clipping width, the
pretraining length and row 2's Psiformer sizes (Ne); rows 1 and 3's Psiformer sizes are
reasoned. The table, the reasons and its status are in docs/results.md, "Defaults by system
size". A resumed run keeps its stored config: the table is applied only when a run starts.

Network sizes apply to the "cpu" preset only; with `network.preset = "paper"` the preset's sizes
are used and the table leaves the network alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vmcjet import config as config_lib
from vmcjet.config import Config
from vmcjet.errors import InputError
from vmcjet.molecule import Molecule, load_molecule


@dataclass(frozen=True)
class SizeRule:
    """One row of the table: the defaults for systems of `min_electrons`..`max_electrons`.

    Attributes:
        min_electrons: smallest electron count of the row (inclusive).
        max_electrons: largest electron count of the row (inclusive; None: no upper bound).
        batch_size: walkers.
        hidden_one: FermiNet one-electron stream width.
        hidden_two: FermiNet two-electron stream width.
        layers: FermiNet interaction layers.
        psiformer: Psiformer (layers, heads, head_dim).
        determinants: determinants K (both network kinds).
        moves: Metropolis moves per optimisation step.
        burn_in: Metropolis moves before the first optimisation step.
        proposal: MCMC proposal kernel, `mcmc.proposal` ("gaussian", "nucleus-scaled", ...).
        width: initial MCMC proposal width and its upper bound, bohr.
        width_z: width x Z_max, bohr (initial width = min(width, width_z / Z_max); inf: no scaling).
        lr: SPRING's (and Adam's) initial learning rate, `optim.lr`.
        lr_decay: SPRING's (and Adam's) decay, lr(t) = lr / (1 + lr_decay t), `optim.lr_decay`.
        kfac_lr_decay: KFAC's decay of its own rate `optim.kfac.lr`, `optim.kfac.lr_decay`.
        clip_width: local-energy clipping, in mean absolute deviations.
        pretrain_iterations: maximum pretraining iterations.
        pretrain_tolerance: early stop of pretraining (`pretrain.tolerance`; 0: never).
    """

    min_electrons: int
    max_electrons: int | None
    batch_size: int
    hidden_one: int
    hidden_two: int
    layers: int
    psiformer: tuple[int, int, int]
    determinants: int
    moves: int
    burn_in: int
    proposal: str
    width: float
    width_z: float
    lr: float
    lr_decay: float
    kfac_lr_decay: float
    clip_width: float
    pretrain_iterations: int
    pretrain_tolerance: float


# THE table. Rows in order of electron count, contiguous from 1 electron, the last one open-ended.
# Reasons per row and column: docs/results.md, "Defaults by system size".
# fmt: off
SIZE_RULES: tuple[SizeRule, ...] = (
    # 1-4 electrons (H..Be, H2, LiH, H4): the measured LiH defaults (SPRING at batch 256).
    SizeRule(
        min_electrons=1, max_electrons=4, batch_size=256,
        hidden_one=64, hidden_two=16, layers=3, psiformer=(2, 4, 8), determinants=4,
        moves=10, burn_in=200, proposal="gaussian", width=0.2, width_z=math.inf,
        lr=0.1, lr_decay=1e-2, kfac_lr_decay=1e-3, clip_width=5.0,
        pretrain_iterations=1000, pretrain_tolerance=0.0,
    ),
    # 5-10 electrons (B..Ne, Li2, CH4, NH3, H2O, H10): network, determinants, batch, moves,
    # decays and pretraining measured on Ne (20 min runs: the small network, 1.5x the steps, ended
    # lower than the wider ones; 256 walkers with SPRING at least as low as 128 with KFAC, at lower
    # variance; 500 pretraining iterations 10 mHa higher than 2000 after the same steps).
    SizeRule(
        min_electrons=5, max_electrons=10, batch_size=256,
        hidden_one=64, hidden_two=16, layers=3, psiformer=(2, 4, 16), determinants=4,
        moves=10, burn_in=200, proposal="gaussian", width=0.2, width_z=0.35,
        lr=0.1, lr_decay=3e-3, kfac_lr_decay=1e-3, clip_width=5.0,
        pretrain_iterations=2000, pretrain_tolerance=0.02,
    ),
    # 11-30 electrons and beyond (N2, CO, P2, ...): network, determinants, batch, moves, proposal
    # and KFAC decay measured on N2 (30 min: 3 x (96, 16) ran 1.6x the steps of 3 x (128, 32) and
    # ended 58 mHa lower; nucleus-scaled moves: the same step cost, 33 mHa lower after 4662 steps;
    # 4 determinants no better than 8; 256 walkers with SPRING, two seeds, at half the variance of
    # 128 with KFAC). SPRING's decay: 3e-4 and 3e-3 evaluated no different from 1e-3 in 30 min.
    SizeRule(
        min_electrons=11, max_electrons=None, batch_size=256,
        hidden_one=96, hidden_two=16, layers=3, psiformer=(3, 4, 16), determinants=8,
        moves=10, burn_in=600, proposal="nucleus-scaled", width=0.2, width_z=0.35,
        lr=0.1, lr_decay=1e-3, kfac_lr_decay=1e-3, clip_width=5.0,
        pretrain_iterations=3000, pretrain_tolerance=0.02,
    ),
)
# fmt: on


def rule_for(n_electrons: int) -> SizeRule:
    """The row of `SIZE_RULES` whose electron-count bounds contain `n_electrons` (>= 1)."""
    for rule in SIZE_RULES:
        if rule.min_electrons <= n_electrons and (
            rule.max_electrons is None or n_electrons <= rule.max_electrons
        ):
            return rule
    raise InputError(f"no size rule for {n_electrons} electrons; a system needs >= 1 electron")


def initial_width(rule: SizeRule, z_max: float) -> float:
    """Initial MCMC proposal width, bohr: min(rule.width, rule.width_z / Z_max), to 1e-4 bohr."""
    return round(min(rule.width, rule.width_z / z_max), 4)


# The optimiser that reached the lowest energy in the same 10000 steps, per batch size, measured
# on LiH (docs/results.md, "Optimiser by batch"). `choose_optimiser` takes the measured batch
# nearest on a log scale; beyond the ends, the end's choice (above 1024: KFAC, whose cost stays
# linear in B while SPRING's kernel grows as B^2 P).
OPTIMISER_BY_BATCH: tuple[tuple[int, str], ...] = (
    (128, "kfac"),
    (256, "spring"),
    (512, "kfac"),
    (1024, "kfac"),
)


def choose_optimiser(*, batch_size: int, parameters: int | None) -> str:
    """The optimiser for a run of `batch_size` walkers and `parameters` network parameters.

    The one place where the optimiser is chosen: the entry of `OPTIMISER_BY_BATCH` whose batch is
    nearest to `batch_size` on a log scale (ties to the smaller batch). `parameters` (None when the
    network config is invalid) is not used: every measurement was with the small network (32k
    parameters), so no rule by parameter count is backed by a measurement yet.
    """
    del parameters
    if batch_size < 1:  # not a batch: `config.validate` reports it, any choice will do
        return OPTIMISER_BY_BATCH[0][1]
    nearest = min(OPTIMISER_BY_BATCH, key=lambda entry: abs(math.log2(entry[0] / batch_size)))
    return nearest[1]


def size_defaults(molecule: Molecule, *, network_preset: str = "cpu") -> dict[str, Any]:
    """The table's settings for a molecule, as a nested dict of config keys (no optimiser).

    Args:
        molecule: the system (its electron count and nuclear charges).
        network_preset: the run's `network.preset`; only "cpu" takes the table's network sizes.
    """
    rule = rule_for(molecule.n_electrons)
    z_max = float(np.max(molecule.charges))
    tree: dict[str, Any] = {
        "batch_size": rule.batch_size,
        "mcmc": {
            "moves": rule.moves,
            "burn_in": rule.burn_in,
            "proposal": rule.proposal,
            "width": initial_width(rule, z_max),
        },
        "pretrain": {
            "iterations": rule.pretrain_iterations,
            "tolerance": rule.pretrain_tolerance,
        },
        "optim": {
            "lr": rule.lr,
            "lr_decay": rule.lr_decay,
            "kfac": {"lr_decay": rule.kfac_lr_decay},
            "clip_width": rule.clip_width,
        },
    }
    if network_preset == "cpu":
        layers, heads, head_dim = rule.psiformer
        tree["network"] = {
            "determinants": rule.determinants,
            "ferminet": {
                "hidden_one": rule.hidden_one,
                "hidden_two": rule.hidden_two,
                "layers": rule.layers,
            },
            "psiformer": {"layers": layers, "heads": heads, "head_dim": head_dim},
        }
    return tree


def _parameters(config: Config, molecule: Molecule) -> int | None:
    from vmcjet.networks import parameter_count

    try:
        return parameter_count(config.network, molecule)
    except InputError:
        return None


def _layered(base: Config, file: str | Path | None, flags: dict, sets: dict) -> Config:
    config = config_lib.build_config(file, flags, base=base)
    return config_lib.build_config(None, sets, base=config)


def resolve_run_config(
    file: str | Path | None, flags: dict[str, Any], sets: dict[str, Any]
) -> tuple[Config, Molecule]:
    """Config() -> table row -> TOML `file` -> `flags` -> `sets` (nested dicts); and the molecule.

    The molecule (with its charge and spin overrides) is read from the user's layers first, then
    the table's row for it is put under them.

    Raises:
        InputError: a bad key, value or molecule in the user's layers.
    """
    user = _layered(Config(), file, flags, sets)
    system = user.system
    molecule = load_molecule(
        system.molecule, charge=system.charge, spin=system.spin, ecp=system.ecp
    )
    tree = size_defaults(molecule, network_preset=user.network.preset)
    provisional = _layered(config_lib.build_config(None, tree), file, flags, sets)
    optimiser = choose_optimiser(
        batch_size=provisional.batch_size,
        parameters=_parameters(provisional, molecule),
    )
    tree["optim"]["optimizer"] = optimiser
    return _layered(config_lib.build_config(None, tree), file, flags, sets), molecule

"""Short `vmcjet run`s through the size table with tiny overrides: small molecules, and a row above
4 electrons with ROHF, an unconverged SCF (one warning line) and early-stopped pretraining."""

import functools
import tomllib

import pytest
from tiny_runs import stats_rows, tiny_run_args

from vmcjet import cli, hartree_fock
from vmcjet.defaults import rule_for


def _run(folder, molecule, extra=()):
    assert cli.main(tiny_run_args(folder, molecule=molecule, steps=5, batch=8, extra=extra)) == 0
    assert [int(r["step"]) for r in stats_rows(folder)] == list(range(5))
    return (folder / "run.log").read_text().splitlines()


@pytest.mark.parametrize("molecule", ["H2", "He"])
def test_five_steps_of_a_small_molecule(tmp_path, molecule):
    log = _run(tmp_path / "run", molecule)
    assert any("pretraining: 5 iterations ran (the maximum)" in line for line in log)


def test_row_above_four_electrons_rohf_unconverged_and_early_stopped(tmp_path, monkeypatch):
    """Boron (5 electrons) with system.hf=rohf and an SCF (cc-pVDZ) cut to 1 cycle: the second
    row's values reach config.toml, the non-convergence is one log line, and pretraining with a
    maximum of 60 iterations stops after the second window of 5 (the loss did not fall by 99%)."""
    monkeypatch.setattr(
        hartree_fock,
        "run_hartree_fock",
        functools.partial(hartree_fock.run_hartree_fock, max_cycle=1),
    )
    settings = ["system.hf=rohf", "system.basis=ccpvdz", "pretrain.iterations=60"]
    settings += ["pretrain.window=5", "pretrain.patience=1", "pretrain.tolerance=0.99"]
    extra = [item for setting in settings for item in ("--set", setting)]
    log = _run(tmp_path / "run", "B", extra)
    config = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    rule = rule_for(5)
    assert config["optim"]["lr_decay"] == rule.lr_decay
    assert config["mcmc"]["width"] == pytest.approx(rule.width_z / 5)
    assert config["mcmc"]["moves"] == 2 and config["batch_size"] == 8  # the tiny overrides win
    warnings = [line for line in log if "did not converge" in line]
    assert len(warnings) == 1 and "warning: Hartree-Fock (ROHF, ccpvdz)" in warnings[0]
    assert any("Hartree-Fock (ROHF, ccpvdz): E = " in line for line in log)
    assert any("pretraining: 10 iterations ran (the loss stopped improving)" in ln for ln in log)

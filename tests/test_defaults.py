"""The size table (vmcjet.defaults): validity for every catalogue molecule, monotonicity, LiH
unchanged, and the resolution order Config() -> table -> file -> flags -> --set (resume: stored)."""

import dataclasses
import math
import tomllib

import pytest

from vmcjet import cli, defaults, driver, runfolder
from vmcjet import config as config_lib
from vmcjet.config import Config
from vmcjet.defaults import SIZE_RULES, resolve_run_config, rule_for
from vmcjet.molecule import catalogue_names, load_molecule
from vmcjet.networks import parameter_count
from vmcjet.networks.wavefunction import resolve_config as resolve_network

CATALOGUE = sorted(catalogue_names())


def _resolved(name, sets=None):
    return resolve_run_config(None, {"system": {"molecule": name}}, sets or {})[0]


@pytest.mark.parametrize("name", CATALOGUE)
def test_every_catalogue_molecule_gets_a_valid_config(name):
    config = _resolved(name)
    config_lib.validate(config)
    resolve_network(config.network)
    molecule = load_molecule(name)
    rule = rule_for(molecule.n_electrons)
    assert config.batch_size == rule.batch_size and config.mcmc.moves == rule.moves
    assert config.network.ferminet.hidden_one == rule.hidden_one
    assert 0 < config.mcmc.width <= 0.2
    assert config.optim.optimizer == defaults.choose_optimiser(
        batch_size=config.batch_size, parameters=None
    )


def test_rows_are_contiguous_from_one_electron_and_open_ended():
    assert SIZE_RULES[0].min_electrons == 1 and SIZE_RULES[-1].max_electrons is None
    for before, after in zip(SIZE_RULES, SIZE_RULES[1:], strict=False):
        assert after.min_electrons == before.max_electrons + 1
    assert all(rule_for(r.min_electrons) is r for r in SIZE_RULES)


# Settings that must never shrink (or, for lr_decay and widths, never grow) as n grows. Not the
# batch: it is chosen with the optimiser from the step cost, which grows with n per walker.
NON_DECREASING = (
    "hidden_one",
    "hidden_two",
    "layers",
    "psiformer",
    "determinants",
    "moves",
    "burn_in",
    "pretrain_iterations",
)
NON_INCREASING = ("lr_decay", "kfac_lr_decay", "width", "width_z")


def _as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def test_table_is_monotone_in_the_electron_count():
    for before, after in zip(SIZE_RULES, SIZE_RULES[1:], strict=False):
        for key in NON_DECREASING:
            pairs = zip(*(map(_as_tuple, (getattr(after, key), getattr(before, key)))), strict=True)
            assert all(a >= b for a, b in pairs), key
        for key in NON_INCREASING:
            assert getattr(after, key) <= getattr(before, key), key


def test_catalogue_settings_are_monotone():
    """Over the catalogue sorted by electron count: network size never shrinks, the
    initial width never grows with the heaviest nuclear charge within a row."""
    rows, probe = [], load_molecule("LiH")  # network size measured on one fixed molecule
    for name in CATALOGUE:
        molecule = load_molecule(name)
        config = _resolved(name)
        size = parameter_count(config.network, probe)
        rows.append((molecule.n_electrons, max(molecule.charges), config, size))
    rows.sort(key=lambda r: r[0])
    for (n0, _, c0, s0), (n1, _, c1, s1) in zip(rows, rows[1:], strict=False):
        if n1 > n0:
            assert c1.network.determinants >= c0.network.determinants, (n0, n1)
            assert c1.mcmc.moves >= c0.mcmc.moves, (n0, n1)
            assert s1 >= s0, (n0, n1)
    for rule in SIZE_RULES[1:]:
        widths = [defaults.initial_width(rule, z) for z in range(1, 16)]
        assert widths == sorted(widths, reverse=True) and widths[-1] < widths[0]


@pytest.mark.parametrize("name", ["LiH", "H", "He", "H2", "Li", "Be", "H4"])
def test_small_systems_keep_todays_defaults(name):
    """Up to 4 electrons the resolved config is exactly Config() (the measured LiH defaults)."""
    expected = Config()
    expected = dataclasses.replace(
        expected, system=dataclasses.replace(expected.system, molecule=name)
    )
    assert _resolved(name) == expected


def test_first_row_equals_config_defaults():
    """The table's first row and Config() must not drift apart (edit both together)."""
    tree = defaults.size_defaults(load_molecule("LiH"))
    tree["optim"]["optimizer"] = defaults.choose_optimiser(
        batch_size=SIZE_RULES[0].batch_size, parameters=None
    )
    assert config_lib.build_config(None, tree) == Config()


def test_width_scales_with_the_heaviest_nucleus():
    rule = rule_for(14)
    assert defaults.initial_width(rule, 7) == pytest.approx(0.05)
    assert defaults.initial_width(rule, 15) < defaults.initial_width(rule, 7)
    assert defaults.initial_width(rule_for(4), 4) == 0.2 and math.isinf(rule_for(4).width_z)


def _printed(capsys, argv):
    assert cli.main(["run", *argv, "--print-config"]) == 0
    return tomllib.loads(capsys.readouterr().out)


def test_table_values_are_in_the_printed_config(capsys):
    printed = _printed(capsys, ["--molecule", "N2"])
    rule = rule_for(14)
    assert printed["batch_size"] == rule.batch_size
    assert printed["network"]["ferminet"]["hidden_two"] == rule.hidden_two
    assert printed["mcmc"]["moves"] == rule.moves and printed["mcmc"]["width"] == 0.05
    assert printed["mcmc"]["proposal"] == rule.proposal == "nucleus-scaled"
    assert printed["pretrain"]["iterations"] == rule.pretrain_iterations
    assert printed["optim"]["lr_decay"] == rule.lr_decay
    assert printed["optim"]["kfac"]["lr_decay"] == rule.kfac_lr_decay


def test_user_values_win_over_the_table(capsys, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("batch_size = 64\n[mcmc]\nmoves = 3\nwidth = 0.3\n[optim]\nlr_decay = 0.5\n")
    argv = ["--molecule", "N2", "--config", str(path), "--set", "network.determinants=2"]
    printed = _printed(capsys, [*argv, "--set", "mcmc.moves=4", "--set", "pretrain.tolerance=0"])
    assert printed["batch_size"] == 64 and printed["mcmc"]["width"] == 0.3  # file
    assert printed["optim"]["lr_decay"] == 0.5
    assert printed["mcmc"]["moves"] == 4 and printed["network"]["determinants"] == 2  # --set
    assert printed["pretrain"]["tolerance"] == 0.0
    assert printed["network"]["ferminet"]["hidden_one"] == rule_for(14).hidden_one  # table
    printed = _printed(capsys, ["--molecule", "N2", "--config", str(path), "--batch-size", "32"])
    assert printed["batch_size"] == 32  # flag over file


def test_charge_changes_the_row(capsys):
    """The row follows the electron count after --charge (Ne: 10 electrons, Ne8+: 2)."""
    assert _printed(capsys, ["--molecule", "Ne"])["mcmc"]["moves"] == rule_for(10).moves
    ion = _printed(capsys, ["--molecule", "Ne", "--charge", "8"])
    assert ion["mcmc"]["moves"] == rule_for(2).moves == Config().mcmc.moves
    assert ion["mcmc"]["width"] == Config().mcmc.width  # 4 or fewer electrons: no 1/Z scaling


def test_paper_preset_keeps_its_own_sizes():
    config = _resolved("N2", {"network": {"preset": "paper"}})
    assert config.network.determinants == Config().network.determinants
    assert resolve_network(config.network).ferminet.hidden_one == 256
    assert config.mcmc.moves == rule_for(14).moves  # the rest of the row still applies


def test_resume_keeps_the_stored_config(tmp_path):
    """An N2 run stored with the pre-table defaults resumes: the table is not applied again."""
    old = Config()
    old = dataclasses.replace(old, system=dataclasses.replace(old.system, molecule="N2"))
    runfolder.write_config(tmp_path, old)
    args = cli.build_parser().parse_args(["run", "--resume", str(tmp_path), "--steps", "20"])
    config = cli.resolve_config(args)
    assert config == dataclasses.replace(old, steps=20)
    driver.check_resume_compatible(runfolder.read_config(tmp_path), config, reinit_walkers=False)
    assert _resolved("N2").network != old.network  # a fresh run would differ (and be refused)


def test_bench_step_applies_the_table(monkeypatch):
    from vmcjet import bench_step

    seen = []
    monkeypatch.setattr(bench_step, "run", lambda config, **kwargs: seen.append(config))
    assert cli.main(["bench", "step", "--molecule", "N2", "--set", "mcmc.moves=2"]) == 0
    assert seen[0].batch_size == rule_for(14).batch_size and seen[0].mcmc.moves == 2


def test_optimiser_follows_the_batch():
    """The measured batch nearest on a log scale decides; a flag or --set batch wins over the row
    and moves the optimiser with it; an explicit optimiser wins over both."""
    assert _resolved("LiH").optim.optimizer == "spring"  # batch 256
    for batch, expected in [(64, "kfac"), (128, "kfac"), (200, "spring"), (300, "spring")]:
        assert _resolved("LiH", {"batch_size": batch}).optim.optimizer == expected, batch
    for batch, expected in [(400, "kfac"), (4096, "kfac")]:
        assert _resolved("LiH", {"batch_size": batch}).optim.optimizer == expected, batch
    sets = {"batch_size": 128, "optim": {"optimizer": "spring"}}
    assert _resolved("LiH", sets).optim.optimizer == "spring"


def test_optimiser_comes_from_the_table(monkeypatch):
    monkeypatch.setattr(defaults, "choose_optimiser", lambda **kwargs: "adam")
    assert _resolved("N2").optim.optimizer == "adam"
    assert _resolved("N2", {"optim": {"optimizer": "spring"}}).optim.optimizer == "spring"

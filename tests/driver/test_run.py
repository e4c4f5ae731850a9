"""`vmcjet run / eval / analyze / plot` end to end through the CLI, with a tiny network."""

import dataclasses
import json

import h5py
import jax
import numpy as np
import pytest
from tiny_runs import stats_rows, tiny_run_args

from vmcjet import checkpoint, cli, driver, hartree_fock
from vmcjet.config import Config, LaplacianConfig, NetworkConfig
from vmcjet.errors import InputError
from vmcjet.molecule import load_molecule


@pytest.fixture(scope="module")
def h2_run(tmp_path_factory):
    """A real short H2 run: pretraining, burn-in and 150 SPRING steps."""
    folder = tmp_path_factory.mktemp("h2") / "run"
    # Optimiser settings pinned here (not the LiH-tuned defaults) so the test stays short.
    settings = {
        "pretrain.iterations": 50,
        "optim.lr": 0.1,
        "optim.lr_decay": 1e-3,
        "optim.momentum": 0.9,
        "optim.max_norm": 0.1,
    }
    extra = [item for key, value in settings.items() for item in ("--set", f"{key}={value}")]
    args = tiny_run_args(folder, steps=150, batch=64, extra=extra)
    assert cli.main(args) == 0
    return folder


def test_run_folder_contents(h2_run):
    for name in ("config.toml", "metadata.json", "stats.csv", "run.log"):
        assert (h2_run / name).is_file(), name
    rows = stats_rows(h2_run)
    assert [int(r["step"]) for r in rows] == list(range(150))
    assert all(np.isfinite(float(r["energy"])) for r in rows)
    metadata = json.loads((h2_run / "metadata.json").read_text())
    assert metadata["seed"] == 0 and metadata["molecule"] == "H2"
    assert metadata["parameters"] > 0 and metadata["devices_in_mesh"] == 2
    assert metadata["jax_version"] == jax.__version__
    steps = [
        checkpoint.read_header(p).step for p in checkpoint.list_checkpoints(h2_run / "checkpoints")
    ]
    assert steps[-1] == 150
    assert "done: 150 steps" in (h2_run / "run.log").read_text()


def test_energy_goes_below_hartree_fock(h2_run):
    hf = hartree_fock.run_hartree_fock(load_molecule("H2"), basis="ccpvdz")
    energies = np.array([float(r["energy"]) for r in stats_rows(h2_run)])
    assert np.mean(energies[-30:]) < hf.energy


def test_eval_analyze_plot(h2_run, capsys):
    assert cli.main(["eval", str(h2_run), "--steps", "30"]) == 0
    record = json.loads((h2_run / "eval.json").read_text())
    assert record["samples"] == 30 and record["error"] > 0
    assert record["reference"] == pytest.approx(-1.174475)
    assert record["difference_mha"] == pytest.approx(
        1000 * (record["energy"] - record["reference"])
    )
    assert cli.main(["analyze", str(h2_run)]) == 0
    assert "reblocked" in capsys.readouterr().out
    assert cli.main(["plot", str(h2_run)]) == 0
    assert (h2_run / "training.png").stat().st_size > 10_000


def test_eval_with_observables(h2_run, capsys):
    """H2 with one determinant of alpha and beta orbitals pretrained to RHF's: <S^2> = 1 - <a|b>^2,
    near 0. The dipole's entries are consistent (the tiny network after 150 steps need not be
    symmetric, so its value is checked on exact wavefunctions in tests/test_observables.py); the
    density file integrates to the reported number of electrons inside its box; the net ZV-ZB
    force (the sum over the two nuclei) is zero within its own error bars."""
    assert cli.main(["plot", str(h2_run), "--density"]) == 2  # no density.h5 yet
    assert "--observables density" in capsys.readouterr().err
    args = ["eval", str(h2_run), "--steps", "200", "--observables", "s2,dipole,density,forces"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "<S^2>" in out and "dipole" in out and "density.h5" in out and "ZV-ZB" in out
    record = json.loads((h2_run / "eval.json").read_text())
    assert -0.05 < record["s2"]["value"] < 0.5 and record["s2"]["error"] >= 0
    dipole = record["dipole"]
    assert np.all(np.asarray(dipole["errors_au"]) > 0)
    assert dipole["magnitude_au"] == pytest.approx(np.linalg.norm(dipole["components_au"]))
    assert dipole["magnitude_debye"] == pytest.approx(2.541746473 * dipole["magnitude_au"])
    density = record["density"]  # the box holds all but ~0.1% of the electrons (2 for H2)
    assert density["electrons"] == 2 and 1.98 < density["integral_value"] <= 2.0
    with h5py.File(h2_run / density["file"], "r") as handle:
        points = density["grid_points"]
        assert handle["alpha"].shape == handle["beta"].shape == (points,) * 3
        total = np.sum(handle["alpha"]) + np.sum(handle["beta"])
        volume = np.prod(np.diff([handle[f"edges_{a}"][:2] for a in "xyz"], axis=1))
    assert total * volume == pytest.approx(density["integral_value"], rel=1e-6)
    assert cli.main(["plot", str(h2_run), "--density"]) == 0
    assert (h2_run / "density.png").stat().st_size > 10_000
    forces = record["forces"]  # both nuclei; by translation invariance they add up to zero
    assert forces["units"] == "hartree/bohr" and forces["atoms"] == 2
    zv_zb, errors = np.asarray(forces["zv_zb"]["forces"]), np.asarray(forces["zv_zb"]["errors"])
    assert zv_zb.shape == (2, 3) and np.all(errors > 0)
    net, net_errors = np.asarray(forces["zv_zb"]["net"]), np.asarray(forces["zv_zb"]["net_errors"])
    np.testing.assert_allclose(net, zv_zb.sum(axis=0), rtol=1e-9, atol=1e-12)
    assert np.all(np.abs(net) < 4 * net_errors + 1e-3)


def test_existing_run_folder_needs_resume(h2_run, capsys):
    assert cli.main(tiny_run_args(h2_run)) == 2
    assert "already holds a run; use --resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steps", "0"], "'steps' must be > 0"),
        (["--batch-size", "-4"], "'batch_size' must be > 0"),
        (["--set", "optim.lr=0"], "'optim.lr' must be > 0"),
        (["--batch-size", "7"], "not divisible by the 2 devices"),
    ],
)
def test_bad_run_settings_exit_2(tmp_path, capsys, extra, message):
    assert cli.main(tiny_run_args(tmp_path / "run") + extra) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"network": NetworkConfig(kind="fermi")}, r"\(--network / network.kind\)"),
        ({"laplacian": LaplacianConfig(method="nested")}, "laplacian.method"),
        ({"batch_size": 0}, "'batch_size' must be > 0"),
    ],
)
def test_python_callers_of_driver_run_get_the_commands_checks(tmp_path, changes, message):
    """`driver.run` validates the config it is given (no CLI in between) before writing."""
    config = dataclasses.replace(Config(), **changes)
    with pytest.raises(InputError, match=message):
        driver.run(config, load_molecule("H2"), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_training_monitors_observables_and_a_resume_rewrites_them(tmp_path):
    """observables_every = 2: after steps 1 and 3 (0-based) a line of s2, dipole and both force
    estimators (density is eval-only); a resume from the step-4 checkpoint drops the lines of
    later steps (one written before a crash, one cut short) and writes them again."""
    folder = tmp_path / "run"
    extra = ["--set", "observables=s2,dipole,forces,density", "--set", "observables_every=2"]
    assert cli.main(tiny_run_args(folder, steps=4, extra=extra)) == 0
    path = folder / "observables.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 3]
    assert set(lines[0]) == {"step", "s2", "dipole", "forces"}
    assert np.shape(lines[0]["dipole"]) == (3,) and np.shape(lines[0]["forces"]) == (2, 2, 3)
    with open(path, "a") as handle:
        handle.write('{"step": 5, "s2": 123.0}\n{"step": 7, "s2')
    assert cli.main(["run", "--resume", str(folder), "--steps", "6"]) == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 3, 5] and lines[2]["s2"] != 123.0

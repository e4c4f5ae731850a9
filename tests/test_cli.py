"""The `vmcjet` command: molecules listing, config resolution, one-line errors, exit 2."""

import gc
import signal
import subprocess
import sys
import threading
import tomllib
import types
from pathlib import Path

import pytest

import vmcjet
from vmcjet import cli
from vmcjet.config import Config
from vmcjet.molecule import catalogue_names
from vmcjet.units import ANGSTROM_PER_BOHR

REPO = Path(__file__).resolve().parents[1]


def test_molecules_lists_the_catalogue(capsys):
    assert cli.main(["molecules"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert set(catalogue_names()) <= set(rows)
    assert rows["LiH"].split()[1:4] == ["4", "0", "-8.070548"]
    assert rows["N"].split()[1:3] == ["7", "3"]


def test_molecules_shows_one_system(capsys):
    assert cli.main(["molecules", "lih"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("LiH: 4 electrons (2 alpha, 2 beta)")
    assert f"3.01500 bohr ({3.015 * ANGSTROM_PER_BOHR:.5f} angstrom)" in out
    h_row = next(line for line in out.splitlines() if line.startswith("H "))
    assert [float(v) for v in h_row.split()[1:]] == pytest.approx(
        [0, 0, 3.015, 0, 0, 3.015 * ANGSTROM_PER_BOHR], abs=1e-5
    )
    assert "-8.070548 Ha (exact)" in out


def _printed_config(capsys, argv):
    assert cli.main(["run", *argv, "--print-config"]) == 0
    return tomllib.loads(capsys.readouterr().out)


def test_print_config_applies_flags(capsys):
    argv = ["--molecule", "N2", "--steps", "7", "--network", "psiformer", "--batch-size", "32"]
    argv += ["--seed", "3", "--laplacian", "loop", "--charge", "0", "--spin", "2"]
    printed = _printed_config(capsys, argv)
    assert (printed["steps"], printed["batch_size"], printed["seed"]) == (7, 32, 3)
    assert printed["system"]["molecule"] == "N2" and printed["system"]["spin"] == 2
    assert printed["network"]["kind"] == "psiformer"
    assert printed["laplacian"]["method"] == "loop"
    assert printed["optim"]["lr"] == Config().optim.lr


def test_precedence_defaults_file_flags_set(capsys, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("steps = 3\nseed = 4\nbatch_size = 8\n[optim]\nlr = 0.5\n")
    argv = ["--config", str(path), "--steps", "7", "--seed", "5", "--set", "steps=9"]
    printed = _printed_config(capsys, [*argv, "--set", "optim.lr=0.25"])
    assert (printed["steps"], printed["seed"], printed["batch_size"]) == (9, 5, 8)
    assert printed["optim"]["lr"] == 0.25


def test_run_calls_the_driver(monkeypatch, tmp_path):
    calls = []
    fake_driver = types.ModuleType("vmcjet.driver")
    fake_driver.run = lambda *args, **kwargs: calls.append((args, kwargs))
    monkeypatch.setitem(sys.modules, "vmcjet.driver", fake_driver)
    monkeypatch.setattr(vmcjet, "driver", fake_driver, raising=False)
    argv = ["run", "--molecule", "h2", "--steps", "2", "--out", str(tmp_path / "r")]
    assert cli.main(argv) == 0
    (config, molecule), kwargs = calls[0]
    assert config.steps == 2 and molecule.name == "H2"
    assert kwargs == {
        "out": str(tmp_path / "r"),
        "resume": None,
        "reinit_walkers": False,
        "argv": argv,
    }


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["molecules", "LiHH"], "unknown molecule 'LiHH'"),
        (["run", "--molecule", "Xx.xyz"], "not found"),
        (["run", "--molecule", "Li", "--spin", "2", "--print-config"], "multiplicity"),
        (["run", "--network", "resnet"], "choose one of: ferminet, psiformer"),
        (["run", "--laplacian", "magic"], "choose one of: collapsed"),
        (["run", "--set", "optim.lrr=1"], "did you mean 'optim.lr'"),
        (["run", "--steps", "many"], "invalid int value"),
        (["run", "--bogus"], "unrecognized arguments"),
        (["run", "--set", "optim.damping=-1"], "'optim.damping' must be > 0"),
        (["run", "--set", "optim.damping=-1", "--print-config"], "'optim.damping' must be > 0"),
        (["run", "--set", "memory_budget_mib=0"], "'memory_budget_mib' must be > 0"),
        (["run", "--set", "max_minutes=-5"], "'max_minutes' must be > 0"),
        (["run", "--set", "optim.optimizer=spring2"], "did you mean 'spring'"),
        (["run", "--set", "optim.kernel_dtype=float16"], "optim.kernel_dtype"),
        (["run", "--set", "optim.kfac.damping=-1"], "'optim.kfac.damping' must be > 0"),
        (["run", "--set", "optim.lr_drop_factor=0"], "'optim.lr_drop_factor' must be > 0"),
        (["run", "--set", "optim.lr_drop_step=-1"], "'optim.lr_drop_step' must be >= 0"),
        (["run", "--set", "optim.kfac.decay=1"], "'optim.kfac.decay' must be < 1"),
        (["run", "--set", "optim.kfac.inverse_period=0"], "'optim.kfac.inverse_period' must be"),
        (["run", "--set", "optim.kfac.max_norm=0"], "'optim.kfac.max_norm' must be > 0"),
        (["run", "--set", "optim.kfac.sharing=both"], "optim.kfac.sharing"),
        (["run", "--set", "optim.optimizer=kfca"], "did you mean 'kfac'"),
        (["run", "--set", "network.symmetry=mirror"], "network.symmetry"),
        (
            [
                "run",
                "--molecule",
                "N2",
                "--set",
                "network.symmetry=inversion",
                "--set",
                "optim.optimizer=kfac",
            ],
            "not supported with KFAC",
        ),
        (["run", "--molecule", "LiH", "--set", "network.symmetry=inversion"], "inversion symmetry"),
        (["run", "--set", "optim.lr=nan"], "'optim.lr' must be a finite number, got nan"),
        (["run", "--set", "mcmc.width=inf"], "'mcmc.width' must be a finite number"),
        (["run", "--set", "checkpoint.every_steps=-1"], "'checkpoint.every_steps' must be >= 0"),
        (["run", "--set", "checkpoint.every_minutes=-2"], "'checkpoint.every_minutes' must be"),
        (["run", "--seed", "18446744073709551616"], "'seed' must be at most"),
        (["run", "--seed", "-3"], "'seed' must be >= 0"),
        (["bench", "step", "--batch-sizes", "128,x"], "--batch-sizes expects"),
        (["run", "--resume", "/nonexistent/run"], "not a vmcjet run folder"),
        ([], "required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, expected):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmcjet: error: ")
    assert expected in lines[0]


@pytest.mark.parametrize(
    "argv",
    [["molecules", "Hee"], ["run", "--molecule", "LiH", "--spin", "7", "--print-config"]],
)
def test_python_m_vmcjet_bad_input(argv):
    result = subprocess.run(
        [sys.executable, "-m", "vmcjet", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("vmcjet: error: ")


def test_python_m_vmcjet_molecules():
    result = subprocess.run(
        [sys.executable, "-m", "vmcjet", "molecules", "P2"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("P2: 30 electrons")


def test_a_signal_inside_a_gc_callback_is_sent_again_not_lost(monkeypatch):
    """JAX registers a gc callback; an Interrupted raised in it would be printed and dropped, so
    the handler re-sends the signal from outside it instead of raising there."""
    frames = []

    def callback(phase, info):
        frames.append(sys._getframe())

    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)
        inside = frames[0]
    sent = threading.Event()
    calls = []
    monkeypatch.setattr(cli.os, "kill", lambda pid, sig: (calls.append((pid, sig)), sent.set()))
    gc.callbacks.append(callback)  # the frame's code must be a registered callback's
    try:
        cli._raise_interrupted(signal.SIGINT, inside)  # no exception: deferred
    finally:
        gc.callbacks.remove(callback)
    assert sent.wait(timeout=5) and calls == [(cli.os.getpid(), signal.SIGINT)]
    with pytest.raises(cli.Interrupted):
        cli._raise_interrupted(signal.SIGINT, sys._getframe())  # ordinary code: raises at once

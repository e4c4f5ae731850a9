"""Exact restart: 2N steps == N steps + resume + N steps, bitwise, on 1 and 2 devices; and the
same energies when the device count changes."""

import h5py
import numpy as np
import pytest
from tiny_runs import stats_rows, tiny_run_args

from vmcjet import checkpoint, cli


def final_arrays(folder) -> dict[str, np.ndarray]:
    path = checkpoint.list_checkpoints(folder / "checkpoints")[-1]
    arrays = {}
    with h5py.File(path, "r") as f:
        f["state"].visititems(
            lambda name, obj: (
                arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return arrays


def without_time(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def run(folder, steps, *extra):
    assert cli.main(tiny_run_args(folder, steps=steps, extra=list(extra))) == 0


@pytest.mark.parametrize("devices", [1, 2])
def test_resume_is_bitwise_identical(tmp_path, devices):
    extra = ("--set", f"devices={devices}", "--set", "checkpoint.every_steps=3")
    run(tmp_path / "full", 8, *extra)
    run(tmp_path / "half", 4, *extra)
    assert cli.main(["run", "--resume", str(tmp_path / "half"), "--steps", "8"]) == 0
    full, resumed = final_arrays(tmp_path / "full"), final_arrays(tmp_path / "half")
    assert full.keys() == resumed.keys() and any("walkers" in k for k in full)
    for name in full:
        np.testing.assert_array_equal(full[name], resumed[name], err_msg=name)
    full_rows, resumed_rows = stats_rows(tmp_path / "full"), stats_rows(tmp_path / "half")
    assert without_time(full_rows) == without_time(resumed_rows)


def test_resume_with_kfac_is_bitwise_identical(tmp_path):
    """KFAC's factors and eigendecompositions are in the checkpoint: the resumed run (step 4, not
    an inverse-update step with period 3) continues from the stored ones."""
    extra = ("--set", "optim.optimizer=kfac", "--set", "optim.kfac.inverse_period=3")
    run(tmp_path / "full", 8, *extra)
    run(tmp_path / "half", 4, *extra)
    assert cli.main(["run", "--resume", str(tmp_path / "half"), "--steps", "8"]) == 0
    full, resumed = final_arrays(tmp_path / "full"), final_arrays(tmp_path / "half")
    assert full.keys() == resumed.keys()
    assert any(k.startswith("opt_state/a_eigen/") for k in full)
    for name in full:
        np.testing.assert_array_equal(full[name], resumed[name], err_msg=name)
    assert without_time(stats_rows(tmp_path / "full")) == without_time(
        stats_rows(tmp_path / "half")
    )


def test_resume_with_an_ecp_is_bitwise_identical(tmp_path):
    """The ECP's quadrature rotations come from the run's "ecp" stream folded with the step, so
    a resumed run draws the same ones (LiH with Li's ccECP: 2 valence electrons)."""

    def run_lih(folder, steps):
        args = tiny_run_args(
            folder, molecule="LiH", steps=steps, extra=["--set", "system.ecp=ccecp"]
        )
        assert cli.main(args) == 0

    run_lih(tmp_path / "full", 6)
    run_lih(tmp_path / "half", 3)
    assert cli.main(["run", "--resume", str(tmp_path / "half"), "--steps", "6"]) == 0
    full, resumed = final_arrays(tmp_path / "full"), final_arrays(tmp_path / "half")
    (walkers,) = [v for k, v in full.items() if k.endswith("walkers")]
    assert walkers.shape[1:] == (2, 3)  # Li's two core electrons are gone
    for name in full:
        np.testing.assert_array_equal(full[name], resumed[name], err_msg=name)
    rows = without_time(stats_rows(tmp_path / "full"))
    assert rows == without_time(stats_rows(tmp_path / "half"))
    assert all(np.isfinite(float(row["energy"])) for row in rows)


def test_same_energies_on_one_and_two_devices_and_across_a_change(tmp_path):
    extra = ("--set", "precision=float64")
    run(tmp_path / "one", 6, *extra, "--set", "devices=1")
    run(tmp_path / "two", 6, *extra, "--set", "devices=2")
    run(tmp_path / "changed", 3, *extra, "--set", "devices=2")
    resume = ["run", "--resume", str(tmp_path / "changed"), "--steps", "6", "--set", "devices=1"]
    assert cli.main(resume) == 0
    energies = {
        name: np.array([float(r["energy"]) for r in stats_rows(tmp_path / name)])
        for name in ("one", "two", "changed")
    }
    assert energies["one"].shape == (6,)
    np.testing.assert_allclose(energies["two"], energies["one"], rtol=1e-8)
    np.testing.assert_allclose(energies["changed"], energies["one"], rtol=1e-8)


def test_resume_refuses_a_changed_setting(tmp_path, capsys):
    run(tmp_path / "run", 2)
    capsys.readouterr()
    assert cli.main(["run", "--resume", str(tmp_path / "run"), "--batch-size", "16"]) == 2
    assert "setting 'batch_size' differs" in capsys.readouterr().err
    assert cli.main(["run", "--resume", str(tmp_path / "run"), "--network", "psiformer"]) == 2
    assert "setting 'network' differs" in capsys.readouterr().err


def assert_one_error_line(err: str, message: str) -> None:
    """Skipped-checkpoint reports may precede it; the error itself is one line, no traceback."""
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("vmcjet: error:") and message in last


def test_resume_without_a_valid_checkpoint(tmp_path, capsys):
    run(tmp_path / "run", 2)
    for path in checkpoint.list_checkpoints(tmp_path / "run" / "checkpoints"):
        path.write_bytes(path.read_bytes()[:200])
    capsys.readouterr()
    assert cli.main(["run", "--resume", str(tmp_path / "run"), "--steps", "4"]) == 2
    assert_one_error_line(capsys.readouterr().err, "no valid checkpoint")


def test_resume_of_another_format_version(tmp_path, capsys):
    run(tmp_path / "run", 2)
    for path in checkpoint.list_checkpoints(tmp_path / "run" / "checkpoints"):
        with h5py.File(path, "r+") as f:
            f.attrs["format_version"] = 999
    capsys.readouterr()
    assert cli.main(["run", "--resume", str(tmp_path / "run"), "--steps", "4"]) == 2
    assert_one_error_line(capsys.readouterr().err, "format version")


def test_reinit_walkers_allows_a_new_batch_size(tmp_path):
    run(tmp_path / "run", 3)
    resume = ["run", "--resume", str(tmp_path / "run"), "--steps", "5", "--batch-size", "16"]
    assert cli.main([*resume, "--reinit-walkers"]) == 0
    assert [int(r["step"]) for r in stats_rows(tmp_path / "run")] == list(range(5))
    assert final_arrays(tmp_path / "run")["sampler/walkers"].shape == (16, 2, 3)


def test_time_limit_stops_with_a_checkpoint_and_resume_finishes_bitwise(tmp_path):
    run(tmp_path / "full", 4)
    # A limit already passed when training starts: the run stops after its first step, saved.
    run(tmp_path / "limited", 4, "--set", "max_minutes=1e-9")
    assert len(stats_rows(tmp_path / "limited")) == 1
    assert (
        "time limit of 1e-09 min reached after step 1"
        in (tmp_path / "limited" / "run.log").read_text()
    )
    limit_off = ["--set", "max_minutes=10"]
    assert cli.main(["run", "--resume", str(tmp_path / "limited"), *limit_off]) == 0
    full, resumed = final_arrays(tmp_path / "full"), final_arrays(tmp_path / "limited")
    for name in full:
        np.testing.assert_array_equal(full[name], resumed[name], err_msg=name)
    assert without_time(stats_rows(tmp_path / "full")) == without_time(
        stats_rows(tmp_path / "limited")
    )

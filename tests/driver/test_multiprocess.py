"""Two processes on 127.0.0.1 (jax.distributed, CPU collectives) run the same optimisation as one
process with two devices: same energies; process 0 alone writes the run folder."""

import numpy as np
import pytest
from tiny_runs import stats_rows, tiny_run_args

from vmcjet import checkpoint, cli
from vmcjet.distributed import launch_local_processes

pytestmark = pytest.mark.multidevice


def test_two_processes_match_one_process(tmp_path):
    extra = ["--set", "precision=float64"]
    assert cli.main(tiny_run_args(tmp_path / "single", steps=5, extra=extra)) == 0
    args = ["-m", "vmcjet", *tiny_run_args(tmp_path / "multi", steps=5, extra=extra)]
    done = launch_local_processes(args, n_processes=2, devices_per_process=1, timeout=300)
    for proc in done:
        assert proc.returncode == 0, proc.stderr[-3000:]
    single = np.array([float(r["energy"]) for r in stats_rows(tmp_path / "single")])
    multi = np.array([float(r["energy"]) for r in stats_rows(tmp_path / "multi")])
    assert single.shape == (5,)
    np.testing.assert_allclose(multi, single, rtol=1e-8)
    steps = [
        checkpoint.read_header(p).step
        for p in checkpoint.list_checkpoints(tmp_path / "multi" / "checkpoints")
    ]
    assert steps[-1] == 5

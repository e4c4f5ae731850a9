"""Issue 13: one writer per run folder, honest non-finite steps, set-up as part of the run's
transaction (kill -9 / SIGINT / SIGTERM / failures during set-up), filesystem faults, the resume
policy and the config history. Each test fails when its behaviour is removed."""

import json
import os
import signal
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from test_kill import TIMEOUT, cache_env, rows_done, start, tail, wait_for
from tiny_runs import stats_rows, tiny_run_args

from vmcjet import checkpoint, cli, driver, runfolder
from vmcjet.train import StepStats


def one_error_line(err: str, message: str, prefix: str = "vmcjet: error:") -> None:
    """Log lines may come first; the error is the last line, one line, no traceback."""
    assert "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(prefix) and message in last, last


def log_has(folder, text):
    path = folder / "run.log"
    return path.exists() and text in path.read_text(errors="replace")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny finished 3-step run (kept unchanged: tests copy it if they change it)."""
    folder = tmp_path_factory.mktemp("done") / "run"
    assert cli.main(tiny_run_args(folder, steps=3)) == 0
    return folder


def copy_run(src, dst):
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    (dst / "run.lock").unlink(missing_ok=True)
    return dst


# --- one writer per run folder ---------------------------------------------------------------


def test_a_live_run_refuses_a_second_writer_and_finishes_with_every_row(tmp_path, capsys):
    folder, env, log = tmp_path / "run", cache_env(tmp_path), tmp_path / "first.log"
    first = start(tiny_run_args(folder, steps=100_000), env, log)
    wait_for(lambda: rows_done(folder) >= 5, first, "five steps", log)
    resume = [sys.executable, "-m", "vmcjet", "run", "--resume", str(folder), "--steps", "9999999"]
    second = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert second.returncode == 2, second.stderr[-2000:]
    one_error_line(second.stderr, f"pid={first.pid}")
    assert first.poll() is None, "the first run must still be going"
    capsys.readouterr()
    assert cli.main(tiny_run_args(folder, steps=4)) == 2  # a new run on the same --out
    one_error_line(capsys.readouterr().err, "is in use by another vmcjet process")
    assert cli.main(["analyze", str(folder), "--discard", "0"]) == 0  # readers are welcome
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=TIMEOUT) == 0, tail(log)
    steps = [int(r["step"]) for r in stats_rows(folder)]
    assert steps == list(range(len(steps))) and len(steps) >= 5
    newest = checkpoint.list_checkpoints(folder / "checkpoints")[-1]
    assert checkpoint.read_header(newest).step == len(steps)


# --- non-finite steps ------------------------------------------------------------------------


def test_steps_without_a_finite_walker_are_skipped_and_stop_the_run(tmp_path, monkeypatch, capsys):
    """Every local energy NaN: with Adam the update (zero residuals) is finite, so only the
    "no finite walker" rule can skip the step; before, such steps reported E = 0.0."""
    import vmcjet.step_parts as step_parts

    def nan_energy(*args, **kwargs):
        return lambda params, walkers, rotations=None: jnp.full(
            walkers.shape[:1], jnp.nan, walkers.dtype
        )

    monkeypatch.setattr(step_parts, "make_local_energy_fn", nan_energy)
    folder = tmp_path / "run"
    extra = ["--set", "optim.optimizer=adam", "--set", "checkpoint.max_skipped_steps=3"]
    assert cli.main(tiny_run_args(folder, steps=20, extra=extra)) == 2
    one_error_line(capsys.readouterr().err, "3 consecutive steps had non-finite updates")
    rows = stats_rows(folder)
    assert [r["step"] for r in rows] == ["0", "1", "2"]
    for row in rows:
        assert row["energy"] == "" and row["variance"] == "" and row["running_mean"] == ""
        assert row["skipped"] == "1" and row["nonfinite"] == "8"


def test_running_mean_analyze_and_plot_ignore_skipped_rows(tmp_path, finished_run):
    history = [-1.0, -1.2]
    nan = jnp.asarray(jnp.nan)
    stats = StepStats(nan, nan, jnp.asarray(0.5), jnp.asarray(0.1), jnp.asarray(8), jnp.asarray(0))
    row = driver._row(2, stats, history, 0.1)
    assert np.isnan(row["energy"]) and row["skipped"] == 1 and history == [-1.0, -1.2]
    assert row["running_mean"] == pytest.approx(-1.2)  # the last 10% of the measured steps
    folder = copy_run(finished_run, tmp_path / "run")
    header = ",".join(runfolder.STATS_COLUMNS)
    lines = [f"{t},{-1.0 - 0.01 * (t % 3)},-1.0,0.1,0.5,0.2,0,0,0.01" for t in range(8)]
    lines[3] = "3,,-1.0,,0.5,0.2,8,1,0.01"
    (folder / "stats.csv").write_text("\n".join([header, *lines]) + "\n")
    from vmcjet import evaluate, plots

    record = evaluate.analyze(folder, discard=0.0)
    finite = [-1.0 - 0.01 * (t % 3) for t in range(8) if t != 3]
    assert record["energy"] == pytest.approx(np.mean(finite)) and record["skipped_steps"] == 1
    assert plots.plot(folder).stat().st_size > 1000


# --- set-up is part of the transaction -------------------------------------------------------

SETUP = ["--set", "pretrain.iterations=300", "--set", "mcmc.burn_in=3000"]
PHASES = [  # (phase, condition on the run folder that means the process is in it)
    ("initialisation and Hartree-Fock", lambda f: (f / "config.toml").exists()),
    ("pretraining", lambda f: log_has(f, "Hartree-Fock (")),
    ("burn-in", lambda f: log_has(f, "iterations ran")),
]


def kill_in_phase(args, folder, env, log, phase, condition, sig):
    proc = start(args, env, log)
    wait_for(lambda: condition(folder), proc, phase, log)
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    assert not checkpoint.list_checkpoints(folder / "checkpoints"), f"{phase}: set-up had ended"
    return code


def test_kill_9_in_each_setup_phase_then_the_same_command_succeeds(tmp_path):
    folder, env, log = tmp_path / "run", cache_env(tmp_path), tmp_path / "out.log"
    args = tiny_run_args(folder, steps=3, extra=SETUP)
    for phase, condition in PHASES:
        code = kill_in_phase(args, folder, env, log, phase, condition, signal.SIGKILL)
        assert code == -signal.SIGKILL
    assert start(args, env, log).wait(timeout=TIMEOUT) == 0, tail(log)
    assert [int(r["step"]) for r in stats_rows(folder)] == [0, 1, 2]
    assert log_has(folder, "did not finish; starting it again")


def test_sigint_and_sigterm_in_setup_end_with_one_line_then_resume_succeeds(tmp_path):
    folder, env = tmp_path / "run", cache_env(tmp_path)
    args = tiny_run_args(folder, steps=3, extra=SETUP)
    for (phase, condition), sig in zip(PHASES[1:], (signal.SIGINT, signal.SIGTERM), strict=True):
        log = tmp_path / f"{sig.name}.log"
        code = kill_in_phase(args, folder, env, log, phase, condition, sig)
        assert code == 128 + sig, tail(log)
        one_error_line(log.read_text(), f"stopped by {sig.name}", prefix="vmcjet: stopped")
    log = tmp_path / "resume.log"
    resume = ["run", "--resume", str(folder)]
    assert start(resume, env, log).wait(timeout=TIMEOUT) == 0, tail(log)
    assert [int(r["step"]) for r in stats_rows(folder)] == [0, 1, 2]


def test_a_failed_setup_is_started_again_by_the_same_command_or_resume(tmp_path, capsys):
    """A bad basis (one line, item 8) fails during set-up; both ways of starting again work."""
    for way in ("same command", "resume"):
        folder = tmp_path / way.replace(" ", "-")
        bad = tiny_run_args(folder, steps=2, extra=["--set", "system.basis=nonsense"])
        assert cli.main(bad) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        one_error_line(err, "pyscf cannot build basis 'nonsense'")
        fix = ["--set", "system.basis=sto-3g"]
        again = (
            tiny_run_args(folder, steps=2, extra=fix)
            if way == "same command"
            else ["run", "--resume", str(folder), *fix]
        )
        assert cli.main(again) == 0, capsys.readouterr().err
        capsys.readouterr()
        assert [int(r["step"]) for r in stats_rows(folder)] == [0, 1]


def test_out_of_memory_is_one_line_naming_the_settings(tmp_path, monkeypatch, capsys):
    import jax

    def exhausted(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9e12 bytes")

    monkeypatch.setattr(driver, "initial_state", exhausted)
    assert cli.main(tiny_run_args(tmp_path / "run", steps=2)) == 2
    err = capsys.readouterr().err
    one_error_line(err, "RESOURCE_EXHAUSTED")
    for name in ("batch_size = 8", "memory_budget_mib", "laplacian.walker_batch_size"):
        assert name in err


# --- filesystems -----------------------------------------------------------------------------


def test_out_that_is_a_file_or_below_one(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "run"):
        assert cli.main(tiny_run_args(out, steps=2)) == 2
        one_error_line(capsys.readouterr().err, "is a file; choose another --out")


def test_read_only_filesystem_is_one_line(tmp_path, capsys):
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.strip()}")
    try:
        assert cli.main(tiny_run_args(mount / "run", steps=2)) == 2
        one_error_line(capsys.readouterr().err, "Read-only file system")
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# Sets RLIMIT_FSIZE, ignores SIGXFSZ (writes then fail with EFBIG) and execs vmcjet: no
# preexec_fn, which could deadlock in a fork of this multithreaded (JAX) process.
LIMITED = (
    "import os, resource, signal, sys\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (8_000, 8_000))\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'vmcjet', *sys.argv[1:]])\n"
)


def test_full_filesystem_is_one_line_and_the_rerun_succeeds(tmp_path):
    """RLIMIT_FSIZE (8 kB; a checkpoint here is 16 kB) makes the step-0 checkpoint write fail
    as on a full disk."""
    folder, env = tmp_path / "run", cache_env(tmp_path)
    args = [sys.executable, "-m", "vmcjet", *tiny_run_args(folder, steps=2)]
    limited = [sys.executable, "-c", LIMITED, *tiny_run_args(folder, steps=2)]
    done = subprocess.run(limited, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 2, done.stderr[-3000:]
    one_error_line(done.stderr, "File too large")
    assert not checkpoint.list_checkpoints(folder / "checkpoints")
    assert not [p for p in (folder / "checkpoints").iterdir()], "no temporary file is left"
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [int(r["step"]) for r in stats_rows(folder)] == [0, 1]


# --- resume policy and config history --------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seed", "7"], "setting 'seed' differs (run has 0, asked for 7)"),
        (["--set", "optim.optimizer=adam"], "setting 'optim.optimizer' differs"),
        (["--steps", "3"], "the run is at step 3 and steps = 3 asks for no more"),
        (["--steps", "2"], "the run is at step 3 and steps = 2 asks for no more"),
        (["--steps", "5", "--out", "elsewhere"], "--out and --resume exclude each other"),
    ],
)
def test_resume_policy_is_one_line(finished_run, capsys, extra, message):
    before = {p.name: p.stat().st_mtime_ns for p in finished_run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert cli.main(["run", "--resume", str(finished_run), *extra]) == 2
    err = capsys.readouterr().err
    one_error_line(err, message)
    after = {p.name: p.stat().st_mtime_ns for p in finished_run.iterdir() if p.is_file()}
    changed = {k for k in after if before.get(k) != after[k]} - {"run.log", "run.lock"}
    assert not changed, f"a refused resume changed {changed}"


def test_reinit_walkers_needs_resume(tmp_path, capsys):
    assert cli.main([*tiny_run_args(tmp_path / "run", steps=2), "--reinit-walkers"]) == 2
    one_error_line(capsys.readouterr().err, "--reinit-walkers needs --resume")
    assert not (tmp_path / "run").exists()


def test_config_history_keeps_the_original_and_each_resume(tmp_path, finished_run):
    folder = copy_run(finished_run, tmp_path / "run")
    original = (folder / "config.toml").read_text()
    resume = ["run", "--resume", str(folder), "--steps", "5", "--set", "optim.lr=0.05"]
    assert cli.main(resume) == 0
    lines = (folder / runfolder.HISTORY_FILE).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == ["start", "resume"]
    assert records[0]["config_toml"] == original
    assert records[1]["step"] == 3
    assert records[1]["changes"] == {"steps": [3, 5], "optim.lr": [0.1, 0.05]}
    assert "lr = 0.05" in (folder / "config.toml").read_text()
    assert log_has(folder, "resume changes steps 3 -> 5, optim.lr 0.1 -> 0.05")


def test_lock_is_released_when_the_holder_dies(tmp_path):
    """flock belongs to the process: after kill -9 of the holder the folder is free again."""
    code = (
        "import sys, time; from pathlib import Path; from vmcjet.runlock import RunLock\n"
        "lock = RunLock(Path(sys.argv[1])).__enter__(); print('locked', flush=True)\n"
        "time.sleep(600)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    from vmcjet.errors import InputError
    from vmcjet.runlock import RunLock

    with pytest.raises(InputError, match=f"host=.* pid={holder.pid}"), RunLock(tmp_path):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    with RunLock(tmp_path) as lock:
        assert f"pid={os.getpid()}" in lock.path.read_text()

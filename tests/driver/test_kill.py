"""A real `vmcjet run` in a subprocess, killed (SIGKILL) at several moments, including during a
checkpoint write, then resumed to completion; SIGTERM leads to a checkpoint and a clean exit."""

import functools
import os
import signal
import subprocess
import sys
import time

import pytest
from tiny_runs import stats_rows, tiny_run_args

from vmcjet import checkpoint

STEPS = 300
TIMEOUT = 240.0  # seconds any one subprocess may take


def cache_env(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "jax-cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


def start(args, env, log):
    """The run writes its output to `log` (a pipe nobody drains could fill up and block it)."""
    command = [sys.executable, "-m", "vmcjet", *args]
    with open(log, "ab") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def tail(log):
    return log.read_text(errors="replace")[-2000:]


def wait_for(condition, proc, what, log):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"run ended before {what}: {tail(log)}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}: {tail(log)}")
        time.sleep(0.001)


def rows_done(folder):
    path = folder / "stats.csv"
    return len(stats_rows(folder)) if path.exists() else 0


def writing_checkpoint(folder, pid):
    """True while process `pid` has a checkpoint temp file open (before its rename)."""
    return any(p.name.endswith(f".{pid}.tmp") for p in (folder / "checkpoints").iterdir())


def newest_is_readable(folder):
    newest = checkpoint.list_checkpoints(folder / "checkpoints")[-1]
    return checkpoint.read_header(newest).step


def test_sigkill_at_several_moments_then_resume(tmp_path):
    folder, env = tmp_path / "run", cache_env(tmp_path)
    extra = ["--set", "checkpoint.every_steps=1", "--set", "checkpoint.keep=2"]
    args = tiny_run_args(folder, steps=STEPS, extra=extra)
    resume = ["run", "--resume", str(folder), "--steps", str(STEPS)]
    log = tmp_path / "output.log"
    moments = [
        ("after a few steps", lambda pid: rows_done(folder) >= 5),
        ("during a checkpoint write", lambda pid: writing_checkpoint(folder, pid)),
        ("later", lambda pid: rows_done(folder) >= 60),
    ]
    for i, (what, condition) in enumerate(moments):
        proc = start(args if i == 0 else resume, env, log)
        wait_for(functools.partial(condition, proc.pid), proc, what, log)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert newest_is_readable(folder) >= 0, what
    proc = start(resume, env, log)
    assert proc.wait(timeout=TIMEOUT) == 0, tail(log)
    assert [int(r["step"]) for r in stats_rows(folder)] == list(range(STEPS))
    assert newest_is_readable(folder) == STEPS


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path):
    folder, log = tmp_path / "run", tmp_path / "output.log"
    proc = start(tiny_run_args(folder, steps=100_000), cache_env(tmp_path), log)
    wait_for(lambda: rows_done(folder) >= 3, proc, "three steps", log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=TIMEOUT) == 0, tail(log)
    assert "stopped by signal" in (folder / "run.log").read_text()
    assert newest_is_readable(folder) == rows_done(folder)

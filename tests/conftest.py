"""Strict JAX settings for every test (as equinox does): float64 available, strict dtype
promotion, rank promotion raises, and 2 fake CPU devices for the multi-device tests. A persistent
compilation cache, fresh for each session, lets the many small runs share their compiled steps.
Tests that call the `vmcjet` command in this process keep glibc's allocator defaults
(VMCJET_SYSTEM_MALLOC), so the order of the tests does not change the process's malloc."""

import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("VMCJET_SYSTEM_MALLOC", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
_CACHE_DIR = tempfile.mkdtemp(prefix="vmcjet-jax-cache-")
jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_sessionfinish(session, exitstatus):
    """The session's compilation cache is removed with it (tens of MiB per session)."""
    shutil.rmtree(_CACHE_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _restore_x64():
    """A float32 run (`open_session`) switches float64 off for its process, as the CLI does;
    switch it back on for the next test."""
    yield
    jax.config.update("jax_enable_x64", True)


@pytest.fixture
def fresh_python():
    """`run(code, drop, extra_env) -> stdout`: `code` in a new Python process (as the `vmcjet`
    command starts), with the variables named in `drop` removed from this environment and
    `extra_env` added; a non-zero exit fails the test."""

    def run(code: str, drop, extra_env: dict) -> str:
        env = {k: v for k, v in os.environ.items() if k not in drop}
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    return run

"""The command's XLA CPU option (vmcjet/xla_cpu.py): set only from jaxlib 0.10 on, never over the
user's choice, and early enough to reach the compiler."""

import subprocess
import sys
from importlib.metadata import version

import pytest

from vmcjet import xla_cpu

JAXLIB = tuple(int(p) for p in version("jaxlib").split(".")[:2])

# A log-determinant of a batch of small matrices: its sum over the LU's diagonal is a reduction
# that jaxlib 0.10 hands to YNNPACK by default.
COMPILED_TEXT = """
import sys
import jax, jax.numpy as jnp
if sys.argv[1] == "command":
    from vmcjet import cli
    cli.apply_process_settings()
def log_det(a):
    lu = jax.lax.linalg.lu(a)[0]
    return jnp.sum(jnp.log(jnp.abs(jnp.diagonal(lu, axis1=-2, axis2=-1))), axis=-1)
a = jax.ShapeDtypeStruct((128, 8, 7, 7), jnp.float32)  # N2's walkers x determinants
print(jax.jit(log_det).lower(a).compile().as_text())
"""


@pytest.mark.parametrize(
    "jaxlib, before, after",
    [
        ((0, 9), "", ""),
        ((0, 10), "", xla_cpu.KEEP_REDUCTIONS_IN_XLA),
        ((0, 10), "--xla_force_host_platform_device_count=2", None),
        ((0, 10), f"{xla_cpu.YNN_FUSION_FLAG}=+dot", f"{xla_cpu.YNN_FUSION_FLAG}=+dot"),
    ],
)
def test_flag_is_added_only_from_jaxlib_0_10_and_not_over_the_users(
    monkeypatch, jaxlib, before, after
):
    monkeypatch.setattr(xla_cpu, "_jaxlib_version", lambda: jaxlib)
    monkeypatch.setenv("XLA_FLAGS", before)
    added = xla_cpu.keep_reductions_in_xla()
    expected = f"{before} {xla_cpu.KEEP_REDUCTIONS_IN_XLA}" if after is None else after
    assert xla_cpu.os.environ["XLA_FLAGS"] == expected
    assert added == (expected != before)


@pytest.mark.skipif(JAXLIB < (0, 10), reason="jaxlib before 0.10 has no YNN fusions")
def test_the_command_keeps_reductions_out_of_ynnpack():
    """Compiled in a fresh process: with the command's settings no reduction goes to YNNPACK;
    without them (the control, so the test can fail) it does."""

    def compiled(mode: str) -> str:
        env = {k: v for k, v in xla_cpu.os.environ.items() if k != "XLA_FLAGS"}
        result = subprocess.run(
            [sys.executable, "-c", COMPILED_TEXT, mode],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    assert "__ynn_fusion" in compiled("plain")
    assert "__ynn_fusion" not in compiled("command")

"""The JAX pin (docs/reliability.md, "JAX version"): the installed jax is in the tested range, and
the batched LU pattern that hung with jaxlib 0.10 on these machines finishes in time."""

import math
import subprocess
import sys
from importlib.metadata import requires, version

from packaging.requirements import Requirement

HUNG_PATTERN = """
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
def log_det(x):
    a = jnp.tanh(x.reshape(6, 6) + jnp.eye(6))
    return jnp.linalg.slogdet(a)[1]
xs = jax.random.normal(jax.random.key(0), (512, 36))
h = jax.jit(jax.vmap(jax.hessian(log_det)))(xs)
print(float(jnp.sum(jnp.trace(h, axis1=1, axis2=2))))
"""


def test_installed_jax_is_in_the_pinned_range():
    pins = [Requirement(r) for r in requires("vmcjet")]
    pins = [p for p in pins if p.name in ("jax", "jaxlib") and p.marker is None]
    assert {p.name for p in pins} == {"jax", "jaxlib"}
    for pin in pins:
        assert pin.specifier.contains(version(pin.name)), (pin, version(pin.name))


def test_batched_hessian_through_slogdet_does_not_hang():
    result = subprocess.run(
        [sys.executable, "-c", HUNG_PATTERN], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert math.isfinite(float(result.stdout.strip().splitlines()[-1]))

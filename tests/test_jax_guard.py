"""The JAX range (docs/reliability.md, "JAX version"): the installed jax is in the tested range, and
the pattern that deadlocked jaxlib 0.10's batched LAPACK LU on these machines (two independent
batched log-determinants in one executable, and vmapped hessians through them) finishes in time
with vmcjet's own log-determinant."""

import math
import subprocess
import sys
from importlib.metadata import requires, version

from packaging.requirements import Requirement

HUNG_PATTERN = """
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from vmcjet.linalg import slogdet
def log_det(x):
    a = jnp.tanh(x.reshape(2, 6, 6) + jnp.eye(6))
    return slogdet(a[0])[1] + slogdet(a[1] ** 2 + jnp.eye(6))[1]
xs = jax.random.normal(jax.random.key(0), (512, 72))
h = jax.jit(jax.vmap(jax.hessian(log_det)))(xs)
pair = jax.jit(lambda m: slogdet(m[:, 0])[1] + slogdet(m[:, 1])[1])
for _ in range(200):
    total = pair(xs.reshape(512, 2, 6, 6)).block_until_ready()
print(float(jnp.sum(jnp.trace(h, axis1=1, axis2=2)) + jnp.sum(total)))
"""


def test_installed_jax_is_in_the_supported_range():
    pins = [Requirement(r) for r in requires("vmcjet")]
    pins = [p for p in pins if p.name in ("jax", "jaxlib") and p.marker is None]
    assert {p.name for p in pins} == {"jax", "jaxlib"}
    for pin in pins:
        assert pin.specifier.contains(version(pin.name)), (pin, version(pin.name))


def test_batched_log_determinants_do_not_hang():
    result = subprocess.run(
        [sys.executable, "-c", HUNG_PATTERN], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert math.isfinite(float(result.stdout.strip().splitlines()[-1]))

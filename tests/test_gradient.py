"""Local-energy clipping and the energy gradient estimator against an analytic gradient."""

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet.optim import clip_local_energies, energy_gradient, energy_gradient_residuals


def test_clipping_bounds_outliers_only():
    energies = np.array([0.0, 1.0, 2.0, 3.0, 100.0, -50.0])
    median = np.median(energies)
    deviation = np.mean(np.abs(energies - median))
    clipped = clip_local_energies(jnp.asarray(energies), 1.0)
    expected = np.clip(energies, median - deviation, median + deviation)
    np.testing.assert_allclose(np.asarray(clipped), expected)
    assert float(clipped[4]) < 100.0 and float(clipped[5]) > -50.0
    np.testing.assert_array_equal(np.asarray(clipped[:4]), energies[:4])


def test_wide_clipping_is_the_identity():
    energies = jnp.asarray(np.random.default_rng(0).normal(size=64))
    np.testing.assert_array_equal(np.asarray(clip_local_energies(energies, 100.0)), energies)


def test_residuals_are_centred():
    residuals = energy_gradient_residuals(jnp.asarray([1.0, 2.0, 6.0]))
    np.testing.assert_allclose(np.asarray(residuals), [-2.0, -1.0, 3.0])


def test_energy_gradient_matches_analytic_oscillator_gradient():
    # 3D oscillator, psi = exp(-a r^2): E(a) = 3a/2 + 3/(8a), dE/da = 3/2 - 3/(8a^2).
    a, batch = 0.3, 200_000
    x = jax.random.normal(jax.random.key(0), (batch, 3)) / np.sqrt(4 * a)
    r2 = jnp.sum(x**2, axis=1)
    local_energy = 3 * a + r2 * (0.5 - 2 * a**2)
    grads = {"a": -r2, "unused": jnp.zeros((batch, 2))}
    gradient = energy_gradient(grads, energy_gradient_residuals(local_energy))
    assert gradient["unused"].shape == (2,)
    # Standard error of 2 mean(r_b O_b): 2 std(r O) / sqrt(B), about 0.01 here.
    terms = 2 * np.asarray(energy_gradient_residuals(local_energy) * -r2)
    tolerance = 4 * terms.std() / np.sqrt(batch)
    assert abs(float(gradient["a"]) - (1.5 - 3 / (8 * a**2))) < tolerance

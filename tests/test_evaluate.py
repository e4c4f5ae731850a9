"""`vmcjet eval`'s default length: 10^6 walker samples, at least 1000 steps."""

import jax.numpy as jnp
import numpy as np

from vmcjet import batch_observables
from vmcjet.evaluate import EVAL_SAMPLES, MIN_EVAL_STEPS, default_eval_steps


def test_default_eval_steps_hold_the_sample_count():
    assert default_eval_steps(256) == 3907  # ceil(10^6 / 256)
    for batch in (1, 7, 128, 256, 999):
        steps = default_eval_steps(batch)
        assert steps * batch >= EVAL_SAMPLES and (steps - 1) * batch < EVAL_SAMPLES
    assert default_eval_steps(4096) == MIN_EVAL_STEPS


def test_observable_means_leave_out_walkers_whose_value_is_not_finite():
    """A walker whose energy is finite but whose observable is not (a psi ratio that overflows)
    is left out of that observable's mean; no usable walker gives NaN (the step is dropped)."""
    values = jnp.array([[1.0, 2.0], [jnp.nan, 5.0], [3.0, 4.0], [7.0, 7.0]])
    finite = jnp.array([True, True, True, False])
    np.testing.assert_allclose(batch_observables.finite_mean(values, finite), [2.0, 3.0])
    lone = batch_observables.finite_mean(jnp.array([jnp.inf, 1.0]), jnp.array([True, False]))
    assert np.isnan(float(lone))

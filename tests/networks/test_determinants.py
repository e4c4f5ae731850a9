"""The signed log-sum of determinants: stable for huge, tiny, cancelling and zero determinants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet.networks.determinants import dense_matrices, log_determinants, signed_log_sum


@pytest.mark.parametrize("scale", [-2000.0, 0.0, 2000.0])
def test_log_sum_is_exact_far_outside_the_float_range(scale):
    signs = jnp.array([1.0, -1.0, 1.0])
    logs = jnp.array([0.5, -0.25, 0.0]) + scale
    expected = np.exp(0.5) - np.exp(-0.25) + 1.0  # the sum at scale 0, positive
    sign, log = signed_log_sum(signs, logs)
    assert sign == 1.0
    np.testing.assert_allclose(log, np.log(expected) + scale, rtol=1e-14, atol=1e-12)


def test_negative_sum_has_negative_sign():
    sign, log = signed_log_sum(jnp.array([-1.0, 1.0]), jnp.array([1.0, 0.0]))
    assert sign == -1.0
    np.testing.assert_allclose(log, np.log(np.e - 1.0), rtol=1e-14)


@pytest.mark.parametrize(
    ("signs", "logs"),
    [([0.0, 0.0], [-np.inf, -np.inf]), ([1.0, -1.0], [3.0, 3.0]), ([0.0, 1.0], [-np.inf, -np.inf])],
)
def test_exact_zero_gives_minus_infinity_with_a_sign(signs, logs):
    sign, log = signed_log_sum(jnp.array(signs), jnp.array(logs))
    assert log == -jnp.inf
    assert sign == 1.0


def test_one_vanishing_determinant_does_not_poison_the_rest():
    sign, log = signed_log_sum(jnp.array([0.0, -1.0]), jnp.array([-np.inf, 2.0]))
    assert (sign, log) == (-1.0, 2.0)
    grad = jax.grad(lambda v: signed_log_sum(jnp.array([0.0, -1.0]), v)[1])(
        jnp.array([-np.inf, 2.0])
    )
    np.testing.assert_array_equal(grad, [0.0, 1.0])


def test_gradient_of_the_log_sum_matches_the_direct_formula():
    signs, logs = jnp.array([1.0, -1.0, 1.0]), jnp.array([0.3, -0.4, 0.1])
    grad = jax.grad(lambda v: signed_log_sum(signs, v)[1])(logs)
    terms = np.asarray(signs) * np.exp(np.asarray(logs))
    np.testing.assert_allclose(grad, terms / terms.sum(), rtol=1e-13)


def test_singular_blocks_give_minus_infinity():
    rng = np.random.default_rng(0)
    alpha = rng.normal(size=(2, 3, 3))
    alpha[0, 1] = alpha[0, 0]  # determinant 0 of the first pair has two equal rows
    alpha[1, 2] = 0.0  # determinant 1 has a zero row
    beta = rng.normal(size=(2, 2, 2))
    signs, logs = log_determinants([jnp.asarray(alpha), jnp.asarray(beta)], full=False)
    assert np.all(np.asarray(logs) == -np.inf)
    assert signed_log_sum(signs, logs)[1] == -jnp.inf


@pytest.mark.parametrize("full", [False, True])
def test_log_determinants_match_numpy(full):
    rng = np.random.default_rng(1)
    width = 5 if full else None
    blocks = [rng.normal(size=(3, 3, width or 3)), rng.normal(size=(3, 2, width or 2))]
    signs, logs = log_determinants([jnp.asarray(b) for b in blocks], full=full)
    dets = np.linalg.det(np.asarray(dense_matrices([jnp.asarray(b) for b in blocks], full)))
    if not full:
        dets_blocks = np.linalg.det(blocks[0]) * np.linalg.det(blocks[1])
        np.testing.assert_allclose(dets, dets_blocks, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(signs) * np.exp(np.asarray(logs)), dets, rtol=1e-12)

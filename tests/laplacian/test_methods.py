"""Every registered Laplacian method against f, jax.grad and the trace of jax.hessian (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet.errors import InputError
from vmcjet.laplacian.methods import LAPLACIAN_METHODS, laplacian_method

_RNG = np.random.default_rng(0)
_W1, _W2 = _RNG.normal(size=(5, 7)) / 2, _RNG.normal(size=(7,))


def _mlp(x):
    """Small tanh MLP of x (5,)."""
    return jnp.tanh(jnp.tanh(x @ _W1) @ _W1.T) @ _W1 @ _W2


def _elementwise_products(x):
    """Cross terms between coordinates of x (2, 3)."""
    return jnp.sum(jnp.sin(x) * jnp.exp(x[::-1])) + jnp.sum(x[0] * x[1]) ** 2


def _slater_log_psi(electrons):
    """log|det| of an orbital matrix phi_j(r_i) for electrons (3, 3) with exponential envelopes."""
    centres = jnp.array([[0.0, 0.0, 0.0], [0.5, -0.3, 0.2], [-0.4, 0.6, -0.1]])
    exponents = jnp.array([1.0, 0.7, 0.5])
    dist = jnp.linalg.norm(electrons[:, None, :] - centres[None, :, :], axis=-1)
    polynomial = 1.0 + electrons @ centres.T
    _, logdet = jnp.linalg.slogdet(polynomial * jnp.exp(-exponents[None, :] * dist))
    return logdet


CASES = {
    "mlp": (_mlp, jnp.linspace(-0.8, 0.9, 5)),
    "products": (_elementwise_products, jnp.linspace(-0.5, 0.7, 6).reshape(2, 3)),
    "slater": (_slater_log_psi, jnp.array([[0.3, 0.1, -0.2], [0.9, -0.4, 0.5], [-0.6, 0.8, 0.2]])),
}


# Failures of other projects' code, expected (strict: the test fails if they start to pass).
KNOWN_FAILURES = {
    (
        "taylor",
        "slater",
    ): "jax.experimental.jet has no rule for lu (slogdet): a known jet limitation",
    ("folx_sparse", "products"): "folx's sparse tracing fails on reversed electron order under jit",
}


def _method_cases():
    """(method, case) pairs; electron-wise sparse methods only on cases with electron positions
    (n, 3) (the mlp's x is (5,))."""
    for name in sorted(LAPLACIAN_METHODS):
        for case in sorted(CASES):
            if name.endswith("_sparse") and case == "mlp":
                continue
            reason = KNOWN_FAILURES.get((name, case))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(name, case, marks=marks, id=f"{name}-{case}")


@pytest.mark.parametrize("name, case", list(_method_cases()))
def test_method_matches_hessian_trace(name, case):
    f, x = CASES[case]
    value, grad, lap = jax.jit(laplacian_method(name)(f))(x)
    expected_value, expected_grad = jax.jit(jax.value_and_grad(f))(x)
    expected_lap = jnp.trace(jax.jit(jax.hessian(f))(x).reshape(x.size, x.size))
    assert grad.shape == x.shape
    np.testing.assert_allclose(value, expected_value, rtol=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lap, expected_lap, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", ["collapsed", "vmap_jvp", "taylor"])
def test_direction_chunks_equal_unchunked(name):
    f, x = CASES["products"]
    whole = jax.jit(laplacian_method(name)(f))(x)
    chunked = jax.jit(laplacian_method(name)(f, chunk_size=4))(x)
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_unknown_method_is_input_error():
    with pytest.raises(InputError, match="choose one of: collapsed"):
        laplacian_method("backprop")


def test_missing_folx_names_the_install(monkeypatch):
    monkeypatch.delitem(LAPLACIAN_METHODS, "folx", raising=False)
    with pytest.raises(InputError, match="pip install folx"):
        laplacian_method("folx")

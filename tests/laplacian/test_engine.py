"""The collapsed forward Laplacian against jax.jacfwd and the trace of jax.hessian (float64)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from vmcjet.errors import InputError
from vmcjet.laplacian import forward_laplacian, rules
from vmcjet.laplacian.engine import linearize_jaxpr

X = jnp.linspace(0.15, 0.95, 6).reshape(2, 3)
W = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)


def reference(f, x):
    """(value, Jacobian value.shape + x.shape, Laplacian) from plain JAX autodiff."""
    value = f(x)
    hessian = jax.hessian(f)(x).reshape(value.shape + (x.size, x.size))
    return value, jax.jacfwd(f)(x), jnp.trace(hessian, axis1=-2, axis2=-1)


def assert_matches(f, x, **kwargs):
    value, first, second = jax.jit(forward_laplacian(f, **kwargs))(x)
    ref_value, ref_first, ref_second = jax.jit(reference, static_argnums=0)(f, x)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(first, ref_first, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(second, ref_second, rtol=1e-10, atol=1e-10)


ELEMENTWISE = {
    "exp_log": lambda x: jnp.sum(jnp.exp(x) * jnp.log(x) + jnp.log1p(x) - jnp.expm1(x)),
    "tanh_logistic": lambda x: jnp.sum(jnp.tanh(x) ** 3 + jax.nn.sigmoid(x * x)),
    "trig": lambda x: jnp.sum(jnp.sin(x) * jnp.cos(2 * x) + jnp.tan(x) + jnp.sinh(x) / jnp.cosh(x)),
    "roots": lambda x: jnp.sum(jnp.sqrt(x) + lax.rsqrt(x) + jnp.cbrt(x) + x**1.7 + 2.0**x),
    "pow_both": lambda x: jnp.sum(x ** x[::-1]),
    "integer_pow": lambda x: jnp.sum(x**3 + x**-2 + x**1 + jnp.square(x)),
    "erf_atan": lambda x: jnp.sum(jax.scipy.special.erf(x) + jnp.arctan(x) + jnp.arcsinh(x)),
    "abs_sign": lambda x: jnp.sum(jnp.abs(x - 0.5) * x + jnp.sign(x - 0.5) * x**2),
    "max_min": lambda x: jnp.sum(jnp.maximum(x, x[::-1] * 1.1) * jnp.minimum(x, 0.5) ** 2),
    "clip": lambda x: jnp.sum(jnp.clip(x, 0.3, 0.8) ** 2),
    "div": lambda x: jnp.sum(x / (1 + x[::-1] ** 2) + 2.0 / x + x / 3.0),
    "softplus_relu": lambda x: jnp.sum(jax.nn.softplus(3 * x - 1) + jax.nn.relu(x - 0.4) ** 2),
    "logsumexp": lambda x: jax.nn.logsumexp(x * x) + jax.nn.log_softmax(x, axis=-1)[0, 1],
}

STRUCTURAL = {
    "dot_const": lambda x: jnp.sum(jnp.tanh(x @ W) ** 2),
    "dot_both": lambda x: (
        jnp.sum(jnp.sin(x @ x.T)) + jnp.sum(jnp.einsum("ij,kj,kl->il", x, x, x) ** 2)
    ),
    "reductions": lambda x: jnp.max(x**2) + jnp.min(jnp.sin(x), axis=0).sum() * jnp.mean(x),
    "cumsum_reshape": lambda x: jnp.sum(jnp.cumsum(x.reshape(-1)) ** 2 * x.T.reshape(-1)),
    "slicing": lambda x: jnp.sum(x[:, 1:] * x[:, :-1] + x[::-1, ::2] ** 3),
    "concat_pad": lambda x: jnp.sum(
        jnp.concatenate([x, 2 * W[:2]], 1) ** 2 * jnp.pad(x, ((0, 0), (2, 2)))
    ),
    "concat_dot_mixed_pieces": lambda x: jnp.sum(
        jnp.tanh(
            jnp.concatenate(
                [jnp.sin(x), W[:2, :2], jnp.broadcast_to(jnp.mean(x, 0), (2, 3)), x**2], 1
            )
            @ jnp.linspace(-1.0, 1.0, 44).reshape(11, 4)
        )
        ** 2
    ),
    "gather_scatter": lambda x: jnp.sum(
        jnp.exp(x.ravel()[jnp.array([0, 4, 4, 2])])
        * jnp.zeros(4).at[jnp.array([1, 1, 3, 0])].add(x[0, :1].repeat(4) ** 2)
    ),
    "dynamic_slice": lambda x: jnp.sum(
        lax.dynamic_update_slice(x**2, jnp.sin(x[:1, :2]), (1, 1))
        * lax.dynamic_slice(x, (0, 1), (2, 2)).sum()
    ),
    "where": lambda x: jnp.sum(jnp.where(W[:2, :3] > 0, x**2, jnp.exp(x))),
    "broadcast_norm": lambda x: jnp.sum(
        jnp.exp(-jnp.linalg.norm(x[:, None, :] - x[None, :, :] + 0.1, axis=-1))
    ),
    "constant_output_part": lambda x: jnp.sum(x) * 0.0 + jnp.sum(W) + x[0, 0] ** 2,
}

LINALG = {
    "slogdet": lambda x: jnp.linalg.slogdet(jnp.outer(x, x) + jnp.diag(x) + jnp.eye(6))[1],
    "slogdet_batched": lambda x: jnp.sum(
        jnp.linalg.slogdet(jnp.sin(x[:, :, None] * x[:, None, :] * 3) + jnp.eye(3)[None])[1]
    ),
    "slogdet_negative": lambda x: jnp.linalg.slogdet(jnp.outer(x, x[::-1]) - 2 * jnp.eye(6))[1],
    "det_small": lambda x: jnp.linalg.det(x[:, :2] @ x[:, 1:].T + jnp.eye(2)),
    "det_large": lambda x: jnp.linalg.det(jnp.outer(x, x) + jnp.diag(x) + jnp.eye(6)),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE | STRUCTURAL | LINALG))
def test_zoo_matches_autodiff(name):
    f = (ELEMENTWISE | STRUCTURAL | LINALG)[name]
    flat = name in ("slogdet", "slogdet_negative", "det_large")
    assert_matches(f, X.ravel() if flat else X)


def test_vector_output():
    assert_matches(lambda x: jnp.tanh(x @ W).ravel() * x[0, 0], X)


def test_independent_output():
    value, first, second = forward_laplacian(lambda x: jnp.sum(W))(X)
    assert first.shape == X.shape and float(jnp.abs(first).max()) == 0.0 and float(second) == 0.0


@pytest.mark.parametrize("chunk_size", [1, 4, 6, 100])
def test_chunked_equals_unchunked(chunk_size):
    f = lambda x: jnp.linalg.slogdet(jnp.tanh(x @ W)[:, :2] + jnp.eye(2))[1] + jnp.sum(x**3)
    full = jax.jit(forward_laplacian(f))(X)
    chunked = jax.jit(forward_laplacian(f, chunk_size=chunk_size))(X)
    for a, b in zip(full, chunked, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_directions_give_weighted_operator():
    f = lambda x: jnp.sum(jnp.sin(x @ W) ** 2) * x[1, 2]
    v = jax.random.normal(jax.random.key(0), (5,) + X.shape)
    _, first, second = jax.jit(forward_laplacian(f, directions=v))(X)
    hessian = jax.jit(jax.hessian(f))(X).reshape(X.size, X.size)
    vv = v.reshape(5, -1)
    np.testing.assert_allclose(first, vv @ jax.grad(f)(X).ravel(), rtol=1e-10)
    np.testing.assert_allclose(second, jnp.trace(vv @ hessian @ vv.T), rtol=1e-10)
    _, _, chunked = jax.jit(forward_laplacian(f, directions=v, chunk_size=2))(X)
    np.testing.assert_allclose(chunked, second, rtol=1e-12)


def test_gradient_through_engine_wrt_parameters():
    def laplacian(params, engine):
        f = lambda x: jnp.sum(jnp.tanh(x @ params["w"]) * params["b"][None]) + jnp.linalg.slogdet(
            x @ params["w"][:, :2] + jnp.eye(2))[1]  # fmt: skip
        if engine:
            return forward_laplacian(f)(X)[2]
        return jnp.trace(jax.hessian(f)(X).reshape(X.size, X.size))

    params = {"w": W, "b": jnp.linspace(0.5, 1.5, 4)}
    ours = jax.jit(jax.grad(laplacian), static_argnums=1)(params, True)
    ref = jax.jit(jax.grad(laplacian), static_argnums=1)(params, False)
    for key in params:
        np.testing.assert_allclose(ours[key], ref[key], rtol=1e-10, atol=1e-12)


def test_jit_and_vmap():
    f = lambda x: jnp.sum(jnp.exp(-jnp.sum(x**2, axis=-1))) * jnp.linalg.det(x[:, :2])
    batch = jnp.stack([X, X[::-1] * 1.3, X**2])
    value, first, second = jax.jit(jax.vmap(forward_laplacian(f)))(batch)
    ref = jax.jit(jax.vmap(lambda x: reference(f, x)))(batch)
    for ours, theirs in zip((value, first, second), ref, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_float32_is_preserved():
    f = lambda x: jnp.sum(jnp.tanh(x @ W.astype(x.dtype)) ** 2) + jnp.linalg.slogdet(x[:, :2])[1]
    x32 = X.astype(jnp.float32)
    value, first, second = jax.jit(forward_laplacian(f, chunk_size=4))(x32)
    assert value.dtype == first.dtype == second.dtype == jnp.float32
    np.testing.assert_allclose(second, reference(f, X.astype(jnp.float64))[2], rtol=1e-4)


def test_fallback_warns_once_and_is_correct(monkeypatch):
    monkeypatch.setattr(rules, "_WARNED", set())
    f = lambda x: jnp.sum(lax.lgamma(x + 1.0) * x + jnp.arctan2(x, 1.5 - x)) + jnp.prod(x)
    with pytest.warns(UserWarning) as record:
        assert_matches(f, X)
    named = " ".join(str(w.message) for w in record)
    assert all(f"'{p}'" in named for p in ("lgamma", "atan2", "reduce_prod"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        forward_laplacian(lambda x: jnp.sum(lax.lgamma(x)))(X)


def test_bad_input_raises():
    with pytest.raises(InputError, match="chunk_size"):
        forward_laplacian(jnp.sum, chunk_size=0)
    with pytest.raises(InputError, match="directions"):
        forward_laplacian(jnp.sum, directions=jnp.ones((2, 5)))(X)
    with pytest.raises(InputError, match="floating"):
        forward_laplacian(jnp.sum)(jnp.ones(3, dtype=jnp.int32))


def test_mlp_keeps_laplacian_row_apart_and_matches_the_dense_stack():
    """A tanh MLP of x (x @ W and W @ x products, bias sums, scalings, negation, difference)
    keeps the seed's `Rows` (the Laplacian row never joins the first-order rows), with the same
    numbers as a dense seed."""
    w2 = jnp.linspace(-0.7, 0.9, 20).reshape(4, 5)

    def mlp(x):
        hidden = jnp.tanh(x @ W + 0.1)
        return -jnp.tanh(w2.T @ hidden) / 2.0 - 0.5 * hidden @ w2

    x = X[0]
    closed = jax.make_jaxpr(mlp)(x)
    _, _, push = linearize_jaxpr(closed.jaxpr, closed.consts, [x], [True], dense_outputs=False)
    eye, zero = jnp.eye(3), jnp.zeros(3)
    (kept,) = push([rules.Rows(eye, zero)])
    (dense,) = push([jnp.concatenate([eye, zero[None]])])
    assert isinstance(kept, rules.Rows)
    np.testing.assert_allclose(kept.materialize(), dense, rtol=1e-12, atol=1e-12)
    assert_matches(mlp, x)

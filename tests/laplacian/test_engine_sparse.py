"""Electron-wise sparse stacks give the same results as dense ones (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_engine_ferminet import ferminet_like, init_params

from vmcjet.errors import InputError
from vmcjet.laplacian import forward_laplacian, rules_sparse

WALKERS = jax.random.normal(jax.random.key(3), (2, 5, 3))


def _pair_distances(x):
    return jnp.sqrt(jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1) + 1.0)


CASES = {
    "one_electron": lambda x: jnp.sum(jnp.exp(-jnp.linalg.norm(x, axis=-1)) * x[:, 0]),
    "pair_tanh": lambda x: jnp.sum(jnp.tanh(_pair_distances(x)) @ jnp.linspace(0.1, 1.0, 5)),
    # the diagonal i == j of a pair tensor: both electron blocks belong to the same electron
    "pair_diagonal": lambda x: jnp.sum(jnp.sin(x[:, None, :] * x[None, :, :])),
    "pair_product": lambda x: jnp.sum(
        _pair_distances(x) * jnp.cos(x[:, None, :1] - x[None, :, 1:2])[..., 0]
    ),
    "reshape_concat": lambda x: jnp.sum(
        jnp.tanh(jnp.concatenate([x, x**2], axis=-1).reshape(5, 2, 3) @ jnp.ones((3, 2))) ** 2
    ),
    # spin-resolved means of a pair stream: slices and sums along either electron axis
    "pair_spin_means": lambda x: jnp.sum(
        jnp.tanh(jnp.mean(jnp.tanh(_pair_distances(x))[:, 2:, None] * x[None, 2:], axis=1))
        + jnp.sin(jnp.sum(jnp.cos(x[:, None, :] - x[None, :, :])[:2], axis=0))
        + jnp.sum(_pair_distances(x)[1:4], axis=0)[:, None] * x
    ),
    "ferminet_like": lambda x: ferminet_like(init_params(jax.random.key(1), 3, 2), x, 3),
}


@pytest.mark.parametrize("chunk_size", [None, 6, 9])
@pytest.mark.parametrize("name", sorted(CASES))
def test_sparse_equals_dense(name, chunk_size):
    f = CASES[name]
    dense = jax.jit(jax.vmap(forward_laplacian(f)))(WALKERS)
    sparse = forward_laplacian(f, electron_sparsity=True, chunk_size=chunk_size)
    for a, b in zip(dense, jax.jit(jax.vmap(sparse))(WALKERS), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)


def test_chunked_sparse_parameter_gradient():
    """Gradient of the chunked sparse Laplacian (sparse part hoisted out of the loop) with respect
    to a parameter equals that of the dense one."""
    x = WALKERS[0]

    def laplacian(scale, **kw):
        f = lambda y: CASES["pair_tanh"](scale * y) + CASES["one_electron"](scale * y)
        return forward_laplacian(f, **kw)(x)[2]

    dense = jax.grad(laplacian)(0.7)
    sparse = jax.grad(lambda s: laplacian(s, electron_sparsity=True, chunk_size=6))(0.7)
    np.testing.assert_allclose(sparse, dense, rtol=1e-10)


def test_pair_stream_stays_sparse(monkeypatch):
    """The pair features reach the dot with 6 first-order rows (no densification before)."""
    densified = []
    original = rules_sparse.Sparse.materialize
    monkeypatch.setattr(
        rules_sparse.Sparse, "materialize", lambda s: densified.append(s.axes) or original(s)
    )
    forward_laplacian(CASES["pair_tanh"], electron_sparsity=True)(WALKERS[0])
    assert densified == [(0, 1)]  # only the final matrix-vector product mixes electrons


def test_spin_means_of_pairs_stay_sparse(monkeypatch):
    """Slicing a pair stack to a spin channel and summing over it never densifies the pairs."""
    densified = []
    original = rules_sparse.Sparse.materialize
    monkeypatch.setattr(
        rules_sparse.Sparse, "materialize", lambda s: densified.append(s.axes) or original(s)
    )
    f = lambda x: jnp.sum(jnp.tanh(jnp.mean(jnp.tanh(_pair_distances(x))[:, 2:], axis=1)))
    forward_laplacian(f, electron_sparsity=True, chunk_size=6)(WALKERS[0])
    assert (0, 1) not in densified


def test_sparse_needs_electron_positions():
    with pytest.raises(InputError, match="shape"):
        forward_laplacian(jnp.sum, electron_sparsity=True)(jnp.ones(6))
    with pytest.raises(InputError, match="directions"):
        forward_laplacian(jnp.sum, electron_sparsity=True, directions=jnp.ones((1, 5, 3)))


def test_collapsed_method_is_sparse_for_many_electrons(monkeypatch):
    """The registry's "collapsed" switches to electron sparsity from SPARSE_MIN_ELECTRONS on, with
    the trace of the Hessian as Laplacian."""
    from vmcjet.laplacian.methods import SPARSE_MIN_ELECTRONS, laplacian_method

    seen = []
    original = rules_sparse.seed
    monkeypatch.setattr(rules_sparse, "seed", lambda *a: seen.append(1) or original(*a))
    f = lambda x: jnp.sum(jnp.tanh(_pair_distances(x))) + jnp.sum(jnp.exp(-(x**2)))
    x = jax.random.normal(jax.random.key(4), (SPARSE_MIN_ELECTRONS, 3))
    value, grad, lap = laplacian_method("collapsed")(f)(x)
    hessian = jax.hessian(f)(x).reshape(x.size, x.size)
    np.testing.assert_allclose(lap, jnp.trace(hessian), rtol=1e-10)
    np.testing.assert_allclose(grad, jax.grad(f)(x), rtol=1e-10)
    assert seen
    seen.clear()
    laplacian_method("collapsed")(f)(x[:-1])
    assert not seen

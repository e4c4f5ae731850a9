"""vmcjet.dimwise: dimension-wise derivatives of hollow networks against JAX's dense nested
derivatives (float64), including parameter gradients through the conditioner."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet.dimwise import dimension_wise, hollow_net
from vmcjet.errors import InputError

DIM = 6


def setup(seed=0):
    net = hollow_net(DIM, hidden=5, layers=2)
    params = net.init(jax.random.key(seed), jnp.float64)
    x = jax.random.normal(jax.random.key(seed + 1), (DIM,), jnp.float64)
    return net, params, x


def dense_diagonal(net, params, x, order):
    """diag of the order-th derivative tensor of the whole f (conditioner included)."""
    fn = lambda y: net.apply(params, y)  # noqa: E731
    for _ in range(order):
        fn = jax.jacfwd(fn)
    tensor = fn(x)  # (d,) + (d,) * order
    index = jnp.arange(DIM)
    return tensor[(index,) * (order + 1)]


def test_conditioner_is_hollow():
    net, params, x = setup()
    jacobian = jax.jacfwd(lambda y: net.conditioner(params, y))(x)  # (d, k, d)
    assert float(jnp.max(jnp.abs(jnp.einsum("iki->ik", jacobian)))) == 0.0
    assert float(jnp.max(jnp.abs(jacobian))) > 1e-3  # but h_i does depend on the other entries


@pytest.mark.parametrize("order", [1, 2, 3])
def test_dimension_wise_equals_the_diagonal_of_the_dense_derivative(order):
    net, params, x = setup()
    value, derivatives = dimension_wise(net, order=order)(params, x)
    np.testing.assert_allclose(value, net.apply(params, x), rtol=1e-13)
    assert len(derivatives) == order
    for k, derivative in enumerate(derivatives, start=1):
        np.testing.assert_allclose(
            derivative, dense_diagonal(net, params, x, k), rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize("order", [1, 2])
def test_parameter_gradient_includes_the_conditioner_path(order):
    net, params, x = setup(seed=3)
    weights = jnp.linspace(0.5, 1.5, DIM)

    def cheap(p):
        return jnp.sum(weights * dimension_wise(net, order=order)(p, x)[1][-1])

    def dense(p):
        return jnp.sum(weights * dense_diagonal(net, p, x, order))

    def frozen(p):  # what stop_gradient(h) would give: the conditioner's path dropped
        h = jax.lax.stop_gradient(net.conditioner(p, x))
        fn = lambda y: net.transformer(p, y, h)  # noqa: E731
        for _ in range(order):
            fn = jax.grad(lambda y, g=fn: jnp.sum(g(y)))
        return jnp.sum(weights * fn(x))

    want = jax.grad(dense)(params)
    got = jax.grad(cheap)(params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    wrong = jax.grad(frozen)(params)["u"]
    assert float(jnp.max(jnp.abs(wrong - want["u"]))) > 1e-3


def test_batched_with_vmap():
    net, params, _ = setup()
    xs = jax.random.normal(jax.random.key(7), (4, DIM), jnp.float64)
    values, derivatives = jax.vmap(dimension_wise(net, order=2), (None, 0))(params, xs)
    assert values.shape == (4, DIM) and [d.shape for d in derivatives] == [(4, DIM)] * 2
    np.testing.assert_allclose(derivatives[1][2], dense_diagonal(net, params, xs[2], 2), rtol=1e-10)


@pytest.mark.parametrize("order", [0, -1, 1.5])
def test_bad_order_is_an_input_error(order):
    net, _, _ = setup()
    with pytest.raises(InputError, match="order"):
        dimension_wise(net, order=order)


def test_bad_network_sizes_are_an_input_error():
    with pytest.raises(InputError, match="dim >= 2"):
        hollow_net(1)


def test_docs_flow_divergence_example_exact_methods_agree():
    """docs/examples/flow_divergence.py: the dimension-wise and jvp log-density changes agree to
    rounding, Hutchinson's one-probe estimate does not."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / "flow_divergence.py"
    spec = importlib.util.spec_from_file_location("flow_divergence", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    summary = example.main(dim=6, steps=3, batch=2)
    assert summary["max_abs_jvps_minus_dimwise"] < 1e-12
    assert summary["mean_abs_hutchinson_minus_dimwise"] > 1e-6


def test_bench_dimwise_cli_writes_table(tmp_path):
    from vmcjet.cli import main

    argv = ["bench", "dimwise", "--dims", "4", "--batch-size", "2", "--repeats", "1"]
    assert main([*argv, "--out", str(tmp_path), "--stem", "d"]) == 0
    text = (tmp_path / "d.md").read_text()
    assert "| 4 |" in text and "D1 dimwise" in text and "Divergence check" in text

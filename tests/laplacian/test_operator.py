"""forward_operator (orders 1-4), biharmonic and stochastic_operator against JAX's own nested
derivatives (float64)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from vmcjet.errors import InputError
from vmcjet.laplacian import biharmonic, forward_laplacian, forward_operator, stochastic_operator
from vmcjet.laplacian.operator import biharmonic_directions
from vmcjet.laplacian.taylor import partitions

D = 4
W1 = jnp.linspace(-0.8, 0.9, D * 6).reshape(D, 6)
W2 = jnp.linspace(0.7, -0.5, 6)


@jax.custom_jvp
def softplus(x):
    return jnp.log1p(jnp.exp(x))


softplus.defjvp(lambda p, t: (softplus(p[0]), jax.nn.sigmoid(p[0]) * t[0]))


def _scan(x):
    def body(carry, xi):
        carry = jnp.tanh(carry * xi + 0.3) + carry * carry * 0.1
        return carry, carry * xi

    carry, ys = lax.scan(body, x[0], x)
    return carry + jnp.sum(ys)


def _while(x):
    def body(state):
        i, c = state
        return i + 1, jnp.sin(c) * x[1] + c * 0.5

    return lax.while_loop(lambda s: s[0] < 3, body, (0, x[0]))[1]


ZOO = {
    "mlp": lambda x: jnp.tanh(jnp.tanh(x @ W1) @ W2),
    "products": lambda x: x[0] * x[1] * x[2] + x[0] * x[1] * x[2] * x[3] * x[3],
    "division": lambda x: x[0] / (1.5 + x[1] * x[1]) + jnp.sum(1 / (2 + jnp.cos(x))),
    "elementwise": lambda x: jnp.sum(jnp.exp(0.3 * x) * jnp.log(2 + x * x) + jnp.sin(x) * x[0]),
    "integer_powers": lambda x: jnp.sum(x**3) * x[1] ** 2 + x[2] ** 4,
    "pow": lambda x: (1.5 + x[0] ** 2) ** x[1] + (2.0 + jnp.sin(x[2])) ** 1.7,
    "slogdet": lambda x: jnp.linalg.slogdet(
        jnp.outer(x, jnp.sin(x)) + jnp.diag(jnp.arange(2.0, 2.0 + D)) + x[:, None] * 0.2
    )[1],
    "det": lambda x: jnp.linalg.det(jnp.outer(x, jnp.cos(x)) + 3 * jnp.eye(D)),
    "scan": _scan,
    "fori_loop": lambda x: lax.fori_loop(0, 3, lambda i, c: c * jnp.tanh(c + x), x).sum(),
    "while": _while,
    "cond": lambda x: lax.cond(x[0] > 0, lambda y: jnp.sum(jnp.sin(y) ** 2), jnp.sum, x * x),
    "custom_jvp": lambda x: jnp.sum(softplus(x * x[::-1])),
    "vector": lambda x: jnp.stack([jnp.sin(x[0] * x[1]), jnp.exp(x[2]) / (1 + x[3] ** 2)]),
}


def _nested(f, order, x, directions, weights):
    """sum_k w_k d^order f[v_k, ...] from `order` nested jax.jacfwd, contracted."""
    derivative = f
    for _ in range(order):
        derivative = jax.jacfwd(derivative)
    tensor = derivative(x)  # f's shape + (D,) * order
    total = 0.0
    for v, w in zip(directions, weights, strict=True):
        t = tensor
        for _ in range(order):
            t = t @ v
        total = total + w * t
    return total


@pytest.fixture(scope="module")
def point():
    key_x, key_v, key_w = jax.random.split(jax.random.PRNGKey(3), 3)
    x = 0.6 * jax.random.normal(key_x, (D,))
    directions = jax.random.normal(key_v, (6, D))  # K > D: the stacks use the unit basis
    weights = jax.random.normal(key_w, (6,))
    return x, directions, weights


@pytest.mark.parametrize("name", ZOO)
def test_orders_one_to_four_match_nested_jacfwd(point, name):
    x, directions, weights = point
    f = ZOO[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no primitive of the zoo may need the fallback
        for order in (1, 2, 3, 4):
            value, got = forward_operator(f, order=order, directions=directions, weights=weights)(x)
            want = _nested(f, order, x, directions, weights)
            np.testing.assert_allclose(value, f(x), rtol=1e-13)
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10, err_msg=f"order {order}")
            chunked = forward_operator(
                f, order=order, directions=directions, weights=weights, chunk_size=2
            )(x)[1]
            np.testing.assert_allclose(chunked, got, rtol=1e-12, atol=1e-12)


def test_unit_directions_default_weights_and_jit(point):
    """K = D: the stacks carry the directions themselves as the first-order basis."""
    x, _, _ = point
    f = ZOO["mlp"]
    hessian = jax.hessian(jax.hessian(f))(x)
    fourth = jnp.einsum("iiii->", hessian)
    got = jax.jit(forward_operator(f, order=4))(x)[1]
    np.testing.assert_allclose(got, fourth, rtol=1e-10)


def test_order_two_is_forward_laplacian(point):
    x, _, _ = point
    f = ZOO["mlp"]
    value, _, laplacian = forward_laplacian(f)(x)
    same = forward_operator(f, order=2)(x)
    assert same[0] == value and same[1] == laplacian  # exactly: it is the Laplacian engine
    eye = jnp.eye(D)
    taylor = forward_operator(f, order=2, directions=eye, weights=jnp.ones(D))(x)[1]
    np.testing.assert_allclose(taylor, laplacian, rtol=1e-13)


def test_fallback_primitive_warns_and_is_right(point):
    x, directions, weights = point
    f = lambda x: jnp.sum(jnp.sort(jnp.sin(x)) * jnp.arange(1.0, D + 1))
    with pytest.warns(UserWarning, match="'sort'"):
        got = forward_operator(f, order=3, directions=directions, weights=weights)(x)[1]
    np.testing.assert_allclose(got, _nested(f, 3, x, directions, weights), rtol=1e-10)


@pytest.mark.parametrize("name", ["mlp", "vector"])  # slogdet: the zoo test, orders 1-4
def test_biharmonic_is_the_trace_of_the_trace_of_nested_hessians(point, name):
    x, _, _ = point
    f = ZOO[name]
    hessians = jax.hessian(jax.hessian(f))(x)  # f's shape + (D, D, D, D)
    want = jnp.einsum("...iijj->...", hessians)
    value, got = biharmonic(f)(x)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(biharmonic(f, chunk_size=5)(x)[1], got, rtol=1e-12, atol=1e-12)


def test_biharmonic_of_a_quartic_polynomial_and_on_matrix_inputs():
    # f = |x|^4 in D dims: Delta^2 f = 8 D (D + 2)
    for size in (1, 3, 6):  # both direction sets
        got = biharmonic(lambda x: jnp.sum(x * x) ** 2)(jnp.ones(size) * 0.3)[1]
        np.testing.assert_allclose(got, 8 * size * (size + 2), rtol=1e-12)
    x = jnp.arange(6.0).reshape(2, 3) / 7
    got = biharmonic(lambda y: jnp.sum(y * y) ** 2)(x)[1]
    np.testing.assert_allclose(got, 8 * 6 * 8, rtol=1e-12)
    counts = {size: biharmonic_directions(size)[0].shape[0] for size in range(1, 8)}
    assert counts == {1: 1, 2: 4, 3: 7, 4: 12, 5: 21, 6: 36, 7: 49}


def test_partitions_count_the_set_partitions():
    bell = [1, 2, 5, 15, 52, 203]  # Bell numbers B_1..B_6
    for n, want in enumerate(bell, start=1):
        assert sum(count for count, _ in partitions(n)) == want


@pytest.mark.parametrize(
    ("operator", "distribution"),
    [
        ("laplacian", "rademacher"),
        ("laplacian", "gaussian"),
        ("laplacian", "coordinates"),
        ("biharmonic", "gaussian"),
    ],
)
def test_stochastic_operator_is_unbiased(point, operator, distribution):
    x, _, _ = point
    f = ZOO["mlp"]
    exact = (
        jnp.trace(jax.hessian(f)(x))
        if operator == "laplacian"
        else jnp.einsum("iijj->", jax.hessian(jax.hessian(f))(x))
    )

    def one(key):
        estimate = stochastic_operator(
            f, operator=operator, key=key, num_samples=4, distribution=distribution
        )
        return estimate(x)[1]

    samples = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(11), 2000))
    error = jnp.std(samples) / jnp.sqrt(samples.size)
    assert abs(jnp.mean(samples) - exact) < 4 * error
    assert jnp.std(samples) > 0  # really random: not the exact value every time


def test_rademacher_biharmonic_would_be_biased(point):
    """Why Rademacher is refused: its fourth moment is 1, not Gaussian's 3, so the mean of
    d4[v] / 3 misses 2/3 sum_i f_iiii."""
    x, _, _ = point
    f = ZOO["mlp"]
    keys = jax.random.split(jax.random.PRNGKey(5), 2000)
    rademacher = jax.vmap(lambda k: jax.random.rademacher(k, (4, D), dtype=x.dtype))(keys)

    def one(v):
        return forward_operator(f, order=4, directions=v, weights=jnp.full(4, 1 / 12))(x)[1]

    samples = jax.jit(jax.vmap(one))(rademacher)
    hessians = jax.hessian(jax.hessian(f))(x)
    exact = jnp.einsum("iijj->", hessians)
    biased = exact - 2 / 3 * jnp.einsum("iiii->", hessians)
    error = jnp.std(samples) / jnp.sqrt(samples.size)
    assert abs(jnp.mean(samples) - biased) < 4 * error
    assert abs(jnp.mean(samples) - exact) > 4 * error


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"order": 0}, "order=0 is not supported"),
        ({"order": 7}, "order=7 is not supported"),
        ({"order": 2.0}, "order=2.0 is not supported"),
        ({"order": 3, "directions": jnp.ones((2, D + 1))}, "directions has shape"),
        ({"order": 3, "directions": jnp.ones((2, D)), "weights": jnp.ones(3)}, "weights has shape"),
        ({"order": 3, "weights": jnp.ones((2, 2))}, "weights has shape"),
        ({"order": 3, "chunk_size": 0}, "chunk_size=0"),
    ],
)
def test_bad_input_is_a_one_line_input_error(kwargs, match):
    with pytest.raises(InputError, match=match) as error:
        forward_operator(jnp.sum, **kwargs)(jnp.ones(D))
    assert "\n" not in str(error.value)


def test_stochastic_operator_refuses_biased_pairs():
    key = jax.random.PRNGKey(0)
    for operator, distribution in (("biharmonic", "rademacher"), ("biharmonic", "coordinates")):
        with pytest.raises(InputError, match="no unbiased biharmonic estimate"):
            stochastic_operator(
                jnp.sum, operator=operator, key=key, num_samples=2, distribution=distribution
            )
    with pytest.raises(InputError, match="unknown operator"):
        stochastic_operator(jnp.sum, operator="curl", key=key, num_samples=2)


def test_parameter_gradient_through_the_operator():
    """jax.grad of a chunked third-order operator with respect to weights of f equals jax.grad of
    nested jvps (so the operator can sit in a loss)."""
    x, w0 = jnp.array([0.3, -0.6]), jnp.array([[0.5, -1.1], [0.8, 0.4]])
    f = lambda w, y: jnp.sum(jnp.tanh(y @ w) ** 2)
    operator = lambda w: forward_operator(
        lambda y: f(w, y), order=3, directions=jnp.eye(2), chunk_size=1
    )(x)[1]

    def nested(w):
        third = lambda e: jax.jvp(
            lambda t: jax.jvp(lambda s: jax.jvp(lambda u: f(w, x + u * e), (s,), (1.0,))[1],
                              (t,), (1.0,))[1],
            (0.0,), (1.0,),
        )[1]  # fmt: skip
        return third(jnp.eye(2)[0]) + third(jnp.eye(2)[1])

    np.testing.assert_allclose(jax.grad(operator)(w0), jax.grad(nested)(w0), rtol=1e-12)

"""SPRING against direct numpy solutions, its norm constraint, the learning-rate schedule, and a
VMC toy problem."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vmcjet.config import OptimConfig
from vmcjet.distributed import make_walker_mesh, walker_sharding
from vmcjet.errors import InputError
from vmcjet.optim import (
    GradientBatch,
    adam,
    energy_gradient_residuals,
    make_optimiser,
    spring,
)
from vmcjet.optim.gradient import decaying_learning_rate
from vmcjet.optim.spring import (
    BLOCK_ELEMENTS,
    leaf_rows,
    spring_direction,
    update_temporary_bytes,
)


def centred(grads, residuals):
    batch = grads.shape[0]
    o_bar = (grads - grads.mean(0)) / np.sqrt(batch)
    eps = (residuals - residuals.mean()) / np.sqrt(batch)
    return o_bar, eps


def random_problem(batch, params, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, params)) + 0.3, rng.normal(size=batch)


@pytest.mark.parametrize("batch, n_params", [(8, 20), (20, 5)])
def test_no_momentum_gives_damped_minimum_norm_solution(batch, n_params):
    grads, residuals = random_problem(batch, n_params, seed=0)
    damping = 1e-3
    o_bar, eps = centred(grads, residuals)
    expected = np.linalg.solve(o_bar.T @ o_bar + damping * np.eye(n_params), o_bar.T @ eps)
    phi = spring_direction(
        [jnp.asarray(grads)],
        jnp.asarray(residuals),
        jnp.zeros(n_params),
        damping=damping,
        momentum=0.0,
    )
    np.testing.assert_allclose(np.asarray(phi), expected, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("batch, n_params", [(8, 20), (20, 5)])
def test_momentum_solves_the_regularised_least_squares_problem(batch, n_params):
    grads, residuals = random_problem(batch, n_params, seed=1)
    previous = np.random.default_rng(2).normal(size=n_params)
    damping, mu = 1e-2, 0.9
    o_bar, eps = centred(grads, residuals)
    # argmin |O phi - eps|^2 + damping |phi - mu previous|^2 via the normal equations.
    expected = np.linalg.solve(
        o_bar.T @ o_bar + damping * np.eye(n_params), o_bar.T @ eps + damping * mu * previous
    )
    phi = spring_direction(
        [jnp.asarray(grads)],
        jnp.asarray(residuals),
        jnp.asarray(previous),
        damping=damping,
        momentum=mu,
    )
    np.testing.assert_allclose(np.asarray(phi), expected, rtol=1e-7, atol=1e-10)


def pytree_problem(batch, seed):
    grads, residuals = random_problem(batch, 7, seed)
    tree = {"w": jnp.asarray(grads[:, :6].reshape(batch, 2, 3)), "b": jnp.asarray(grads[:, 6])}
    params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(())}
    return tree, jnp.asarray(residuals), params, grads, residuals


def test_update_is_minus_lr_phi_with_decay_and_unravels():
    tree, residuals, params, grads, res_np = pytree_problem(10, seed=3)
    opt = spring(0.5, decay=1.0, damping=1e-3, momentum=0.0, max_norm=1e9)
    state = opt.init(params)
    _, state = opt.update(GradientBatch(residuals, tree), state)  # step 0
    updates, state = opt.update(GradientBatch(residuals, tree), state)  # step 1: lr = 0.5 / 2
    o_bar, eps = centred(grads, res_np)
    phi = np.linalg.solve(o_bar.T @ o_bar + 1e-3 * np.eye(7), o_bar.T @ eps)
    np.testing.assert_allclose(np.asarray(updates["w"]).ravel(), -0.25 * phi[:6], rtol=1e-7)
    np.testing.assert_allclose(float(updates["b"]), -0.25 * phi[6], rtol=1e-7)
    assert int(state.step) == 2


def test_schedule_decays_then_drops_at_its_step():
    schedule = decaying_learning_rate(0.1, 0.01, (5, 0.3))
    rates = np.asarray(schedule(jnp.arange(7)))
    expected = 0.1 / (1 + 0.01 * np.arange(7)) * np.where(np.arange(7) >= 5, 0.3, 1.0)
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    never = decaying_learning_rate(0.1, 0.01, (0, 0.3))  # drop step 0: no drop
    np.testing.assert_array_equal(
        never(jnp.arange(7)), decaying_learning_rate(0.1, 0.01)(jnp.arange(7))
    )


@pytest.mark.parametrize("optimizer", ["spring", "adam"])
def test_late_drop_scales_the_update_from_its_step_on(optimizer):
    """optim.lr_drop_step / lr_drop_factor reach the optimiser: steps before the drop are
    unchanged, the step at the drop is the undropped one times the factor."""
    tree, residuals, params, _, _ = pytree_problem(10, seed=6)
    batch = GradientBatch(residuals, per_walker_grads=tree)
    base = OptimConfig(optimizer=optimizer, momentum=0.0, max_norm=1e9)
    updates = {}
    for factor in (1.0, 0.25):
        opt = make_optimiser(dataclasses.replace(base, lr_drop_step=1, lr_drop_factor=factor))
        first, state = opt.update(batch, opt.init(params))
        second, _ = opt.update(batch, state)
        updates[factor] = (first, second)
    for a, b in zip(
        jax.tree.leaves(updates[1.0][0]), jax.tree.leaves(updates[0.25][0]), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        jax.tree.leaves(updates[1.0][1]), jax.tree.leaves(updates[0.25][1]), strict=True
    ):
        np.testing.assert_allclose(0.25 * np.asarray(a), b, rtol=1e-6)
        assert np.any(np.asarray(a) != 0)


@pytest.mark.parametrize("max_norm", [1e-6, 1e9])
def test_norm_constraint(max_norm):
    tree, residuals, params, grads, res_np = pytree_problem(10, seed=4)
    opt = spring(0.1, damping=1e-3, momentum=0.0, max_norm=max_norm)
    updates, _ = opt.update(GradientBatch(residuals, tree), opt.init(params))
    squared = float(optax.tree_utils.tree_norm(updates, squared=True))
    o_bar, eps = centred(grads, res_np)
    phi = np.linalg.solve(o_bar.T @ o_bar + 1e-3 * np.eye(7), o_bar.T @ eps)
    assert squared == pytest.approx(min(max_norm, 0.01 * np.sum(phi**2)), rel=1e-8)


@pytest.mark.multidevice
def test_sharded_walkers_give_the_same_update():
    tree, residuals, params, _, _ = pytree_problem(8, seed=5)
    opt = spring(0.1, damping=1e-3, momentum=0.5, max_norm=1.0)
    update = jax.jit(lambda grads, state: opt.update(GradientBatch(residuals, grads), state))
    sharding = walker_sharding(make_walker_mesh())
    plain, _ = update(tree, opt.init(params))
    sharded, _ = update(jax.device_put(tree, sharding), opt.init(params))
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(sharded), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10)


def oscillator_step(opt, batch):
    """A VMC step for H = -lap/2 + r^2/2 (3D), psi = exp(-a r^2): E(a) = 3a/2 + 3/(8a)."""

    def step(carry, key):
        params, state = carry
        a = params["a"]
        x = jax.random.normal(key, (batch, 3)) / jnp.sqrt(4 * a)  # |psi|^2 = exp(-2 a r^2)
        r2 = jnp.sum(x**2, axis=1)
        local_energy = 3 * a + r2 * (0.5 - 2 * a**2)
        grads = {"a": -r2}  # d log psi / d a per walker
        inputs = GradientBatch(energy_gradient_residuals(local_energy), per_walker_grads=grads)
        updates, state = opt.update(inputs, state, params)
        return (optax.apply_updates(params, updates), state), jnp.mean(local_energy)

    return step


@pytest.mark.parametrize(
    "opt",
    [spring(0.1, damping=1e-3, momentum=0.9, max_norm=1e-2), adam(0.05)],
    ids=["spring", "adam"],
)
def test_oscillator_energy_decreases_to_the_exact_ground_state(opt):
    params = {"a": jnp.asarray(0.15)}
    carry = (params, opt.init(params))
    keys = jax.random.split(jax.random.key(0), 60)
    (params, _), energies = jax.lax.scan(oscillator_step(opt, 64), carry, keys)
    a = float(params["a"])
    assert float(energies[0]) > 1.7  # E(0.15) = 2.725
    assert 1.5 * a + 3 / (8 * a) < 1.52  # exact 1.5 at a = 0.5


def test_make_optimiser_names():
    assert make_optimiser(OptimConfig(optimizer="adam")).init({"a": jnp.zeros(2)}) is not None
    with pytest.raises(InputError, match="did you mean|choose one of"):
        make_optimiser(OptimConfig(optimizer="sgd"))
    with pytest.raises(InputError, match="damping"):
        spring(0.1, damping=0.0)


def _reference_direction(grads, residuals, previous, damping, mu):
    """argmin |O_bar phi - eps|^2 + damping |phi - mu previous|^2 in float64 numpy."""
    o_bar, eps = centred(np.asarray(grads, np.float64), np.asarray(residuals, np.float64))
    n_params = o_bar.shape[1]
    return np.linalg.solve(
        o_bar.T @ o_bar + damping * np.eye(n_params), o_bar.T @ eps + damping * mu * previous
    )


@pytest.mark.parametrize("block", [1 << 24, 20, 9])
@pytest.mark.parametrize("cuts", [(), (3,), (1, 2, 7, 11), tuple(range(1, 13))])
def test_per_leaf_direction_equals_the_concatenated_one(cuts, block):
    """O split into leaves at `cuts` (columns), and leaves into column blocks of at most `block`
    entries (2 or 1 columns of 9 walkers), gives the direction of the whole O."""
    grads, residuals = random_problem(9, 13, seed=6)
    previous = np.random.default_rng(7).normal(size=13)
    rows = [jnp.asarray(block) for block in np.split(grads, cuts, axis=1)]
    phi = spring_direction(
        rows,
        jnp.asarray(residuals),
        jnp.asarray(previous),
        damping=1e-2,
        momentum=0.8,
        max_block_elements=block,
    )
    expected = _reference_direction(grads, residuals, previous, 1e-2, 0.8)
    np.testing.assert_allclose(np.asarray(phi), expected, rtol=1e-9, atol=1e-12)


def test_leaf_rows_follow_the_flattening_order_of_updates():
    tree, residuals, params, grads, res_np = pytree_problem(10, seed=8)
    rows = leaf_rows(tree)
    assert [r.shape for r in rows] == [(10, 1), (10, 6)]  # leaves sorted by key: "b", then "w"
    updates, _ = spring(1.0, momentum=0.0, max_norm=1e9).update(
        GradientBatch(residuals, tree), spring(1.0).init(params)
    )
    phi = _reference_direction(grads, res_np, np.zeros(7), 1e-3, 0.0)
    np.testing.assert_allclose(np.asarray(updates["w"]).ravel(), -phi[:6], rtol=1e-7)


def ill_conditioned_problem(batch=256, n_params=2000, seed=9):
    """float32 per-walker gradients whose kernel has eigenvalues from 1e3 down to 1e-8."""
    rng = np.random.default_rng(seed)
    left = np.linalg.qr(rng.normal(size=(batch, batch)))[0]
    right = np.linalg.qr(rng.normal(size=(n_params, batch)))[0]
    singular = np.logspace(1.5, -4, batch)
    grads = (left * singular) @ right.T * np.sqrt(batch)
    return grads.astype(np.float32), rng.normal(size=batch).astype(np.float32)


def test_float64_kernel_matches_a_float64_reference_where_float32_does_not():
    """float32 O, x64 off as in a float32 run, the default damping: the float64 kernel and solve
    give the float64 direction of the same float32 data; a float32 kernel is 100x further off."""
    grads, residuals = ill_conditioned_problem()
    previous = np.zeros(grads.shape[1])
    expected = _reference_direction(grads, residuals, previous, 1e-3, 0.0)

    def direction(kernel_dtype):
        with jax.enable_x64(False):
            phi = jax.jit(
                lambda o, r, p: spring_direction(
                    [o[:, :700], o[:, 700:]],
                    r,
                    p,
                    damping=1e-3,
                    momentum=0.0,
                    kernel_dtype=kernel_dtype,
                )
            )(jnp.asarray(grads), jnp.asarray(residuals), jnp.zeros(2000, jnp.float32))
        assert phi.dtype == jnp.float32
        return np.linalg.norm(np.asarray(phi, np.float64) - expected) / np.linalg.norm(expected)

    accurate = direction("float64")
    assert accurate < 2e-4
    assert not direction("float32") < 10 * accurate  # larger, or NaN (Cholesky failed)


def test_unknown_kernel_dtype_is_an_input_error():
    with pytest.raises(InputError, match="kernel dtype 'float16'"):
        spring(0.1, kernel_dtype="float16")


LIH_LEAF_WIDTHS = [8, 8, 16, 16, 16, 16, 16, 16, 64, 64, 64, 64, 256, 512, 512, 2048, 14336, 14336]


@pytest.mark.parametrize("batch, widths", [(256, [8192] * 4), (1024, LIH_LEAF_WIDTHS)])
def test_update_memory_is_one_block_and_three_kernels(batch, widths):
    """float32 O, x64 off as in a float32 run, compile only. The float64 kernel path's XLA
    temporaries stay within two float64 blocks (8 MiB each) and three B x B float64 matrices
    (the kernel, one block's product, the Cholesky factor): far below a float64 copy of O (64
    MiB for 4 leaves of 8192 columns at B = 256, which converting every leaf at once took) and
    below one B x B product per leaf (LiH's 18 leaves at B = 1024: 17 kernels, 134 MiB, before
    the single loop over all leaves' blocks)."""
    rows = [jax.ShapeDtypeStruct((batch, width), jnp.float32) for width in widths]
    vector = jax.ShapeDtypeStruct((batch,), jnp.float32)
    previous = jax.ShapeDtypeStruct((sum(widths),), jnp.float32)

    def direction(rows, residuals, previous):
        return spring_direction(rows, residuals, previous, damping=1e-3, momentum=0.9)

    with jax.enable_x64(False):
        compiled = jax.jit(direction).lower(rows, vector, previous).compile()
    temporaries = compiled.memory_analysis().temp_size_in_bytes
    assert temporaries <= update_temporary_bytes(batch) == 2 * 8 * BLOCK_ELEMENTS + 3 * 8 * batch**2

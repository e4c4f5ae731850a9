"""KFAC: the Kronecker factors against the exact Fisher block and a numpy estimate, the update
against a dense numpy solve, the layer records of the tagged networks against per-walker
gradients, and short runs in which KFAC and SPRING both lower the energy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet import mcmc, optim
from vmcjet.config import (
    Config,
    FermiNetConfig,
    McmcConfig,
    NetworkConfig,
    OptimConfig,
    PsiformerConfig,
)
from vmcjet.log_psi_gradients import energy_gradient_fn, layer_records
from vmcjet.molecule import load_molecule
from vmcjet.networks import make_wavefunction
from vmcjet.networks.layers import Tape, dense, init_dense, named_leaves
from vmcjet.optim.kfac import SHARING, diagonal_fisher, kfac, kronecker_factors
from vmcjet.train import TrainState, make_train_step

TINY = {
    "ferminet": NetworkConfig(determinants=2, ferminet=FermiNetConfig(8, 4, 2)),
    "psiformer": NetworkConfig(
        kind="psiformer", determinants=2, psiformer=PsiformerConfig(layers=2, heads=2, head_dim=4)
    ),
}


def initial_walkers(molecule, count: int, seed: int = 1) -> jax.Array:
    """(count, n, 3) float64 electrons scattered around their nuclei, bohr."""
    centres = np.repeat(molecule.coords, np.asarray(molecule.charges, dtype=int), axis=0)
    noise = jax.random.normal(jax.random.key(seed), (count, molecule.n_electrons, 3), jnp.float64)
    return jnp.asarray(centres[None, : molecule.n_electrons]) + noise


def tiny_lih(kind: str):
    molecule = load_molecule("LiH")
    wavefunction = make_wavefunction(TINY[kind], molecule)
    params = wavefunction.init(key=jax.random.key(0), dtype=jnp.float64)
    return wavefunction, params, initial_walkers(molecule, 3)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def layer_matrix(tree: dict) -> np.ndarray:
    """[w; b] of a dense layer's dict: the layout whose row-major vec KFAC uses."""
    return np.concatenate([np.asarray(tree["w"]), np.asarray(tree["b"])[None]], axis=0)


@pytest.mark.parametrize("sharing", SHARING)
def test_one_sample_kronecker_product_is_the_exact_fisher_block(sharing):
    """One walker, one row: A (x) G equals vec(dlog/dW) vec(dlog/dW)^T (float64)."""
    params = init_dense(jax.random.key(0), 5, 3, dtype=jnp.float64)
    params["b"] = jnp.array([0.3, -0.2, 0.1])
    x = jax.random.normal(jax.random.key(1), (1, 5), jnp.float64)

    def log_psi(p, taps=None):
        tape = Tape(taps)
        y = dense(p, x, tape)
        return jnp.sum(jnp.sin(y) * jnp.array([[1.0, 2.0, -0.5]])), tape.inputs

    taps = {"": jnp.zeros((1, 3), jnp.float64)}
    _, pullback, inputs = jax.vjp(lambda t: log_psi(params, t), taps, has_aux=True)
    (g,) = pullback(1.0)
    a_factor, g_factor = kronecker_factors(
        inputs[""][None], g[""][None], sharing=sharing, centred=False
    )
    exact = layer_matrix(jax.grad(lambda p: log_psi(p)[0])(params)).reshape(-1)
    np.testing.assert_allclose(
        np.kron(a_factor, g_factor), np.outer(exact, exact), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize("centred", [True, False])
@pytest.mark.parametrize("sharing", SHARING)
def test_several_samples_give_the_hand_computed_estimate(sharing, centred):
    rng = np.random.default_rng(0)
    batch, rows, n_in, n_out = 7, 4, 3, 2
    inputs = rng.normal(size=(batch, rows, n_in))
    output_grads = rng.normal(size=(batch, rows, n_out))
    a, g = inputs, output_grads
    if sharing == "reduce":  # one sample per walker: row mean of a, row sum of g
        a, g = a.mean(axis=1, keepdims=True), g.sum(axis=1, keepdims=True)
    if centred:  # each row's g centred over the walkers
        g = g - g.mean(axis=0)
    samples = [(a[b, r], g[b, r]) for b in range(batch) for r in range(a.shape[1])]
    expected_a = sum(np.outer(x, x) for x, _ in samples) / len(samples)
    expected_g = sum(np.outer(y, y) for _, y in samples) / batch
    a_factor, g_factor = kronecker_factors(inputs, output_grads, sharing=sharing, centred=centred)
    np.testing.assert_allclose(
        np.kron(a_factor, g_factor), np.kron(expected_a, expected_g), rtol=1e-12
    )
    grads = rng.normal(size=(batch, 2, 3))
    centre = grads.mean(axis=0) if centred else 0.0
    np.testing.assert_allclose(
        diagonal_fisher(grads, centred=centred), ((grads - centre) ** 2).mean(axis=0), rtol=1e-12
    )


def synthetic_batch(rng, batch=6, rows=3):
    """A GradientBatch for params {"layer": dense 2 -> 3, "other": (4,)} with random records."""
    params = {"layer": {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}, "other": jnp.zeros(4)}
    inputs = np.concatenate([rng.normal(size=(batch, rows, 2)), np.ones((batch, rows, 1))], -1)
    records = optim.LayerRecords(
        inputs={"layer": jnp.asarray(inputs)},
        output_grads={"layer": jnp.asarray(rng.normal(size=(batch, rows, 3)))},
        other_grads={"other": jnp.asarray(rng.normal(size=(batch, 4)))},
    )
    gradient = {
        "layer": {"w": jnp.asarray(rng.normal(size=(2, 3))), "b": jnp.asarray(rng.normal(size=3))},
        "other": jnp.asarray(rng.normal(size=4)),
    }
    residuals = jnp.zeros(batch)
    return params, optim.GradientBatch(residuals, gradient=gradient, layers=records)


@pytest.mark.parametrize("max_norm", [1e3, 1e-4])
def test_update_is_the_damped_kronecker_solve_with_the_norm_constraint(max_norm):
    rng = np.random.default_rng(1)
    params, batch = synthetic_batch(rng)
    lr, damping = 0.3, 1e-2
    opt = kfac(lr, decay=0.5, damping=damping, max_norm=max_norm)
    state = opt.init(params)
    _, state = opt.update(batch, state)  # step 0: the factors become this batch's estimate
    updates, state = opt.update(batch, state)  # step 1: the same estimate again, lr / 1.5
    a_factor, g_factor = kronecker_factors(
        batch.layers.inputs["layer"],
        batch.layers.output_grads["layer"],
        sharing="expand",
        centred=True,
    )
    grad = layer_matrix(batch.gradient["layer"]).reshape(-1)
    phi = np.linalg.solve(np.kron(a_factor, g_factor) + damping * np.eye(9), grad)
    diagonal = diagonal_fisher(batch.layers.other_grads["other"], centred=True)
    phi_other = np.asarray(batch.gradient["other"]) / (diagonal + damping)
    quadratic = grad @ phi + np.asarray(batch.gradient["other"]) @ phi_other
    scale = min(1.0, np.sqrt(max_norm / (lr**2 * quadratic)))
    assert (scale < 1.0) == (max_norm < 1)
    expected = -scale * lr / 1.5 * phi
    np.testing.assert_allclose(layer_matrix(updates["layer"]).reshape(-1), expected, rtol=1e-9)
    np.testing.assert_allclose(updates["other"], -scale * lr / 1.5 * phi_other, rtol=1e-9)
    assert int(state.step) == 2


def test_late_drop_scales_the_update_from_its_step_on():
    params, batch = synthetic_batch(np.random.default_rng(2))
    firsts, seconds = [], []
    for factor in (1.0, 0.25):
        opt = kfac(0.3, decay=0.5, drop=(1, factor))
        first, state = opt.update(batch, opt.init(params))
        second, _ = opt.update(batch, state)
        firsts.append(layer_matrix(first["layer"]))
        seconds.append(layer_matrix(second["layer"]))
    np.testing.assert_array_equal(firsts[0], firsts[1])
    np.testing.assert_allclose(0.25 * seconds[0], seconds[1], rtol=1e-6)


@pytest.mark.parametrize("kind", ["ferminet", "psiformer"])
def test_layer_records_reconstruct_the_per_walker_gradients(kind):
    """sum_rows a g^T = d log|psi| / d [w; b] for every dense layer, the other leaves' records
    are their per-walker gradients, and a walker left out has zero records."""
    wavefunction, params, walkers = tiny_lih(kind)
    keep = jnp.array([True, True, False])
    records = layer_records(wavefunction)(params, walkers, keep)
    grads = jax.vmap(jax.grad(lambda p, x: wavefunction.apply(p, x)[1]), in_axes=(None, 0))
    named = named_leaves(grads(params, walkers))
    # FermiNet: one/two, one, 2 orbital maps; Psiformer: embed, 2 x (q, k, v, o, mlp), 2 maps
    assert len(records.inputs) == (5 if kind == "ferminet" else 13)
    for name, a in records.inputs.items():
        full = np.einsum("bri,bro->bio", a, records.output_grads[name])
        w = named[f"{name}.w"]
        bias = named.get(f"{name}.b")
        expected = w if bias is None else np.concatenate([w, bias[:, None]], axis=1)
        np.testing.assert_allclose(full[:2], expected[:2], rtol=1e-9, atol=1e-12, err_msg=name)
        assert not np.any(full[2]) and not np.any(a[2])
    assert set(records.other_grads) == {
        p for p in named if p.rsplit(".", 1)[0] not in records.inputs
    }
    for path, o in records.other_grads.items():
        np.testing.assert_allclose(o[:2], named[path][:2], rtol=1e-9, atol=1e-12, err_msg=path)


@pytest.mark.parametrize("kind", ["ferminet", "psiformer"])
def test_the_energy_gradient_from_records_equals_the_backward_pass(kind):
    """KFAC's train step forms 2 mean_b r_b O_b from the layer records; it equals the energy
    gradient of one backward pass, with a walker left out (zero records) weighted by zero."""
    wavefunction, params, walkers = tiny_lih(kind)
    keep = jnp.array([True, True, False])
    residuals = jnp.array([0.7, -0.2, 0.0])
    records = layer_records(wavefunction)(params, walkers, keep)
    expected = energy_gradient_fn(wavefunction)(params, walkers, residuals)
    got = optim.records_gradient(records, residuals, params)
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for path, leaf in named_leaves(expected).items():
        np.testing.assert_allclose(
            named_leaves(got)[path], leaf, rtol=1e-9, atol=1e-13, err_msg=path
        )


@pytest.mark.parametrize("kind", ["ferminet", "psiformer"])
def test_apply_with_zero_taps_equals_apply_without_a_tape(kind):
    wavefunction, params, walkers = tiny_lih(kind)
    electrons = walkers[0]
    shapes = Tape()
    wavefunction.apply(params, electrons, shapes)
    taps = {name: jnp.zeros_like(y) for name, y in shapes.outputs.items()}
    tapped = wavefunction.apply(params, electrons, Tape(taps))
    plain = wavefunction.apply(params, electrons)
    assert [float(v) for v in tapped] == [float(v) for v in plain]


SMALL = NetworkConfig(determinants=1, ferminet=FermiNetConfig(16, 4, 2))


def energies_of_a_short_run(molecule_name: str, optimiser: str, steps: int = 25) -> np.ndarray:
    """Training energies (hartree) of `steps` steps from the same random network and walkers."""
    molecule = load_molecule(molecule_name)
    config = Config(
        batch_size=64,
        precision="float64",
        network=SMALL,
        mcmc=McmcConfig(moves=5),
        optim=OptimConfig(optimizer=optimiser),
    )
    wavefunction = make_wavefunction(config.network, molecule)
    params = wavefunction.init(key=jax.random.key(0), dtype=jnp.float64)
    log_psi = lambda p, x: wavefunction.apply(p, x)[1]  # noqa: E731
    walkers = initial_walkers(molecule, 64)
    sampler = mcmc.init_state(log_psi, params, walkers, width=0.2)
    state = TrainState(
        params, optim.make_optimiser(config.optim).init(params), sampler, jnp.zeros((), jnp.int32)
    )
    step = jax.jit(make_train_step(wavefunction, molecule, config))
    energies = []
    for _ in range(steps):
        state, stats = step(state, root_key=jax.random.key(2))
        energies.append(float(stats.energy))
    return np.array(energies)


@pytest.mark.parametrize("molecule_name", ["H2", "LiH"])
@pytest.mark.parametrize("optimiser", ["kfac", "spring"])
def test_a_short_run_lowers_the_energy(molecule_name, optimiser):
    energies = energies_of_a_short_run(molecule_name, optimiser)
    assert np.all(np.isfinite(energies))
    first, last = energies[:5].mean(), energies[-5:].mean()
    assert last < first - 0.05, (first, last)

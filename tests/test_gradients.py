"""What the train step feeds its optimiser: per-walker gradients and the energy gradient, in
walker chunks or not, with walkers left out of the step weighted by zero; and walker chunks chosen
from a memory budget (vmcjet.memory) that keep XLA's temporaries under it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet import distributed, memory, optim
from vmcjet.config import Config, FermiNetConfig, NetworkConfig, OptimConfig
from vmcjet.errors import InputError
from vmcjet.log_psi_gradients import energy_gradient_fn, make_gradient_batch, per_walker_gradients
from vmcjet.molecule import load_molecule
from vmcjet.networks import make_wavefunction
from vmcjet.optim.spring import update_temporary_bytes
from vmcjet.step_parts import (
    local_energy_chunk,
    make_local_energy_fn,
    make_sampler_and_local_energy,
    make_step_parts,
    walker_chunks,
)

SMALL = NetworkConfig(determinants=2, ferminet=FermiNetConfig(16, 4, 2))


@pytest.fixture(scope="module")
def lih():
    molecule = load_molecule("LiH")
    wavefunction = make_wavefunction(SMALL, molecule)
    params = wavefunction.init(key=jax.random.key(0), dtype=jnp.float64)
    walkers = jax.random.normal(jax.random.key(1), (10, molecule.n_electrons, 3), jnp.float64)
    residuals = jax.random.normal(jax.random.key(2), (10,), jnp.float64)
    return molecule, wavefunction, params, walkers, residuals


def assert_trees_close(a, b, rtol=1e-10):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 3, 4, 10])
def test_chunked_per_walker_gradients_equal_the_vmapped_ones(lih, chunk):
    _, wavefunction, params, walkers, _ = lih
    expected = per_walker_gradients(wavefunction)(params, walkers)
    assert_trees_close(per_walker_gradients(wavefunction, chunk)(params, walkers), expected)


@pytest.mark.parametrize("chunk", [None, 3, 4, 10, 16])
def test_energy_gradient_is_twice_the_residual_weighted_mean_of_per_walker_gradients(lih, chunk):
    """One backward pass per chunk (3 and 4 do not divide the 10 walkers) equals 2 mean r_b O_b."""
    _, wavefunction, params, walkers, residuals = lih
    per_walker = per_walker_gradients(wavefunction)(params, walkers)
    expected = optim.energy_gradient(per_walker, residuals)
    assert_trees_close(
        energy_gradient_fn(wavefunction, chunk)(params, walkers, residuals), expected
    )


def test_walkers_left_out_never_reach_the_gradients(lih):
    """A walker at a point where log|psi| is NaN (two same-spin electrons coincide) with finite
    False: the per-walker row is zero and the energy gradient that of the other walkers."""
    _, wavefunction, params, walkers, residuals = lih
    bad = walkers.at[0, 1].set(walkers[0, 0])  # electrons 0 and 1 are both alpha in LiH
    finite = jnp.arange(10) > 0
    residuals = jnp.where(finite, residuals, 0.0)
    needs = frozenset({optim.PER_WALKER_GRADS, optim.GRADIENT})
    batch = make_gradient_batch(wavefunction, needs, 4)(params, bad, residuals, finite)
    reference = per_walker_gradients(wavefunction)(params, walkers)
    for row, ref in zip(
        jax.tree.leaves(batch.per_walker_grads), jax.tree.leaves(reference), strict=True
    ):
        assert np.all(np.asarray(row[0]) == 0.0)
        np.testing.assert_allclose(np.asarray(row[1:]), np.asarray(ref[1:]), rtol=1e-10)
    assert_trees_close(batch.gradient, optim.energy_gradient(reference, residuals))


def test_each_optimiser_is_fed_only_what_it_needs(lih):
    _, wavefunction, params, walkers, residuals = lih
    finite = jnp.ones(10, bool)
    for name, present, absent in [
        ("spring", "per_walker_grads", "gradient"),
        ("adam", "gradient", "per_walker_grads"),
    ]:
        needs = optim.make_optimiser(OptimConfig(optimizer=name)).needs
        batch = make_gradient_batch(wavefunction, needs)(params, walkers, residuals, finite)
        assert getattr(batch, present) is not None and getattr(batch, absent) is None


def budget_config(budget, optimizer="spring", batch=64, devices=1):
    return Config(
        batch_size=batch,
        precision="float64",
        devices=devices,
        memory_budget_mib=budget,
        network=SMALL,
        optim=OptimConfig(optimizer=optimizer),
    )


@pytest.mark.parametrize("optimizer", ["spring", "adam"])
def test_a_budget_too_small_for_the_batch_chooses_chunks_that_fit(lih, optimizer):
    """Without a budget the parts' temporaries exceed 0.25 MiB at 64 walkers (SPRING's O not
    counted); with a budget of 0.25 MiB (plus O) the chosen chunks keep every part under it
    (XLA's compiled memory analysis)."""
    molecule, wavefunction, params, _, _ = lih
    opt = optim.make_optimiser(OptimConfig(optimizer=optimizer))
    walkers = jax.ShapeDtypeStruct((64, molecule.n_electrons, 3), jnp.float64)
    residuals = jax.ShapeDtypeStruct((64,), jnp.float64)
    finite = jax.ShapeDtypeStruct((64,), jnp.bool_)

    def temporaries(chunks):
        energy = make_local_energy_fn(wavefunction, molecule, Config(), chunks.local_energy)
        gradients = make_gradient_batch(wavefunction, opt.needs, chunks.gradients)
        return (
            memory.temporary_bytes(energy, params, walkers) / memory.MIB,
            memory.temporary_bytes(gradients, params, walkers, residuals, finite) / memory.MIB,
        )

    unchunked = walker_chunks(wavefunction, molecule, budget_config(None, optimizer), opt)
    assert unchunked == (None, None, 1)
    assert min(temporaries(unchunked)) > 0.25
    size = sum(leaf.size for leaf in jax.tree.leaves(params))
    # SPRING: O (B x P) and the update's temporaries are fixed memory.
    fixed = 64 * size * 8 + update_temporary_bytes(64) if optimizer == "spring" else 0
    o_mib = fixed / memory.MIB
    chunks = walker_chunks(wavefunction, molecule, budget_config(0.25 + o_mib, optimizer), opt)
    assert chunks.gradients is not None and 1 <= chunks.gradients < 64
    if optimizer == "adam":  # with SPRING the local energy gets the fixed memory's room too
        assert chunks.local_energy is not None and 1 <= chunks.local_energy < 64
    energy_mib, gradients_mib = temporaries(chunks)
    assert energy_mib <= 0.25 + o_mib and gradients_mib <= 0.25


def test_a_large_budget_keeps_the_whole_batch(lih):
    molecule, wavefunction, _, _, _ = lih
    opt = optim.make_optimiser(OptimConfig())
    assert walker_chunks(wavefunction, molecule, budget_config(1e5), opt) == (None, None, 1)


def test_an_explicit_walker_batch_size_wins_for_the_local_energy(lih):
    molecule, wavefunction, _, _, _ = lih
    config = budget_config(1e5)
    config = dataclasses.replace(
        config, laplacian=dataclasses.replace(config.laplacian, walker_batch_size=7)
    )
    chunks = walker_chunks(wavefunction, molecule, config, optim.make_optimiser(config.optim))
    assert chunks.local_energy == 7


def test_a_budget_that_cannot_hold_one_walker_is_a_clear_error(lih):
    molecule, wavefunction, _, _, _ = lih
    with pytest.raises(InputError, match="memory_budget_mib=0.001 cannot hold the local energy"):
        walker_chunks(
            wavefunction, molecule, budget_config(0.001), optim.make_optimiser(OptimConfig())
        )


def test_the_working_set_chunk_is_the_most_walkers_that_fit():
    assert memory.working_set_chunk(64, 0.1 * memory.MIB, 8.0) is None  # 6.4 MiB fit
    assert memory.working_set_chunk(128, 0.1 * memory.MIB, 8.0) == 80
    assert memory.working_set_chunk(128, 20.0 * memory.MIB, 8.0) == 1  # never zero walkers
    assert memory.default_working_set_mib("cpu") == memory.CPU_WORKING_SET_MIB
    assert memory.default_working_set_mib("gpu") is None


def test_the_local_energy_is_chunked_to_the_working_set(lih):
    """A working set a quarter of the batch's temporaries gives chunks whose compiled
    temporaries are near it (XLA's memory analysis of the chunked local energy at the whole
    batch; the chunk is estimated from an 8-walker probe, and the chunk loop adds a little), with
    the same energies as the whole batch at once; an explicit walker_batch_size wins."""
    molecule, wavefunction, params, _, _ = lih
    walkers = jax.random.normal(jax.random.key(5), (64, molecule.n_electrons, 3), jnp.float64)
    whole = make_local_energy_fn(wavefunction, molecule, Config())
    whole_mib = memory.temporary_bytes(whole, params, walkers) / memory.MIB
    working_set = whole_mib / 4
    config = dataclasses.replace(budget_config(None), working_set_mib=working_set)
    chunk = local_energy_chunk(wavefunction, molecule, config, 64)
    assert chunk is not None and 1 <= chunk < 64
    chunked = make_local_energy_fn(wavefunction, molecule, config, chunk)
    assert memory.temporary_bytes(chunked, params, walkers) / memory.MIB <= 1.25 * working_set
    np.testing.assert_allclose(chunked(params, walkers), whole(params, walkers), rtol=1e-10)
    roomy = dataclasses.replace(config, working_set_mib=4 * whole_mib)
    assert local_energy_chunk(wavefunction, molecule, roomy, 64) is None
    explicit = dataclasses.replace(
        config, laplacian=dataclasses.replace(config.laplacian, walker_batch_size=5)
    )
    assert local_energy_chunk(wavefunction, molecule, explicit, 64) == 5


@pytest.mark.parametrize("optimizer", ["spring", "adam", "kfac"])
def test_gradients_follow_the_working_set_except_springs_per_walker_gradients(lih, optimizer):
    """A working set below one walker's temporaries: one walker per chunk for the local energy,
    and for the gradients of Adam and KFAC; SPRING's O (B x P whatever the chunks) stays whole."""
    molecule, wavefunction, _, _, _ = lih
    config = dataclasses.replace(budget_config(None, optimizer), working_set_mib=1e-3)
    chunks = walker_chunks(wavefunction, molecule, config, optim.make_optimiser(config.optim))
    assert chunks.local_energy == 1
    assert chunks.gradients == (None if optimizer == "spring" else 1)


@pytest.mark.multidevice
def test_eval_takes_its_local_energy_chunks_on_each_devices_walkers(lih):
    """Eval's local energy with working-set chunks on 2 devices: no all-gather, and the energies
    of the whole batch on one device."""
    molecule, wavefunction, params, _, _ = lih
    walkers = jax.random.normal(jax.random.key(6), (16, molecule.n_electrons, 3), jnp.float64)
    config = dataclasses.replace(budget_config(None, batch=16, devices=2), working_set_mib=1e-3)
    _, local_energy = make_sampler_and_local_energy(wavefunction, molecule, config)
    sharded = distributed.shard_walkers(walkers, distributed.make_walker_mesh(jax.devices()[:2]))
    compiled = jax.jit(local_energy).lower(params, sharded).compile().as_text()
    assert "all-gather" not in compiled
    plain = make_local_energy_fn(wavefunction, molecule, Config())
    np.testing.assert_allclose(local_energy(params, sharded), plain(params, walkers), rtol=1e-9)


@pytest.mark.multidevice
@pytest.mark.parametrize("optimizer", ["spring", "adam", "kfac"])
def test_chunks_on_two_devices_stay_on_each_devices_walkers(lih, optimizer):
    """Walkers sharded over 2 devices, both parts chunked: the compiled local
    energy and gradient batch hold no all-gather (each device maps over its own walkers), and
    they equal the unchunked parts on one device."""
    molecule, wavefunction, params, _, _ = lih
    walkers = jax.random.normal(jax.random.key(3), (16, molecule.n_electrons, 3), jnp.float64)
    residuals = jax.random.normal(jax.random.key(4), (16,), jnp.float64)
    finite = jnp.ones(16, bool)
    # The local energy's chunks given; the gradients' from a budget (SPRING: none, as its fixed
    # O and kernel block leave no budget that both fits one walker and chunks 8).
    config = budget_config(None if optimizer == "spring" else 0.03, optimizer, batch=16, devices=2)
    config = dataclasses.replace(
        config, laplacian=dataclasses.replace(config.laplacian, walker_batch_size=3)
    )
    chunked = make_step_parts(wavefunction, molecule, config)
    chunks = walker_chunks(wavefunction, molecule, config, chunked.optimiser)
    assert chunks.groups == 2 and chunks.local_energy == 3
    assert optimizer == "spring" or chunks.gradients < 8
    plain = make_step_parts(wavefunction, molecule, budget_config(None, optimizer, batch=16))
    mesh = distributed.make_walker_mesh(jax.devices()[:2])
    sharded = distributed.shard_walkers((walkers, residuals, finite), mesh)
    for name, args in [
        ("local_energy", (params, sharded[0])),
        ("gradient_batch", (params, *sharded)),
    ]:
        compiled = jax.jit(getattr(chunked, name)).lower(*args).compile().as_text()
        assert "all-gather" not in compiled, name
    assert_trees_close(
        chunked.local_energy(params, sharded[0]), plain.local_energy(params, walkers), 1e-9
    )
    assert_trees_close(
        chunked.gradient_batch(params, *sharded),
        plain.gradient_batch(params, walkers, residuals, finite),
        1e-9,
    )

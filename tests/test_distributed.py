"""Walker mesh and sharding on 2 fake CPU devices; a 2-process jax.distributed run on loopback."""

import json
import textwrap
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from vmcjet.distributed import (
    WALKER_AXIS,
    check_batch_size,
    gather_to_host,
    global_walkers_from_local,
    initialize_distributed,
    launch_local_processes,
    make_walker_mesh,
    place_state,
    replicated_sharding,
    shard_walkers,
    walker_sharding,
)
from vmcjet.errors import InputError

pytestmark = pytest.mark.multidevice


def walkers(batch: int = 8, n_electrons: int = 2) -> np.ndarray:
    """Deterministic electron positions (batch, n_electrons, 3) in bohr."""
    return np.random.default_rng(0).normal(size=(batch, n_electrons, 3))


def energy_like(params: jax.Array, electrons: jax.Array) -> jax.Array:
    """Mean over walkers of a per-walker scalar, as the VMC energy is computed."""
    per_walker = jnp.sum(jnp.tanh(electrons * params) ** 2, axis=(1, 2))
    return jnp.mean(per_walker)


def test_mesh_spans_all_devices_with_auto_axis():
    mesh = make_walker_mesh()
    assert jax.device_count() == 2
    assert mesh.axis_names == (WALKER_AXIS,) and mesh.size == jax.device_count()
    assert mesh.axis_types == (jax.sharding.AxisType.Auto,)


def test_walkers_are_split_along_the_leading_axis():
    mesh = make_walker_mesh()
    sharded = shard_walkers({"x": walkers(), "w": np.ones(8)}, mesh)
    x = sharded["x"]
    assert x.sharding == walker_sharding(mesh)
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start)
    assert [s.data.shape for s in shards] == [(4, 2, 3), (4, 2, 3)]
    assert {s.device for s in shards} == set(jax.devices())
    np.testing.assert_array_equal(np.concatenate([s.data for s in shards]), walkers())
    np.testing.assert_array_equal(gather_to_host(sharded)["x"], walkers())


def test_jitted_mean_over_sharded_walkers_matches_unsharded():
    mesh = make_walker_mesh()
    params = jax.device_put(jnp.float64(0.7), replicated_sharding(mesh))
    electrons = shard_walkers(walkers(), mesh)
    step = jax.jit(energy_like, out_shardings=replicated_sharding(mesh))
    sharded = step(params, electrons)
    assert sharded.sharding.is_fully_replicated
    unsharded = energy_like(jnp.float64(0.7), jnp.asarray(walkers()))
    np.testing.assert_allclose(sharded, unsharded, rtol=1e-14)


def test_local_walkers_build_the_global_batch_in_one_process():
    mesh = make_walker_mesh()
    glob = global_walkers_from_local(walkers(), mesh)
    assert glob.shape == (8, 2, 3) and glob.sharding == walker_sharding(mesh)
    np.testing.assert_array_equal(gather_to_host(glob), walkers())


class Sampler(NamedTuple):
    walkers: jax.Array
    log_abs_psi: jax.Array
    width: jax.Array


class RunState(NamedTuple):
    params: dict
    sampler: Sampler
    step: jax.Array


def test_place_state_shards_per_walker_arrays_and_replicates_the_rest():
    mesh = make_walker_mesh()
    state = RunState(
        params={"w": np.ones((8, 8)), "key": jax.random.key(1)},  # (8, 8): same size as B
        sampler=Sampler(walkers(), np.zeros(8), np.float64(0.2)),
        step=np.int32(3),
    )
    placed = place_state(state, mesh)
    assert placed.sampler.walkers.sharding == walker_sharding(mesh)
    assert placed.sampler.log_abs_psi.sharding == walker_sharding(mesh)
    for leaf in (placed.params["w"], placed.params["key"], placed.sampler.width, placed.step):
        assert leaf.sharding == replicated_sharding(mesh)
    np.testing.assert_array_equal(gather_to_host(placed.sampler.walkers), walkers())
    with pytest.raises(InputError, match="batch size 7"):
        place_state(state._replace(sampler=Sampler(walkers(7), np.zeros(7), 0.2)), mesh)


def test_batch_not_divisible_by_device_count_names_both_numbers_and_the_fix():
    with pytest.raises(InputError, match=r"batch size 7 .* 2 devices.*batch_size=8"):
        shard_walkers(walkers(batch=7), make_walker_mesh())
    with pytest.raises(InputError, match="batch size 10 .* 4 devices.*batch_size=12"):
        check_batch_size(10, 4)
    with pytest.raises(InputError, match="positive"):
        check_batch_size(0, 2)
    check_batch_size(12, 4)


def test_single_process_without_environment_does_not_initialize(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    assert initialize_distributed() is False
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1234")
    with pytest.raises(InputError, match="JAX_NUM_PROCESSES, JAX_PROCESS_ID"):
        initialize_distributed()


WORKER = """
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet.checkpoint import load_checkpoint, save_checkpoint
from vmcjet.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from vmcjet.distributed import (
    gather_to_host, global_walkers_from_local, initialize_distributed, make_walker_mesh,
    place_state, replicated_sharding,
)

assert initialize_distributed()
jax.config.update("jax_enable_x64", True)
mesh = make_walker_mesh()
full = np.random.default_rng(0).normal(size=(8, 2, 3))
rank, local_batch = jax.process_index(), 8 // jax.process_count()
electrons = global_walkers_from_local(full[rank * local_batch:(rank + 1) * local_batch], mesh)

def energy_like(params, electrons):
    return jnp.mean(jnp.sum(jnp.tanh(electrons * params) ** 2, axis=(1, 2)))

replicated = replicated_sharding(mesh)
params = jax.device_put(np.float64(0.7), replicated)
mean = jax.jit(energy_like, out_shardings=replicated)(params, electrons)
like = {"sampler": {"walkers": np.zeros((8, 2, 3))}, "params": np.float64(0)}
like["key"] = jax.random.key(0)
state = place_state(load_checkpoint(sys.argv[1], like=like).state, mesh)
restored_mean = jax.jit(energy_like, out_shardings=replicated)(
    state["params"], state["sampler"]["walkers"]
)
host = gather_to_host(state)
if rank == 0:
    save_checkpoint(sys.argv[2], step=2, state=host)
print(json.dumps({
    "rank": rank, "processes": jax.process_count(), "devices": jax.device_count(),
    "mean": float(gather_to_host(mean)),
    "walkers_match": bool(np.array_equal(gather_to_host(electrons), full)),
    "restored_mean": float(gather_to_host(restored_mean)),
    "restored_sharding": str(state["sampler"]["walkers"].sharding.spec),
}))
"""


@pytest.mark.timeout(240)
@pytest.mark.parametrize("devices_per_process", [1, 2])
def test_two_processes_match_one_process_and_round_trip_a_checkpoint(tmp_path, devices_per_process):
    """Global mean of process-local walkers equals the single-process value; a checkpoint is
    restored onto the global shardings, gathered, and written back by process 0 unchanged."""
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    state = {
        "sampler": {"walkers": walkers()},
        "params": np.float64(0.7),
        "key": jax.random.key(11),
    }
    source = save_checkpoint(tmp_path / "in", step=1, state=state)
    done = launch_local_processes(
        [str(script), str(source), str(tmp_path / "out")],
        n_processes=2,
        devices_per_process=devices_per_process,
        timeout=180,
    )
    results = []
    for proc in done:
        assert proc.returncode == 0, proc.stderr[-2000:]
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    expected = float(energy_like(jnp.float64(0.7), jnp.asarray(walkers())))
    assert sorted(r["rank"] for r in results) == [0, 1]
    for r in results:
        assert r["processes"] == 2 and r["devices"] == 2 * devices_per_process
        assert r["walkers_match"] and r["restored_sharding"] == f"P('{WALKER_AXIS}',)"
        np.testing.assert_allclose([r["mean"], r["restored_mean"]], expected, rtol=1e-14)
    written = load_checkpoint(checkpoint_path(tmp_path / "out", 2), like=state).state
    np.testing.assert_array_equal(written["sampler"]["walkers"], walkers(), strict=True)
    assert written["params"] == state["params"]
    np.testing.assert_array_equal(
        jax.random.key_data(written["key"]), jax.random.key_data(state["key"])
    )

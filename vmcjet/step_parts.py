"""The parts of a train step as the config sets them up: the MCMC step, the local energy and
the gradient batch, with the walker chunks their memory allows and, with walkers sharded over
several devices, taken on each device's walkers apart.

Walker chunks (`walker_chunks`): the local energy is chunked to fit the working set (a cache-sized
chunk keeps its cost per walker flat in the batch) and the memory budget; the gradients of the
optimisers that need no per-walker gradients likewise, SPRING's only by the budget. Chunks are
per device (`grouped_by_device`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from vmcjet import ecp, mcmc, memory, optim
from vmcjet.config import Config
from vmcjet.hamiltonian import make_local_energy
from vmcjet.log_psi_gradients import log_abs_psi_fn, make_gradient_batch
from vmcjet.matmul_precision import with_matmul_precision
from vmcjet.molecule import Molecule
from vmcjet.networks import Wavefunction
from vmcjet.optim.spring import update_temporary_bytes
from vmcjet.streams import stream_key

Params = Any


def make_sampler(
    wavefunction: Wavefunction, molecule: Molecule, config: Config
) -> Callable[..., tuple[mcmc.McmcState, jax.Array]]:
    """The MCMC step `(params, sampler, *, key) -> (sampler, acceptance)` the config sets up
    (the molecule's nuclei set the per-electron widths of the nucleus-scaled proposals)."""
    return mcmc.make_mcmc_step(
        log_abs_psi_fn(wavefunction),
        moves=config.mcmc.moves,
        proposal=config.mcmc.proposal,
        nuclei=molecule.coords,
        charges=molecule.charges,
        target_acceptance=config.mcmc.target_acceptance,
    )


def make_local_energy_fn(
    wavefunction: Wavefunction,
    molecule: Molecule,
    config: Config,
    walker_batch_size: int | None = None,
) -> Callable[..., jax.Array]:
    """The local energy `(params, walkers (B, n, 3) bohr, rotations=None) -> (B,)` hartree, as the
    config sets it up, with `walker_batch_size` walkers per kinetic-energy chunk (None: all at
    once), its matrix products at `config.matmul_precision`; `rotations` (B, 3, 3) turn the ECP
    quadrature grids (`quadrature_rotations`; needed only with an ECP)."""
    local_energy = make_local_energy(
        wavefunction.apply,
        jnp.asarray(molecule.coords),
        jnp.asarray(molecule.charges),
        method=config.laplacian.method,
        chunk_size=config.laplacian.chunk_size,
        walker_batch_size=walker_batch_size,
        ecps=ecp.atom_ecps(molecule.symbols, molecule.ecp),
    )
    return with_matmul_precision(local_energy, config.matmul_precision)


def quadrature_rotations(
    molecule: Molecule, seed: int, stream: str, step: jax.Array, walkers: jax.Array
) -> jax.Array | None:
    """The rotations (B, 3, 3) of the ECP quadrature grids of one step's walkers (B, n, 3), from
    the run's random `stream` ("ecp" in training, "eval_ecp" in eval) folded with `step`, so a
    restart draws the same ones; None for a molecule without an ECP."""
    if not molecule.ecp:
        return None
    key = jax.random.fold_in(stream_key(jax.random.key(seed), stream), step)
    return ecp.random_rotations(key, walkers.shape[0], walkers.dtype)


def make_sampler_and_local_energy(
    wavefunction: Wavefunction, molecule: Molecule, config: Config
) -> tuple[Callable[..., tuple[mcmc.McmcState, jax.Array]], Callable[..., jax.Array]]:
    """The MCMC step `(params, sampler, *, key) -> (sampler, acceptance)` and the local energy
    (in the chunks of `local_energy_chunk`), as the config sets them up (used by eval)."""
    groups = walker_groups(config)
    chunk = local_energy_chunk(wavefunction, molecule, config, config.batch_size // groups)
    local_energy = make_local_energy_fn(wavefunction, molecule, config, chunk)
    if chunk is not None and groups > 1:
        local_energy = local_energy_by_device(local_energy, groups)
    return make_sampler(wavefunction, molecule, config), local_energy


class WalkerChunks(NamedTuple):
    """Walkers per chunk of the per-walker parts of a step (None: the whole batch at once), and
    the device groups the chunks are taken within."""

    local_energy: int | None
    gradients: int | None
    groups: int = 1


def walker_groups(config: Config) -> int:
    """Devices of the walker mesh (`config.devices`, else all devices of all processes)."""
    return config.devices or jax.device_count()


def _abstract_params(wavefunction: Wavefunction, config: Config) -> Params:
    """The parameters' shapes and dtypes (nothing computed)."""
    dtype = jnp.dtype(config.precision)
    return jax.eval_shape(lambda: wavefunction.init(key=jax.random.key(0), dtype=dtype))


def _abstract_walkers(molecule: Molecule, config: Config, count: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((count, molecule.n_electrons, 3), jnp.dtype(config.precision))


def _part_chunk(
    name: str,
    batch: int,
    part: memory.Part,
    config: Config,
    *,
    working_set: bool,
    fixed_bytes: float = 0.0,
) -> int | None:
    """The smaller of the walker chunks of `part` that fit the working set (when `working_set`:
    `config.working_set_mib`, by default `memory.default_working_set_mib` of the platform) and
    the memory budget (`config.memory_budget_mib`, with `fixed_bytes` it cannot reduce); None:
    the whole batch at once."""
    mib = None
    if working_set:
        mib = config.working_set_mib or memory.default_working_set_mib(jax.default_backend())
    if mib is None and config.memory_budget_mib is None:
        return None
    per_walker = memory.bytes_per_walker(part)
    chunks = []
    if mib is not None:
        chunks.append(memory.working_set_chunk(batch, per_walker, mib))
    if config.memory_budget_mib is not None:
        chunks.append(
            memory.walker_chunk(
                name,
                batch,
                part,
                config.memory_budget_mib,
                fixed_bytes=fixed_bytes,
                per_walker_bytes=per_walker,
            )
        )
    return min((c for c in chunks if c is not None), default=None)


def local_energy_chunk(
    wavefunction: Wavefunction, molecule: Molecule, config: Config, batch: int
) -> int | None:
    """Walkers per local-energy chunk for `batch` walkers on one device: an explicit
    `laplacian.walker_batch_size`, else from the working set and the memory budget
    (`_part_chunk`); None: the whole batch at once.

    Raises:
        InputError: when the budget cannot hold one walker.
    """
    if config.laplacian.walker_batch_size is not None:
        return config.laplacian.walker_batch_size
    params = _abstract_params(wavefunction, config)

    def energy_part(chunk: int, count: int) -> tuple[Callable[..., Any], tuple]:
        energy = make_local_energy_fn(wavefunction, molecule, config, chunk)
        walkers = _abstract_walkers(molecule, config, count)
        rotations = jax.ShapeDtypeStruct((count, 3, 3), walkers.dtype) if molecule.ecp else None
        return energy, (params, walkers, rotations)

    return _part_chunk("local energy", batch, energy_part, config, working_set=True)


def walker_chunks(
    wavefunction: Wavefunction, molecule: Molecule, config: Config, optimiser: optim.Optimiser
) -> WalkerChunks:
    """Walkers per chunk of the local energy (`local_energy_chunk`) and of the gradients: from
    the working set for the optimisers that need no per-walker gradients O (Adam, KFAC: chunks
    keep their cost per walker flat in the batch), and from the memory budget for all (SPRING's
    O is B x P whatever the chunks, and chunking it was slower at every size measured;
    docs/benchmarks.md "Cache-sized walker chunks"). The budget and the chunks are per device:
    with walkers sharded over G devices, each device holds B / G walkers and takes its chunks
    from them (`grouped_by_device`).

    Raises:
        InputError: when the budget cannot hold one walker of a part.
    """
    groups = walker_groups(config)
    batch = config.batch_size // groups
    local_energy = local_energy_chunk(wavefunction, molecule, config, batch)
    dtype = jnp.dtype(config.precision)
    params = _abstract_params(wavefunction, config)

    def gradients_part(chunk: int, count: int) -> tuple[Callable[..., Any], tuple]:
        vector = jax.ShapeDtypeStruct((count,), dtype)
        finite = jax.ShapeDtypeStruct((count,), jnp.bool_)
        gradient_batch = make_gradient_batch(wavefunction, optimiser.needs, chunk)
        return gradient_batch, (params, _abstract_walkers(molecule, config, count), vector, finite)

    per_walker_grads = optim.PER_WALKER_GRADS in optimiser.needs
    fixed = 0  # SPRING: O (this device's rows) and its update's temporaries (B x B, all walkers)
    if per_walker_grads:
        size = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
        fixed = batch * size * dtype.itemsize + update_temporary_bytes(config.batch_size)
    gradients = _part_chunk(
        "gradients",
        batch,
        gradients_part,
        config,
        working_set=not per_walker_grads,
        fixed_bytes=fixed,
    )
    return WalkerChunks(local_energy, gradients, groups)


def _split_groups(tree: Any, groups: int) -> Any:
    """Leading axis B of every leaf as (groups, B / groups): group g = the walkers of device g."""
    return jax.tree_util.tree_map(lambda x: x.reshape(groups, -1, *x.shape[1:]), tree)


def _join_groups(tree: Any) -> Any:
    """The inverse of `_split_groups`: (groups, B / groups, ...) leaves back to (B, ...)."""
    return jax.tree_util.tree_map(lambda x: x.reshape(-1, *x.shape[2:]), tree)


def grouped_by_device(
    local_energy: Callable[..., jax.Array],
    gradient_batch: Callable[..., optim.GradientBatch],
    groups: int,
) -> tuple[Callable[..., jax.Array], Callable[..., optim.GradientBatch]]:
    """The local energy and gradient-batch functions applied to each device's walkers apart.

    With walkers sharded over `groups` devices, a `lax.map` over chunks of the whole batch makes
    XLA gather every walker onto every device (the chunks cut across devices). Splitting the batch
    axis into (groups, B / groups) first, in device order, and vmapping over the groups keeps each
    device's chunks on its own walkers (no all-gather in the compiled step, tests/test_gradients).
    Per-walker outputs are joined back to (B, ...); the energy gradient, a mean over each group's
    walkers, is averaged over the equal groups. A group without a finite walker makes the step's
    gradient non-finite, so the step is skipped (as for a batch without one).
    """

    def batch(params, walkers, residuals, finite) -> optim.GradientBatch:
        split = _split_groups((walkers, residuals, finite), groups)
        out = jax.vmap(gradient_batch, in_axes=(None, 0, 0, 0))(params, *split)
        return optim.GradientBatch(
            residuals=_join_groups(out.residuals),
            per_walker_grads=_join_groups(out.per_walker_grads),
            gradient=jax.tree_util.tree_map(lambda g: jnp.mean(g, axis=0), out.gradient),
            layers=_join_groups(out.layers),
        )

    return local_energy_by_device(local_energy, groups), batch


def local_energy_by_device(
    local_energy: Callable[..., jax.Array], groups: int
) -> Callable[..., jax.Array]:
    """`local_energy` applied to each device's walkers apart (see `grouped_by_device`)."""

    def energy(params: Params, walkers: jax.Array, rotations: jax.Array | None = None) -> jax.Array:
        per_group = jax.vmap(local_energy, in_axes=(None, 0, 0))(
            params, *_split_groups((walkers, rotations), groups)
        )
        return _join_groups(per_group)

    return energy


class StepParts(NamedTuple):
    """The functions a train step is made of (`make_step_parts`)."""

    optimiser: optim.Optimiser
    sample: Callable[..., tuple[mcmc.McmcState, jax.Array]]
    local_energy: Callable[..., jax.Array]
    gradient_batch: Callable[..., optim.GradientBatch]


def make_step_parts(wavefunction: Wavefunction, molecule: Molecule, config: Config) -> StepParts:
    """The optimiser, sampler, local energy and gradient batch of a train step, with the walker
    chunks of `walker_chunks`, taken per device when chunked over several devices; all but the
    sampler with their matrix products at `config.matmul_precision`."""
    optimiser = optim.make_optimiser(config.optim)
    chunks = walker_chunks(wavefunction, molecule, config, optimiser)
    local_energy = make_local_energy_fn(wavefunction, molecule, config, chunks.local_energy)
    gradient_batch = with_matmul_precision(
        make_gradient_batch(wavefunction, optimiser.needs, chunks.gradients),
        config.matmul_precision,
    )
    optimiser = optimiser._replace(
        update=with_matmul_precision(optimiser.update, config.matmul_precision)
    )
    chunked = chunks.local_energy is not None or chunks.gradients is not None
    if chunked and chunks.groups > 1:
        local_energy, gradient_batch = grouped_by_device(
            local_energy, gradient_batch, chunks.groups
        )
    sample = make_sampler(wavefunction, molecule, config)
    return StepParts(optimiser, sample, local_energy, gradient_batch)

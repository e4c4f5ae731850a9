"""The VMC optimisation loop: a pure step function and a generator of (step, state, stats).

One optimisation step t, with key_t = fold_in(root_key, t) (so a step's randomness depends only on
the seed and t: exact restarts, walkers independent of the device count):
    1. `mcmc.moves` Metropolis moves of every walker on |psi|^2;
    2. local energies E_L (hartree) of the walkers; walkers whose E_L or log|psi| is non-finite are
       excluded from the energy and the gradient, and counted;
    3. per-walker gradients of log|psi| w.r.t. the parameters and residuals of the clipped local
       energies (clipping only for the gradient; the reported energy is unclipped);
    4. the optimiser's update (SPRING, KFAC or Adam; KFAC also reads per-layer records, see
       `layer_records`); an update that is not finite is skipped (parameters and optimiser state
       unchanged) and counted.
The generator `optimise` only runs steps; I/O (stats, checkpoints, signals) belongs to the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from vmcjet import ecp, mcmc, memory, optim
from vmcjet.config import Config
from vmcjet.hamiltonian import make_local_energy, over_walkers
from vmcjet.matmul_precision import with_matmul_precision
from vmcjet.molecule import Molecule
from vmcjet.networks import Wavefunction
from vmcjet.networks.layers import Tape, dense_layer_names, named_leaves
from vmcjet.optim.spring import update_temporary_bytes
from vmcjet.streams import stream_key

Params = Any


class TrainState(NamedTuple):
    """Everything a run needs to continue exactly (this is what a checkpoint stores).

    Attributes:
        params: network parameters (pytree).
        opt_state: optimiser state (pytree).
        sampler: MCMC state (walkers (B, n, 3) bohr, their log|psi|, proposal width).
        step: number of optimisation steps done, int32 scalar.
    """

    params: Params
    opt_state: Any
    sampler: mcmc.McmcState
    step: jax.Array


class StepStats(NamedTuple):
    """Scalars of one step: energy (hartree), variance (hartree^2), acceptance, width (bohr),
    nonfinite (walkers excluded), skipped (1 if the update was skipped). A step without any
    finite walker, or with a non-finite energy or variance, is skipped and its energy and
    variance are NaN (never the 0 of an empty mean)."""

    energy: jax.Array
    variance: jax.Array
    acceptance: jax.Array
    width: jax.Array
    nonfinite: jax.Array
    skipped: jax.Array


def log_abs_psi_fn(wavefunction: Wavefunction) -> Callable[[Params, jax.Array], jax.Array]:
    """(params, electrons (n, 3)) -> log|psi| scalar."""
    return lambda params, electrons: wavefunction.apply(params, electrons)[1]


def per_walker_gradients(
    wavefunction: Wavefunction, walker_batch_size: int | None = None
) -> Callable[..., Params]:
    """(params, walkers (B, n, 3), keep (B,) bool = all) -> d log|psi| / d params, with a leading
    B on each leaf; rows of walkers not kept are zero (computed as the gradient of 0 * log|psi|,
    so no masked copy of the B x P result is made: the walker must have a finite log|psi|).

    Args:
        walker_batch_size: walkers per `lax.map` chunk (None: all at once with vmap).
    """
    log_psi = log_abs_psi_fn(wavefunction)

    def one(params: Params, electrons: jax.Array, keep: jax.Array) -> Params:
        return jax.grad(lambda p: jnp.where(keep, 1.0, 0.0) * log_psi(p, electrons))(params)

    def gradients(params: Params, walkers: jax.Array, keep: jax.Array | None = None) -> Params:
        keep = jnp.ones(walkers.shape[:1], bool) if keep is None else keep
        return over_walkers(lambda args: one(params, *args), (walkers, keep), walker_batch_size)

    return gradients


def energy_gradient_fn(
    wavefunction: Wavefunction, walker_batch_size: int | None = None
) -> Callable[[Params, jax.Array, jax.Array], Params]:
    """(params, walkers (B, n, 3), residuals (B,)) -> 2 mean_b r_b d log|psi(r_b)| / d params.

    One backward pass of sum_b r_b log|psi(r_b)| per chunk of walkers (a scan over full chunks,
    then the remainder), so the per-walker gradients (B x P) are never formed.
    """
    batch_log_psi = jax.vmap(log_abs_psi_fn(wavefunction), in_axes=(None, 0))

    def weighted_sum(params: Params, walkers: jax.Array, residuals: jax.Array) -> jax.Array:
        return jnp.sum(jax.lax.stop_gradient(residuals) * batch_log_psi(params, walkers))

    chunk_gradient = jax.grad(weighted_sum)

    def gradient(params: Params, walkers: jax.Array, residuals: jax.Array) -> Params:
        batch = walkers.shape[0]
        chunk = min(walker_batch_size or batch, batch)
        full = batch - batch % chunk
        total = chunk_gradient(params, walkers[full:], residuals[full:])

        def add_chunk(acc: Params, chunk_args: tuple[jax.Array, jax.Array]) -> tuple[Params, None]:
            return jax.tree_util.tree_map(jnp.add, acc, chunk_gradient(params, *chunk_args)), None

        chunks = (
            walkers[:full].reshape(full // chunk, chunk, *walkers.shape[1:]),
            residuals[:full].reshape(full // chunk, chunk),
        )
        total, _ = jax.lax.scan(add_chunk, total, chunks)
        return jax.tree_util.tree_map(lambda g: 2.0 * g / batch, total)

    return gradient


def layer_records(
    wavefunction: Wavefunction, walker_batch_size: int | None = None
) -> Callable[[Params, jax.Array, jax.Array], optim.LayerRecords]:
    """(params, walkers (B, n, 3), keep (B,) bool) -> `optim.LayerRecords` (for KFAC).

    Per walker ONE `jax.vjp` of log|psi| with respect to the taps of a `Tape` (zero arrays added
    to the dense layers' outputs, see `vmcjet.networks.layers`) and to the leaves outside the
    dense layers gives every layer's output gradients g and those leaves' gradients; the tape's
    recorded inputs are the vjp's auxiliary output. Walkers not kept get zero records (their
    cotangent is 0). Vmapped over walkers, or `lax.map` chunks of `walker_batch_size`.

    Raises:
        ValueError: when a dense layer of the params (`dense_layer_names`) is not recorded.
    """

    def output_shapes(params: Params, electrons: jax.Array) -> dict[str, jax.Array]:
        tape = Tape()
        wavefunction.apply(params, electrons, tape)
        return tape.outputs

    def one(params: Params, electrons: jax.Array, keep: jax.Array, shapes: dict) -> tuple:
        flat, treedef = jax.tree_util.tree_flatten(params)
        paths = list(named_leaves(params))
        owned = tuple(f"{name}." for name in shapes)
        other = {p: leaf for p, leaf in zip(paths, flat, strict=True) if not p.startswith(owned)}

        def log_psi(taps: dict, other_leaves: dict) -> tuple[jax.Array, dict]:
            leaves = [other_leaves.get(p, leaf) for p, leaf in zip(paths, flat, strict=True)]
            tape = Tape(taps)
            log_abs = wavefunction.apply(treedef.unflatten(leaves), electrons, tape)[1]
            return log_abs, tape.inputs

        taps = {name: jnp.zeros(s.shape, s.dtype) for name, s in shapes.items()}
        log_abs, pullback, inputs = jax.vjp(log_psi, taps, other, has_aux=True)
        weight = jnp.where(keep, 1.0, 0.0).astype(log_abs.dtype)
        tap_grads, other_grads = pullback(weight)
        inputs = {name: a * weight for name, a in inputs.items()}
        grads = {name: g.reshape(-1, g.shape[-1]) for name, g in tap_grads.items()}
        return inputs, grads, other_grads

    def records(params: Params, walkers: jax.Array, keep: jax.Array) -> optim.LayerRecords:
        shapes = jax.eval_shape(output_shapes, params, walkers[0])
        missing = sorted(set(dense_layer_names(params)) - set(shapes))
        if missing:
            raise ValueError(f"dense layers not recorded by the network's tape: {missing}")
        out = over_walkers(
            lambda args: one(params, *args, shapes), (walkers, keep), walker_batch_size
        )
        return optim.LayerRecords(*out)

    return records


def masked_moments(values: jax.Array, finite: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of `values` (B,) over the entries where `finite` (B,) is True."""
    count = jnp.maximum(jnp.sum(finite.astype(values.dtype)), 1.0)
    safe = jnp.where(finite, values, 0.0)
    mean = jnp.sum(safe) / count
    variance = jnp.sum(jnp.where(finite, (values - mean) ** 2, 0.0)) / count
    return mean, variance


def _tree_all_finite(tree: Any) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def _energy_residuals(local_energies: jax.Array, finite: jax.Array, clip_width: float) -> jax.Array:
    """Clipped, centred local energies for the gradient; zero for excluded walkers. Shape (B,)."""
    mean, _ = masked_moments(local_energies, finite)
    filled = jnp.where(finite, local_energies, mean)
    clipped = optim.clip_local_energies(filled, clip_width)
    centred = clipped - masked_moments(clipped, finite)[0]
    return jnp.where(finite, centred, 0.0)


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


def make_gradient_batch(
    wavefunction: Wavefunction, needs: frozenset[str], walker_batch_size: int | None = None
) -> Callable[[Params, jax.Array, jax.Array, jax.Array], optim.GradientBatch]:
    """`(params, walkers (B, n, 3), residuals (B,), finite (B,) bool) -> GradientBatch` with the
    fields in `needs`. Walkers left out (finite False) are evaluated at a finite walker's place
    and weighted by zero, so their non-finite values never reach the gradients; if no walker is
    finite the gradients are not finite either, and the train step skips the update."""
    per_walker = per_walker_gradients(wavefunction, walker_batch_size)
    gradient = energy_gradient_fn(wavefunction, walker_batch_size)
    records = layer_records(wavefunction, walker_batch_size)

    def batch(params, walkers, residuals, finite) -> optim.GradientBatch:
        stand_in = walkers[jnp.argmax(finite)]
        safe = jnp.where(finite[:, None, None], walkers, stand_in[None])
        fields = {}
        if optim.PER_WALKER_GRADS in needs:
            fields["per_walker_grads"] = per_walker(params, safe, finite)
        if optim.LAYERS in needs:
            fields["layers"] = records(params, safe, finite)
        if optim.GRADIENT in needs:
            fields["gradient"] = (
                optim.records_gradient(fields["layers"], residuals, params)
                if optim.LAYERS in needs
                else gradient(params, safe, residuals)
            )
        return optim.GradientBatch(residuals, **fields)

    return batch


def make_train_step(
    wavefunction: Wavefunction, molecule: Molecule, config: Config
) -> Callable[..., tuple[TrainState, StepStats]]:
    """Returns `step(state, *, root_key) -> (state, stats)`, pure and jittable."""
    optimiser, sample, local_energy, gradient_batch = make_step_parts(
        wavefunction, molecule, config
    )

    def step(state: TrainState, *, root_key: jax.Array) -> tuple[TrainState, StepStats]:
        key = jax.random.fold_in(root_key, state.step)
        sampler, acceptance = sample(state.params, state.sampler, key=key)
        rotations = quadrature_rotations(molecule, config.seed, "ecp", state.step, sampler.walkers)
        energies = local_energy(state.params, sampler.walkers, rotations)
        finite = jnp.isfinite(energies) & jnp.isfinite(sampler.log_abs_psi)
        energy, variance = masked_moments(energies, finite)
        residuals = _energy_residuals(energies, finite, config.optim.clip_width)
        batch = gradient_batch(state.params, sampler.walkers, residuals, finite)
        updates, opt_state = optimiser.update(batch, state.opt_state, state.params)
        # No finite walker (or a non-finite energy or variance): nothing was measured, skip.
        measured = jnp.any(finite) & jnp.isfinite(energy) & jnp.isfinite(variance)
        ok = measured & _tree_all_finite(updates) & _tree_all_finite(opt_state)
        params = jax.tree_util.tree_map(lambda p, u: jnp.where(ok, p + u, p), state.params, updates)
        opt_state = jax.tree_util.tree_map(
            lambda new, old: jnp.where(ok, new, old), opt_state, state.opt_state
        )
        new_state = TrainState(params, opt_state, sampler, state.step + 1)
        stats = StepStats(
            energy=jnp.where(measured, energy, jnp.nan),
            variance=jnp.where(measured, variance, jnp.nan),
            acceptance=acceptance,
            width=sampler.width,
            nonfinite=jnp.sum(~finite),
            skipped=(~ok).astype(jnp.int32),
        )
        return new_state, stats

    return step


def optimise(
    step_fn: Callable[..., tuple[TrainState, StepStats]],
    state: TrainState,
    *,
    root_key: jax.Array,
    total_steps: int,
) -> Iterator[tuple[int, TrainState, StepStats]]:
    """Runs steps until `total_steps` are done, yielding (step index, state after it, stats)."""
    step = int(state.step)
    while step < total_steps:
        state, stats = step_fn(state, root_key=root_key)
        yield step, state, stats
        step += 1

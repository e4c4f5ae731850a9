"""Walker chunks chosen from one memory budget (the config key `memory_budget_mib`).

The per-walker parts of a training step that hold the most memory (the local energy, the
gradients of log|psi|) map a batch of walkers to per-walker results, and the temporary memory XLA
needs for it grows linearly with the number of walkers evaluated at once. A part is therefore
evaluated in chunks of c walkers (`jax.lax.map` or a scan) when the whole batch would not fit:

    w = (XLA temporaries of the part compiled for PROBE_WALKERS walkers) / PROBE_WALKERS,
    c = floor((budget - fixed) / w)   if fixed + B w > budget, else the whole batch at once,

where `fixed` is memory the chunking cannot reduce (SPRING's per-walker gradients O, B x P, and
its update's B x B kernel and one block). The sampler is not chunked (its temporaries are a few
MiB: one log|psi| per walker). The budget is for one device holding the whole batch. The
chosen c is then checked by compiling the part for all B walkers in chunks of c and lowered until
XLA's compiled memory analysis (`temporary_bytes`) says it fits. Each compile costs a few seconds,
once per run, and only when a budget is set.

Apart from any budget, the local energy (and the gradients of Adam and KFAC, `vmcjet.step_parts`)
is evaluated in chunks whose temporaries fit a working set (`working_set_mib`; by default
`CPU_WORKING_SET_MIB` on CPUs, none elsewhere): on this machine's CPUs a chunk that stays near
the caches is up to 1.8x faster per walker than the whole batch at once, and its cost per walker
no longer grows with the batch (docs/benchmarks.md, "Cache-sized walker chunks"). It needs one
probe compile, no check at the full batch: the working set is a speed setting, not a limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax

from vmcjet.errors import InputError

MIB = 2**20
PROBE_WALKERS = 8
# Local-energy temporaries per walker chunk on CPUs (MiB): measured fastest of 4-64 MiB for LiH
# and N2 (a quarter of this machine's 32 MiB L3 cache; docs/benchmarks.md).
CPU_WORKING_SET_MIB = 8.0


def temporary_bytes(fn: Callable[..., Any], *args: Any) -> int:
    """XLA's temporary buffer size (bytes) of `jax.jit(fn)` compiled for `args` (arrays or
    `jax.ShapeDtypeStruct`s)."""
    return int(jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes)


Part = Callable[[int, int], tuple[Callable[..., Any], tuple]]


def bytes_per_walker(part: Part) -> float:
    """XLA temporaries (bytes) per walker of `part` compiled for PROBE_WALKERS walkers at once."""
    fn, args = part(PROBE_WALKERS, PROBE_WALKERS)
    return temporary_bytes(fn, *args) / PROBE_WALKERS


def default_working_set_mib(platform: str) -> float | None:
    """The local energy's working set (MiB) when `working_set_mib` is not set: measured on CPUs;
    None (the whole batch at once) on accelerators, whose speed needs large batches."""
    return CPU_WORKING_SET_MIB if platform == "cpu" else None


def working_set_chunk(batch: int, per_walker_bytes: float, working_set_mib: float) -> int | None:
    """The most walkers whose temporaries fit in the working set (at least one walker); None
    when the whole batch fits."""
    per_walker = max(per_walker_bytes, 1.0)
    if batch * per_walker <= working_set_mib * MIB:
        return None
    return max(1, math.floor(working_set_mib * MIB / per_walker))


def walker_chunk(
    name: str,
    batch: int,
    part: Part,
    budget_mib: float,
    *,
    fixed_bytes: float = 0.0,
    per_walker_bytes: float | None = None,
) -> int | None:
    """Walkers per chunk so that fixed bytes plus the part's temporaries fit in the budget.

    The chunk estimated from the probe is checked by compiling the part for the whole batch in
    chunks of that size, and made smaller until it fits (the remainder chunk of `lax.map` and
    the chunk loop add a little to c times the probe's bytes per walker).

    Args:
        name: the part, for the error message.
        batch: walkers B of the step.
        part: (chunk c, walkers m) -> (fn, args): the part evaluated in chunks of c walkers and
            its (abstract) arguments for m walkers.
        budget_mib: the memory budget, MiB.
        fixed_bytes: memory the chunks cannot reduce, bytes.
        per_walker_bytes: the part's `bytes_per_walker` when already probed.

    Returns:
        None when the whole batch fits at once (by the probe's estimate), else the chunk size.

    Raises:
        InputError: when not even one walker fits.
    """
    budget = budget_mib * MIB

    def used_bytes(chunk: int, count: int) -> float:
        fn, args = part(chunk, count)
        return temporary_bytes(fn, *args)

    per_walker = bytes_per_walker(part) if per_walker_bytes is None else per_walker_bytes
    if fixed_bytes + batch * per_walker <= budget:
        return None
    chunk = min(batch, math.floor((budget - fixed_bytes) / max(per_walker, 1.0)))
    while chunk >= 1:
        used = used_bytes(chunk, batch)
        if fixed_bytes + used <= budget:
            return chunk
        chunk = min(chunk - 1, math.floor(chunk * (budget - fixed_bytes) / used))
    need = (fixed_bytes + per_walker) / MIB
    raise InputError(
        f"memory_budget_mib={budget_mib:g} cannot hold the {name} of even one walker "
        f"({need:.1f} MiB needed, batch {batch}); raise memory_budget_mib or use a smaller "
        "network or batch_size"
    )

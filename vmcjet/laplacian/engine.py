"""The jaxpr interpreter of the collapsed forward Laplacian and its entry point.

`linearize_jaxpr` walks a jaxpr once on primal values (the *primal stage*): equations that do not
depend on x are evaluated as they are, the others go through their rule (that of the active
registry, else its fallback: `registry.rule_or_fallback`), which also returns a `push`. The
returned `push` then maps input stacks to output stacks by calling those pushes in order.
`forward_laplacian` seeds the input stack with the directions and, when chunking, calls `push`
inside a `lax.fori_loop`, so that every primal intermediate (and every residual such as f'(x)) is
computed once, outside the loop. With electron sparsity the sparse stacks are also computed once,
for all electrons, outside the loop: inside it each densification (`rules_sparse.intercept`) takes
the current block of electrons from them.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from vmcjet.errors import InputError
from vmcjet.laplacian import rules_sparse
from vmcjet.laplacian._jax_internals import Jaxpr, Literal, bind_equation
from vmcjet.laplacian.registry import rule_or_fallback
from vmcjet.laplacian.rules import LazyPush, Rows, materialize

Triple = tuple[jax.Array, jax.Array, jax.Array]


def _inexact(var) -> bool:
    return jnp.issubdtype(var.aval.dtype, jnp.inexact)


def _is_dependent(var, dependent: set) -> bool:
    return not isinstance(var, Literal) and var in dependent


def linearize_jaxpr(
    jaxpr: Jaxpr,
    consts: Sequence,
    primals: Sequence,
    dependent: Sequence[bool],
    dense_outputs: bool = True,
) -> tuple[list, list[bool], Callable[[list], list]]:
    """Primal stage of the collapsed forward Laplacian over one jaxpr.

    Args:
        jaxpr: an open jaxpr.
        consts: values of its constvars (never differentiated).
        primals: values of its invars.
        dependent: which invars depend on x (those may receive stacks in `push`).
        dense_outputs: materialise lazy output stacks (False only for calls inlined in a jaxpr).

    Returns:
        (out_primals, out_dependent, push) where `push(in_stacks) -> out_stacks` maps one stack of
        shape (K + 1,) + invar shape (or None, or a lazy stack such as `rules.Rows`) per invar to
        one stack (or None) per outvar.
    """
    env: dict = {}
    depends: set = set()
    steps: list = []
    read = lambda v: v.val if isinstance(v, Literal) else env[v]
    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, primals, strict=True))
    depends.update(v for v, d in zip(jaxpr.invars, dependent, strict=True) if d)
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        flags = [_is_dependent(v, depends) for v in eqn.invars]
        if any(flags) and any(_inexact(v) for v in eqn.outvars):
            rule = rule_or_fallback(eqn.primitive)
            outs, step = rule(invals, flags, **eqn.params)
            steps.append((eqn.invars, eqn.outvars, step))
            depends.update(v for v in eqn.outvars if _inexact(v))
        else:
            outs = bind_equation(eqn, invals)
        env.update(zip(eqn.outvars, outs, strict=True))

    def push(in_stacks: list) -> list:
        stacks = {v: s for v, s in zip(jaxpr.invars, in_stacks, strict=True) if s is not None}
        for invars, outvars, step in steps:
            ins = [None if isinstance(v, Literal) else stacks.get(v) for v in invars]
            if all(s is None for s in ins):
                continue
            if not isinstance(step, LazyPush):
                ins = [materialize(s) for s in ins]
            for v, s in zip(outvars, step(ins), strict=True):
                if s is not None and _inexact(v):
                    stacks[v] = s
        finish = materialize if dense_outputs else (lambda stack: stack)
        return [None if isinstance(v, Literal) else finish(stacks.get(v)) for v in jaxpr.outvars]

    out_dependent = [_is_dependent(v, depends) for v in jaxpr.outvars]
    return [read(v) for v in jaxpr.outvars], out_dependent, push


def _seed(directions: jax.Array) -> Rows:
    """Input stack: the directions as first-order rows and a zero second-order row, held apart
    (`Rows`) until a rule without Rows support materialises them."""
    return Rows(directions, jnp.zeros(directions.shape[1:], directions.dtype))


def _split(stack, value: jax.Array, block: int) -> tuple[jax.Array, jax.Array]:
    """An output stack (block + 1 rows, or None) as its `block` first-order rows and its
    second-order row."""
    if stack is None:
        return jnp.zeros((block,) + value.shape, value.dtype), jnp.zeros_like(value)
    return stack[:-1], stack[-1]


def _chunked(step: Callable, blocks: int, block: int, value: jax.Array):
    """Pushes block `i` of `block` directions (`step(i)` -> output stack of block + 1 rows) for
    i < blocks in a fori_loop; the second-order parts add up."""

    def body(i, carry):
        firsts, second = carry
        first_i, second_i = _split(step(i), value, block)
        return lax.dynamic_update_index_in_dim(firsts, first_i, i, 0), second + second_i

    init = (jnp.zeros((blocks, block) + value.shape, value.dtype), jnp.zeros_like(value))
    firsts, second = lax.fori_loop(0, blocks, body, init)
    return firsts.reshape((blocks * block,) + value.shape), second


def padded_blocks(array: jax.Array, block: int) -> jax.Array:
    """`array` (K, ...) zero-padded to whole blocks, shape (ceil(K / block), block, ...)."""
    blocks = -(-array.shape[0] // block)
    pad = jnp.zeros((blocks * block - array.shape[0],) + array.shape[1:], array.dtype)
    return jnp.concatenate([array, pad]).reshape((blocks, block) + array.shape[1:])


def _dense_chunks(push: Callable, directions: jax.Array, value: jax.Array, chunk: int):
    """Directions `chunk` at a time (zero-padded to whole chunks)."""
    grouped = padded_blocks(directions, chunk)
    step = lambda i: push([_seed(grouped[i])])[0]
    first, second = _chunked(step, grouped.shape[0], chunk, value)
    return first[: directions.shape[0]], second


def _sparse_frontier(push: Callable, x: jax.Array) -> list[rules_sparse.Sparse]:
    """The Sparse stacks that `push` densifies, in order, for all electrons at once.

    Traced as a jit whose only outputs are those stacks, so only the sparse part is computed.
    """
    frontier = []

    def record(s):
        frontier.append(s)
        return s

    def sparse_part(x):
        with rules_sparse.intercept(record):
            push([rules_sparse.seed(x)])
        return [s.rows for s in frontier]

    rows = jax.jit(sparse_part)(x)
    return [s.with_rows(r) for s, r in zip(frontier, rows, strict=True)]


def _sparse_chunks(push: Callable, x: jax.Array, value: jax.Array, chunk: int | None):
    """Electron-sparse stacks: the sparse part once for all electrons, outside the loop; each
    densification then yields `chunk // 3` electrons at a time inside it (all for None)."""
    if x.ndim != 2 or x.shape[1] != 3:
        raise InputError(f"electron_sparsity=True needs x of shape (n, 3), got {x.shape}")
    n = x.shape[0]
    if chunk is None or chunk >= 3 * n:
        return _split(push([rules_sparse.seed(x)])[0], value, 3 * n)
    count = max(1, chunk // 3)
    blocks = -(-n // count)
    frontier = _sparse_frontier(push, x)

    def step(i):
        queue = iter(frontier)

        def replay(s):
            full = next(queue)
            first_block = (i == 0).astype(full.rows.dtype)  # the Laplacian row counts once
            rows = jnp.concatenate([full.rows[:-1], full.rows[-1:] * first_block])
            return rules_sparse.Sparse(rows, full.axes, count, i * count)

        with rules_sparse.intercept(replay):  # the loop's own sparse part is then dead code
            return push([rules_sparse.seed(x, i * count, count)])[0]

    first, second = _chunked(step, blocks, 3 * count, value)
    return first[: 3 * n], second


def check_directions(directions, x: jax.Array) -> jax.Array:
    if directions is None:
        return jnp.eye(x.size, dtype=x.dtype).reshape((x.size,) + x.shape)
    directions = jnp.asarray(directions)
    if directions.ndim < 1 or directions.shape[1:] != x.shape:
        raise InputError(
            f"directions has shape {directions.shape}, expected (K,) + x.shape = (K,) + {x.shape}"
        )
    return directions.astype(x.dtype)


def forward_laplacian(
    f: Callable[[jax.Array], jax.Array],
    *,
    chunk_size: int | None = None,
    directions: jax.Array | None = None,
    electron_sparsity: bool = False,
) -> Callable[[jax.Array], Triple]:
    """Collapsed forward Laplacian of `f`: one forward pass for value, Jacobian and Laplacian.

    Args:
        f: function of one floating-point array x (any shape, D entries) returning one array.
        chunk_size: if given, process this many directions at a time in a `lax.fori_loop`
            (memory scales with `chunk_size` instead of K; the results are the same). On CPU a
            small chunk (about 6) is usually also faster: the working set stays in cache.
        directions: optional array V of shape (K,) + x.shape; the default is the D unit vectors.
        electron_sparsity: for x = electron positions (n, 3) and the unit vectors, carry 3 (or 6)
            first-order rows for per-electron (or pair) intermediates instead of 3n, until a
            primitive without a sparse rule densifies them (`rules_sparse`). Same results. With
            `chunk_size`, the sparse part runs once and the dense part `chunk_size // 3`
            electrons at a time.

    Returns:
        A function `x -> (value, first, second)`. Without `directions`: `first` is the Jacobian,
        shape value.shape + x.shape (the gradient for scalar f), and `second` is the Laplacian,
        shape value.shape. With `directions`: `first` has shape (K,) + value.shape (the
        directional derivatives) and `second` is sum_k d2f[v_k, v_k], shape value.shape.
    """
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise InputError(f"chunk_size={chunk_size!r} must be a positive integer or None")
    if electron_sparsity and directions is not None:
        raise InputError("electron_sparsity=True works with the unit vectors: use directions=None")

    def apply(x: jax.Array) -> Triple:
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise InputError(f"x has dtype {x.dtype}; pass a floating-point array (e.g. float64)")
        vectors = check_directions(directions, x)
        closed = jax.make_jaxpr(f)(jax.ShapeDtypeStruct(x.shape, x.dtype))
        if len(closed.jaxpr.outvars) != 1:
            raise InputError("f must return a single array; wrap pytree outputs in a function")
        (value,), _, push = linearize_jaxpr(closed.jaxpr, closed.consts, [x], [True])
        num = vectors.shape[0]
        if electron_sparsity:
            first, second = _sparse_chunks(push, x, value, chunk_size)
        elif chunk_size is None or chunk_size >= num:
            first, second = _split(push([_seed(vectors)])[0], value, num)
        else:
            first, second = _dense_chunks(push, vectors, value, chunk_size)
        if directions is None:
            lead = tuple(range(x.ndim))
            first = jnp.moveaxis(
                first.reshape(x.shape + value.shape), lead, [-1 - d for d in lead][::-1]
            )
        return value, first, second

    return apply

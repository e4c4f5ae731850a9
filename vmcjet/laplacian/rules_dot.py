"""dot_general, with lazy broadcast and concatenate stacks so mean-field layers stay cheap.

Take a mean-field layer written as concat([h, broadcast(mean_up), broadcast(mean_down), g]) @ W
(the FermiNet paper's form; vmcjet's own FermiNet layer already multiplies the means before
broadcasting and concatenates only per-electron pieces, vmcjet/networks/ferminet.py).
Materialising the stack of the concatenation costs (K + 1) n (total width) H multiply-adds. The
stacks of `broadcast_in_dim` and `concatenate` are therefore kept lazy (`Broadcast`, `Concat`):
a dot_general with a constant operand splits W along the concatenated axis,
sum_i dot(piece_i, W_i), multiplies a broadcast piece *before* broadcasting,
dot(broadcast(b), W_i) = broadcast(dot(b, W_i)), skips symbolic-zero pieces, and concatenates the
remaining dense pieces into ONE product (each extra product would write and re-read a whole
(K + 1) n H output). Every other consumer materialises a lazy stack (XLA fuses the broadcast or
concatenation into it).

dot_general of two x-dependent operands is bilinear: b J_a + J_a b rows plus the cross term
2 sum_k dot(J_a,k, J_b,k), computed as one dot_general that also contracts the direction axis.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from vmcjet.laplacian import rules_sparse
from vmcjet.laplacian._jax_internals import (
    broadcast_params,
    dot_dimensions,
    prims,
    reduce_axes,
    reshape_params,
    with_dot_dimensions,
)
from vmcjet.laplacian.registry import source_of
from vmcjet.laplacian.rules import LazyPush, Rows, add_second, materialize, zeros_stack
from vmcjet.laplacian.rules_sparse import Sparse


class Broadcast(NamedTuple):
    """Lazy stack of broadcast_in_dim(operand, shape, dims)."""

    base: jax.Array  # (K + 1,) + operand shape
    shape: tuple[int, ...]
    dims: tuple[int, ...]

    def materialize(self) -> jax.Array:
        dims = (0,) + tuple(d + 1 for d in self.dims)
        return lax.broadcast_in_dim(self.base, self.base.shape[:1] + self.shape, dims)


class Concat(NamedTuple):
    """Lazy stack of concatenate(operands, dimension); pieces: stacks, Broadcast, Sparse or None."""

    pieces: tuple
    primals: tuple
    dimension: int

    def materialize(self) -> jax.Array:
        rows = next(materialize(p).shape[0] for p in self.pieces if p is not None)
        parts = [
            zeros_stack(rows, x) if p is None else materialize(p)
            for p, x in zip(self.pieces, self.primals, strict=True)
        ]
        return jnp.concatenate(parts, axis=self.dimension + 1)


def broadcast_rule(primals, dependent, **params):
    del dependent
    out = prims.broadcast_in_dim_p.bind(*primals, **params)
    shape, dims = broadcast_params(params)

    def push(stacks):
        if isinstance(stacks[0], Sparse):
            sparse = rules_sparse.broadcast(stacks[0], shape, dims)
            if sparse is not None:
                return [sparse]
        return [Broadcast(materialize(stacks[0]), shape, dims)]

    return [out], LazyPush(push)


def concatenate_rule(primals, dependent, *, dimension):
    del dependent
    out = prims.concatenate_p.bind(*primals, dimension=dimension)

    def push(stacks):
        sparse = rules_sparse.concatenate(stacks, primals, dimension)
        if sparse is not None:
            return [sparse]
        keep = (Broadcast, Sparse)
        pieces = tuple(s if s is None or isinstance(s, keep) else materialize(s) for s in stacks)
        return [Concat(pieces, tuple(primals), dimension)]

    return [out], LazyPush(push)


def _dot(lhs, rhs, params, numbers=None):
    if numbers is not None:
        params = with_dot_dimensions(params, numbers)
    return prims.dot_general_p.bind(lhs, rhs, **params)


def _dot_broadcast(t: Broadcast, const, params):
    """dot(broadcast(b), W) = broadcast(dot(b, W)), or None when a contracted axis is broadcast."""
    (lc, rc), _ = dot_dimensions(params)
    base_shape = t.base.shape[1:]
    if any(c not in t.dims or base_shape[t.dims.index(c)] != t.shape[c] for c in lc):
        return None
    base_lc = tuple(t.dims.index(c) for c in lc)
    r = jax.vmap(lambda s: _dot(s, const, params, ((base_lc, tuple(rc)), ((), ()))))(t.base)
    free = [j for j in range(len(t.shape)) if j not in lc]
    base_free = [i for i in range(len(base_shape)) if i not in base_lc]
    const_free = [const.shape[j] for j in range(const.ndim) if j not in rc]
    dims = [1 + free.index(t.dims[i]) for i in base_free]
    dims += [1 + len(free) + j for j in range(len(const_free))]
    shape = r.shape[:1] + tuple(t.shape[j] for j in free) + tuple(const_free)
    return lax.broadcast_in_dim(r, shape, (0,) + tuple(dims))


def _dot_concat(t: Concat, const, params, axis: int):
    """dot(concatenate(pieces), W) = sum_i dot(piece_i, W_i) over the rows W_i of W that meet
    piece i. Zero pieces are skipped, lazy ones (Broadcast, Sparse) keep their cheap products, and
    the dense pieces are concatenated again (without the zero and lazy ones) into one product."""
    dense, dense_parts, terms, start = [], [], [], 0
    for piece, x in zip(t.pieces, t.primals, strict=True):
        part = lax.slice_in_dim(const, start, start + x.shape[t.dimension], axis=axis)
        start += x.shape[t.dimension]
        if isinstance(piece, (Broadcast, Sparse)):
            terms.append(materialize(dot_constant_stack(piece, part, params)))
        elif piece is not None:
            dense.append(piece)
            dense_parts.append(part)
    if dense:
        joined = dense[0] if len(dense) == 1 else jnp.concatenate(dense, axis=t.dimension + 1)
        weights = jnp.concatenate(dense_parts, axis=axis)
        terms.insert(0, jax.vmap(lambda s: _dot(s, weights, params))(joined))
    return sum(terms[1:], terms[0])


def dot_constant_stack(t, const, params):
    """Stack of dot_general(lhs, const) from the (possibly lazy) stack `t` of lhs."""
    (lc, rc), (lb, _) = dot_dimensions(params)
    if isinstance(t, Concat) and not lb and t.dimension in lc:
        return _dot_concat(t, const, params, rc[lc.index(t.dimension)])
    if isinstance(t, Broadcast) and not lb:
        result = _dot_broadcast(t, const, params)
        if result is not None:
            return result
    if isinstance(t, Rows):
        return t.map(lambda s: _dot(s, const, params))
    if isinstance(t, Sparse):
        result = rules_sparse.dot_constant(t, const, params, lambda r, c: _dot(r, c, params))
        if result is not None:
            return result
    return jax.vmap(lambda s: _dot(s, const, params))(materialize(t))


def _dot_general_rule(primals, dependent, **params):
    del dependent
    a, b = primals
    out = _dot(a, b, params)

    def push(stacks):
        ta, tb = stacks
        if tb is None:
            return [dot_constant_stack(ta, b, params)]
        if ta is None and isinstance(tb, Rows):
            return [tb.map(lambda s: _dot(a, s, params))]
        tb = materialize(tb)
        from_b = jax.vmap(lambda s: _dot(a, s, params))(tb)
        if ta is None:
            return [from_b]
        ta = materialize(ta)
        (lc, rc), (lb, rb) = dot_dimensions(params)
        shift = lambda dims: tuple(d + 1 for d in dims)
        numbers = ((shift(lc) + (0,), shift(rc) + (0,)), (shift(lb), shift(rb)))
        cross = _dot(ta[:-1], tb[:-1], params, numbers)
        from_a = jax.vmap(lambda s: _dot(s, b, params))(ta)
        return [add_second(from_a + from_b, 2 * cross)]

    return [out], LazyPush(push)


def _with_sparse(sparse_fn: Callable, kinds: tuple) -> Callable[[Callable], Callable]:
    """Wraps a registered dense rule: stacks of `kinds` go through `sparse_fn(stack, params)`
    (which returns the output stack, or None to fall back to the dense rule)."""

    def wrap(dense_rule: Callable) -> Callable:
        def rule(primals, dependent, **params):
            outs, dense_push = dense_rule(primals, dependent, **params)

            def push(stacks):
                if isinstance(stacks[0], kinds):
                    sparse = sparse_fn(stacks[0], params)
                    if sparse is not None:
                        return [sparse]
                return dense_push([materialize(s) for s in stacks])

            return outs, LazyPush(push)

        return rule

    return wrap


def _sparse_reduce_sum(s, params):
    """Sums over non-electron axes stay sparse; a sum over one electron axis of a (sliced) pair
    stack gives its dense block directly."""
    axes = reduce_axes(params)
    if isinstance(s, rules_sparse.ElectronSlice):
        return (
            rules_sparse.sum_over_electrons(s.sparse, s.axis, s.lo, s.hi)
            if axes == (s.axis,)
            else None
        )
    if len(s.axes) == 2 and len(axes) == 1 and axes[0] in s.axes:
        return rules_sparse.sum_over_electrons(s, axes[0], 0, s.rows.shape[axes[0] + 1])
    return rules_sparse.reduce_sum(s, axes)


def _neg_lazy(s, params):
    del params
    return s.map(lax.neg) if isinstance(s, Rows) else s.with_rows(-s.rows)


def _reshape_sparse(s, params):
    new_sizes, dimensions = reshape_params(params)
    return None if dimensions else rules_sparse.reshape(s, new_sizes)


# primitive -> (stack handler, the stack kinds it takes); registered in `rules` as linear
_FAST_PATHS = {
    prims.reduce_sum_p: (_sparse_reduce_sum, (Sparse, rules_sparse.ElectronSlice)),
    prims.slice_p: (rules_sparse.electron_slice, (Sparse,)),
    prims.neg_p: (_neg_lazy, (Sparse, Rows)),
    prims.reshape_p: (_reshape_sparse, (Sparse,)),
}


def register_lazy_structure(registry) -> None:
    """Registers broadcast_in_dim and concatenate, whose stacks stay lazy (any order)."""
    registry.register(prims.broadcast_in_dim_p, broadcast_rule, lazy=True)
    registry.register(prims.concatenate_p, concatenate_rule, lazy=True)


def register_rules(registry) -> None:
    """Registers this module's rules, then its fast paths for lazy stacks on four linear
    primitives registered by `rules` (see `vmcjet.laplacian.registry`)."""
    register_lazy_structure(registry)
    registry.register(prims.dot_general_p, _dot_general_rule, lazy=True)
    for primitive, (handler, kinds) in _FAST_PATHS.items():
        names = ", ".join(kind.__name__ for kind in kinds)
        description = f"{source_of(handler)} ({names})"
        registry.extend(primitive, _with_sparse(handler, kinds), description=description)

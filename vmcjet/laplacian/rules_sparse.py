"""Electron-wise sparse stacks (optional): 3 or 6 first-order rows instead of 3n.

For x = electron positions (n, 3), an array whose axis `a` indexes electrons and whose entry
[.., i, ..] depends only on x_i has first-order coefficients d/dx_e = delta(e, i) R_c: three rows
R suffice. A pair array (axes a, b: entry [.., i, .., j, ..] depends on x_i and x_j) needs six:
d/dx_e = delta(e, i) R_0,c + delta(e, j) R_1,c. In that representation

    sum_k J_k * J'_k = sum_t R_t . R'_t + delta(i, j) (R_0 . R'_1 + R_1 . R'_0),

(the delta term: on the diagonal i = j both blocks belong to the same electron). Rules that know
`Sparse` (elementwise, add/sub/mul, broadcast_in_dim, concatenate and dot_general with a constant
on non-electron axes, reduce_sum over non-electron axes) keep it; every other primitive receives
the dense stack from `materialize`. A sum over one electron axis j of a pair stack (optionally
sliced to a spin channel first, `ElectronSlice`), as in spin-resolved means, goes straight to its
dense rows delta(e, i) sum_j R_0,ij + R_1,ie (`sum_over_electrons`), never densifying the pairs.
"""

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from vmcjet.laplacian._jax_internals import dot_dimensions, slice_params


class Sparse(NamedTuple):
    """Sparse stack: rows (3 * len(axes) + 1,) + shape, the last row being the Laplacian row.

    Only electrons start .. start + count - 1 are differentiated (a block of directions): the
    rows vanish for the others and `materialize` gives the 3 * count + 1 dense rows of the block.
    """

    rows: jax.Array
    axes: tuple[int, ...]
    electrons: int  # electrons differentiated (a block of directions); not `count` (tuple's)
    start: jax.Array | int = 0

    @property
    def dense_rows(self) -> int:
        return 3 * self.electrons + 1

    def _same(self, a: int, b: int) -> jax.Array:
        shape = self.rows.shape[1:]
        same = lax.broadcasted_iota(jnp.int32, shape, a) == lax.broadcasted_iota(
            jnp.int32, shape, b
        )
        return same.astype(self.rows.dtype)

    def materialize(self) -> jax.Array:
        shape = self.rows.shape[1:]
        first: jax.Array | int = 0
        for t, a in enumerate(self.axes):
            full = (self.electrons,) + shape
            hit = lax.broadcasted_iota(jnp.int32, full, 0) + self.start == lax.broadcasted_iota(
                jnp.int32, full, a + 1
            )
            first = (
                first + hit.astype(self.rows.dtype)[:, None] * self.rows[None, 3 * t : 3 * t + 3]
            )
        assert not isinstance(first, int), "a sparse stack has at least one electron axis"
        first = first.reshape((3 * self.electrons,) + shape)
        return jnp.concatenate([first, self.rows[-1:]])

    def inner(self, other: "Sparse") -> jax.Array:
        """sum_k J_k J'_k of two stacks with the same electron axes (shape of the primal)."""
        total = jnp.sum(self.rows[:-1] * other.rows[:-1], axis=0)
        if len(self.axes) == 2:
            mixed = self.rows[0:3] * other.rows[3:6] + self.rows[3:6] * other.rows[0:3]
            total = total + self._same(*self.axes) * jnp.sum(mixed, axis=0)
        return total

    def with_rows(self, rows: jax.Array, axes: tuple[int, ...] | None = None) -> "Sparse":
        return Sparse(rows, self.axes if axes is None else axes, self.electrons, self.start)


_HOOKS: list[Callable] = []


def resolve(s: "Sparse") -> "Sparse":
    """The stack to densify in place of `s`: `s` itself, unless an `intercept` hook is active."""
    return _HOOKS[-1](s) if _HOOKS else s


def densify(s: "Sparse") -> jax.Array:
    """The dense stack of `s` (of `resolve(s)`)."""
    return resolve(s).materialize()


@contextlib.contextmanager
def intercept(hook: Callable[["Sparse"], "Sparse"]) -> Iterator[None]:
    """Within the block, every densification of a Sparse stack `s` uses `hook(s)` instead."""
    _HOOKS.append(hook)
    try:
        yield
    finally:
        _HOOKS.pop()


class ElectronSlice(NamedTuple):
    """Lazy stack of a pair Sparse stack sliced to electrons lo .. hi - 1 along its electron
    axis `axis` (e.g. a spin channel), kept so that a following sum over that axis stays cheap."""

    sparse: Sparse
    axis: int
    lo: int
    hi: int

    @property
    def dense_rows(self) -> int:
        return self.sparse.dense_rows

    def materialize(self) -> jax.Array:
        return lax.slice_in_dim(densify(self.sparse), self.lo, self.hi, axis=self.axis + 1)


def electron_slice(s: Sparse, params: dict) -> "ElectronSlice | None":
    """slice of a pair stack along one electron axis only (unit strides), None otherwise."""
    shape = s.rows.shape[1:]
    starts, limits, strides = slice_params(params)
    cut = [d for d in range(len(shape)) if (starts[d], limits[d]) != (0, shape[d])]
    if len(s.axes) != 2 or len(cut) != 1 or cut[0] not in s.axes:
        return None
    if strides is not None and any(st != 1 for st in strides):
        return None
    return ElectronSlice(s, cut[0], starts[cut[0]], limits[cut[0]])


def sum_over_electrons(s: Sparse, axis: int, lo: int, hi: int) -> jax.Array:
    """Dense stack of sum_{j in lo..hi-1} over electron axis `axis` of a pair stack.

    With the other electron axis a, d/dx_e of sum_j P_ij is delta(e, i) sum_j R_a,ij + R_axis,ie
    (for lo <= e < hi): the 3 * count block rows without densifying the pair stack.
    """
    s = resolve(s)
    other = s.axes[1 - s.axes.index(axis)]
    ra, rb = (s.rows[3 * s.axes.index(d) : 3 * s.axes.index(d) + 3] for d in (other, axis))
    n = s.rows.shape[axis + 1]
    inside = (lo <= jnp.arange(n)) & (jnp.arange(n) < hi)
    mask = inside.astype(s.rows.dtype).reshape(
        (1,) * (axis + 1) + (n,) + (1,) * (s.rows.ndim - axis - 2)
    )
    diag = jnp.moveaxis(jnp.sum(ra * mask, axis=axis + 1), other + 1 - (other > axis), 1)
    hit = (jnp.arange(s.electrons)[:, None] + s.start == jnp.arange(diag.shape[1])[None, :]).astype(
        diag.dtype
    )
    hit = hit.reshape(hit.shape + (1,) * (diag.ndim - 2))
    first = hit[:, None] * diag[None]  # (count, 3, n_other, rest)
    rb = jnp.moveaxis(rb * mask, (other + 1, axis + 1), (1, 2))  # (3, n_other, n, rest)
    padded = jnp.concatenate(
        [rb, jnp.zeros(rb.shape[:2] + (s.electrons,) + rb.shape[3:], rb.dtype)], 2
    )
    block = lax.dynamic_slice_in_dim(padded, s.start, s.electrons, axis=2)
    first = first + jnp.moveaxis(block, 2, 0)
    first = jnp.moveaxis(first, 2, other + 2 - (other > axis))
    first = first.reshape((3 * s.electrons,) + first.shape[2:])
    second = jnp.sum(s.rows[-1:] * mask, axis=axis + 1)
    return jnp.concatenate([first, second])


def seed(x: jax.Array, start: jax.Array | int = 0, count: int | None = None) -> Sparse:
    """Input stack of electron positions x (n, 3): d x_i,d / d x_i,c = delta(c, d), for the
    electrons start .. start + count - 1 (default: all)."""
    n = x.shape[0]
    count = n if count is None else count
    electron = lax.broadcasted_iota(jnp.int32, (1, n, 1), 1)
    inside = ((electron >= start) & (electron < start + count)).astype(x.dtype)
    eye = jnp.eye(3, dtype=x.dtype)[:, None, :] * inside
    return Sparse(jnp.concatenate([eye, jnp.zeros((1, n, 3), x.dtype)]), (0,), count, start)


def _lift(s: Sparse, axes: tuple[int, ...]) -> Sparse:
    """The same stack over a superset of electron axes (zero rows for the new ones)."""
    first = s.rows[:-1]
    zero = jnp.zeros((3,) + s.rows.shape[1:], s.rows.dtype)
    blocks = [
        first[3 * s.axes.index(a) : 3 * s.axes.index(a) + 3] if a in s.axes else zero for a in axes
    ]
    return s.with_rows(jnp.concatenate(blocks + [s.rows[-1:]]), axes)


def align(stacks: list) -> list | None:
    """Brings Sparse stacks (None allowed) to common electron axes, or None if impossible."""
    axes = tuple(sorted({a for s in stacks if s is not None for a in s.axes}))
    if len(axes) > 2:
        return None
    return [None if s is None else s if s.axes == axes else _lift(s, axes) for s in stacks]


def expand(s: Sparse, shape: tuple[int, ...]) -> Sparse | None:
    """Broadcast of a Sparse stack to `shape` (same rank), None when an electron axis would grow."""
    own = s.rows.shape[1:]
    if own == shape:
        return s
    if len(own) != len(shape) or any(own[a] != shape[a] for a in s.axes):
        return None
    return s.with_rows(jnp.broadcast_to(s.rows, s.rows.shape[:1] + shape))


def broadcast(s: Sparse, shape: tuple[int, ...], dims: tuple[int, ...]) -> Sparse | None:
    """broadcast_in_dim of a Sparse stack, None when an electron axis would grow."""
    own = s.rows.shape[1:]
    if any(own[a] != shape[dims[a]] for a in s.axes):
        return None
    rows = lax.broadcast_in_dim(s.rows, s.rows.shape[:1] + shape, (0,) + tuple(d + 1 for d in dims))
    return s.with_rows(rows, tuple(dims[a] for a in s.axes))


def reduce_sum(s: Sparse, axes: tuple[int, ...]) -> Sparse | None:
    """reduce_sum over non-electron axes, None otherwise."""
    if any(a in axes for a in s.axes):
        return None
    rows = jnp.sum(s.rows, axis=tuple(a + 1 for a in axes))
    return s.with_rows(rows, tuple(a - sum(r < a for r in axes) for a in s.axes))


def reshape(s: Sparse, shape: tuple[int, ...]) -> Sparse | None:
    """reshape keeping every electron axis (same size, same number of entries before it)."""
    own, axes = s.rows.shape[1:], []
    for a in s.axes:
        prefix = math.prod(own[:a])
        match = [
            b for b, size in enumerate(shape) if size == own[a] and math.prod(shape[:b]) == prefix
        ]
        if not match:
            return None
        axes.append(match[0])
    return s.with_rows(s.rows.reshape(s.rows.shape[:1] + shape), tuple(axes))


def dot_constant(s: Sparse, const: jax.Array, params: dict, bind) -> Sparse | None:
    """dot_general(lhs, const) with a Sparse lhs stack, contracting non-electron axes only."""
    (lc, _), (lb, _) = dot_dimensions(params)
    if lb or any(a in lc for a in s.axes):
        return None
    rows = jax.vmap(lambda r: bind(r, const))(s.rows)
    free = [d for d in range(s.rows.ndim - 1) if d not in lc]
    return s.with_rows(rows, tuple(free.index(a) for a in s.axes))


def concatenate(stacks: list, primals: list, dimension: int) -> Sparse | None:
    """concatenate of Sparse stacks (None: zero rows) along a non-electron axis."""
    if not all(s is None or isinstance(s, Sparse) for s in stacks):
        return None
    aligned = align(stacks)
    if aligned is None:
        return None
    ref = next(s for s in aligned if s is not None)
    if dimension in ref.axes:
        return None
    rows = [
        jnp.zeros(ref.rows.shape[:1] + p.shape, ref.rows.dtype) if s is None else s.rows
        for s, p in zip(aligned, primals, strict=True)
    ]
    return ref.with_rows(jnp.concatenate(rows, axis=dimension + 1))

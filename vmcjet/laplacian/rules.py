"""Propagation rules of the collapsed forward Laplacian: stacks, and the arithmetic, linear and
structural primitive families (registered by `register_rules`; the table is `registry.py`).

A *stack* is the derivative information carried for one array `p` of shape `s`: an array of shape
`(K + 1,) + s` whose first K rows are the first-order coefficients `J_k = d_k p` and whose last row
is the collapsed second-order coefficient `L = sum_k d2p[v_k, v_k]` (see the package docstring).
`None` is the symbolic zero stack (the array does not depend on x).

A rule is `rule(primals, dependent, **params) -> (out_primals, push)`: it evaluates the primitive
on the primal inputs (computing any residuals the derivatives need, such as f'(x) and f''(x)) and
returns `push(stacks) -> out_stacks`, which maps input stacks (None for zero) to output stacks.
Splitting the primal stage from `push` lets chunked evaluation compute every primal once. A push
wrapped in `LazyPush` receives lazy stacks (`Rows`, `Sparse`, ...) as they are; the engine
materialises the inputs of any other push to dense arrays first.
"""

import functools
import warnings
from collections.abc import Callable
from typing import NamedTuple, Protocol, overload, runtime_checkable

import jax
import jax.numpy as jnp
from jax import lax

from vmcjet.laplacian import rules_sparse
from vmcjet.laplacian._jax_internals import Primitive, bind_primitive, prims, stack_primitive
from vmcjet.laplacian.rules_sparse import Sparse

Push = Callable[[list], list]


@runtime_checkable
class LazyStack(Protocol):
    """A stack held in a cheaper form than its (K + 1,) + s array: `Rows`, `rules_sparse.Sparse`
    and `ElectronSlice`, `rules_dot.Broadcast` and `Concat`. "Rows" always counts K + 1: the K
    first-order rows and the collapsed second-order (Laplacian) row."""

    def materialize(self) -> jax.Array: ...


# What a rule's push receives and returns per array: a dense (K + 1,) + s array, a lazy stack,
# or None (the symbolic zero: the array does not depend on x).
Stack = jax.Array | LazyStack | None


class LazyPush(NamedTuple):
    """A push that takes lazy stacks (`Rows`, `Sparse`, `Broadcast`, `Concat`, ...) as they are;
    the engine materialises the input stacks of every other push first."""

    fn: Push

    def __call__(self, stacks: list) -> list:
        return self.fn(stacks)


_WARNED: set[str] = set()


def expand(stack: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Broadcasts a stack `(K + 1,) + s` to `(K + 1,) + shape` (rank-0 and size-1 broadcasting)."""
    if stack.shape[1:] == shape:
        return stack
    if stack.ndim == 1:
        stack = stack.reshape(stack.shape[:1] + (1,) * len(shape))
    return jnp.broadcast_to(stack, stack.shape[:1] + shape)


def full(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Broadcasts a primal to `shape`, then adds the leading direction axis (length 1)."""
    x = x if x.shape == shape else jnp.broadcast_to(x, shape)
    return x[None]


def add_second(stack: jax.Array, extra: jax.Array) -> jax.Array:
    """Adds `extra` (shape of the primal) to the second-order row of `stack`.

    Written as a concatenation, which XLA fuses with the producer of `stack`; `.at[-1].add` would
    lower to a scatter, slow on CPU.
    """
    return jnp.concatenate([stack[:-1], (stack[-1] + extra)[None]])


class Rows(NamedTuple):
    """A stack held as two arrays: its first-order rows (K,) + s and its second-order row s.

    The dense seed of a push is `Rows` (the sparse one is `Sparse`). These rules keep it: products
    with a constant matrix on either side, sums and differences, negation, multiplication and
    division by a constant, and elementwise functions; every other rule materialises it. Through
    an MLP of x the Laplacian row then never shares an array with the K first-order rows, so XLA
    need not hold it in both a product's input and output: the widest temporaries shrink by one
    row in K + 1 (docs/benchmarks.md).
    """

    first: jax.Array
    second: jax.Array

    def materialize(self) -> jax.Array:
        return jnp.concatenate([self.first, self.second[None]])

    def map(self, linear: Callable[[jax.Array], jax.Array]) -> "Rows":
        """The stack of `linear` applied to the array: `linear` on every row (a linear map acts
        on first- and second-order coefficients alike)."""
        return Rows(jax.vmap(linear)(self.first), linear(self.second))


def rows_of_shape(stack, shape: tuple[int, ...]) -> bool:
    """Whether `stack` is `Rows` for an array of `shape` (so an elementwise rule can keep it)."""
    return isinstance(stack, Rows) and stack.second.shape == shape


@overload
def materialize(stack: jax.Array | LazyStack) -> jax.Array: ...


@overload
def materialize(stack: None) -> None: ...


def materialize(stack: Stack) -> jax.Array | None:
    """Lazy stacks become arrays; arrays and None pass through.

    Sparse stacks go through `rules_sparse.densify` (which the engine may intercept).
    """
    if isinstance(stack, Sparse):
        return rules_sparse.densify(stack)
    return stack.materialize() if isinstance(stack, LazyStack) else stack


def num_rows(stacks: list) -> int:
    """K + 1, read from the first non-zero stack."""
    s = next(s for s in stacks if s is not None)
    return s.dense_rows if isinstance(s, (Sparse, rules_sparse.ElectronSlice)) else s.shape[0]


def unify(stacks: list, shape: tuple[int, ...]) -> list:
    """Stacks broadcast to `shape`: all Sparse (aligned) when possible, else all dense."""
    if all(s is None or isinstance(s, Sparse) for s in stacks):
        wide = [None if s is None else rules_sparse.expand(s, shape) for s in stacks]
        if all((w is None) == (s is None) for w, s in zip(wide, stacks, strict=True)):
            aligned = rules_sparse.align(wide)
            if aligned is not None:
                return aligned
    return [None if s is None else expand(materialize(s), shape) for s in stacks]


def _rows(stack):
    return stack.rows if isinstance(stack, Sparse) else stack


def _wrap(like, rows: jax.Array):
    return like.with_rows(rows) if isinstance(like, Sparse) else rows


def inner(ta, tb) -> jax.Array:
    """sum_k J_a,k J_b,k of two unified stacks."""
    return ta.inner(tb) if isinstance(ta, Sparse) else jnp.sum(ta[:-1] * tb[:-1], axis=0)


def zeros_stack(rows: int, like: jax.Array) -> jax.Array:
    """A materialised zero stack for a primal (used only where a primitive needs every operand)."""
    like = jnp.asarray(like)
    return jnp.zeros((rows,) + like.shape, like.dtype)


def scale(stack, d1: jax.Array, d2: jax.Array | float | None):
    """The elementwise chain rule: rows * f'(x), plus f''(x) * sum_k J_k^2 on the second row."""
    if isinstance(stack, Rows):
        out = stack.map(lambda row: jnp.broadcast_to(d1, row.shape) * row)
        if d2 is None:
            return out
        return Rows(out.first, out.second + d2 * jnp.sum(stack.first * stack.first, axis=0))
    stack = stack if isinstance(stack, Sparse) else materialize(stack)
    rows = _rows(stack)
    out = full(d1, rows.shape[1:]) * rows
    return _wrap(stack, out if d2 is None else add_second(out, d2 * inner(stack, stack)))


def product(a: jax.Array, b: jax.Array, ta, tb, shape: tuple[int, ...]):
    """Stack of a * b (elementwise): b J_a + a J_b, plus the cross term 2 sum_k J_a,k J_b,k."""
    if ta is None and tb is None:
        return None
    t, factor = (ta, b) if tb is None else (tb, a)
    if (ta is None or tb is None) and rows_of_shape(t, shape):
        wide = jnp.broadcast_to(factor, shape)
        return t.map(lambda row: wide * row)
    ta, tb = unify([ta, tb], shape)
    if tb is None:
        return _wrap(ta, full(b, shape) * _rows(ta))
    if ta is None:
        return _wrap(tb, full(a, shape) * _rows(tb))
    out = full(b, shape) * _rows(ta) + full(a, shape) * _rows(tb)
    return _wrap(ta, add_second(out, 2 * inner(ta, tb)))


def single(rule1: Callable, lazy: bool = False) -> Callable:
    """Adapts `rule1(*primals, **params) -> (out, push1(*stacks))` to the list-based interface.

    With `lazy`, the push also receives lazy stacks (Rows, Sparse, rules_dot's Broadcast/Concat).
    """

    @functools.wraps(rule1)  # the registry names the rule after rule1
    def rule(primals, dependent, **params):
        del dependent
        out, push1 = rule1(*primals, **params)
        push = lambda stacks: [push1(*stacks)]
        return [out], LazyPush(push) if lazy else push

    return rule


def lazy(rule1: Callable) -> Callable:
    """`single` for rules whose push handles lazy stacks (through `unify`, `scale`, `product`)."""
    return single(rule1, lazy=True)


# --- linear and structural primitives: the stack maps through the primitive itself ------------


def linear_rule(primitive: Primitive, linear_args: tuple[int, ...] | None = (0,)) -> Callable:
    """The rule of a primitive that is jointly linear in the operands `linear_args` (None: all).

    The other operands (indices, predicates) must not depend on x. The push is the primitive
    vmapped over the direction axis, so value-shaped reshapes, slices, gathers and reductions
    apply to all K + 1 rows at once.
    """

    def rule(primals, dependent, **params):
        del dependent
        outs = bind_primitive(primitive, primals, params)
        everything = range(len(primals))
        linear = everything if linear_args is None else [i for i in linear_args if i in everything]

        def push(stacks):
            if all(stacks[i] is None for i in linear):
                return [None] * len(outs)
            rows = num_rows(stacks)
            args = [
                (zeros_stack(rows, p) if s is None else s) if i in linear else p
                for i, (p, s) in enumerate(zip(primals, stacks, strict=True))
            ]
            axes = [0 if i in linear else None for i in range(len(primals))]
            apply = jax.vmap(lambda *a: bind_primitive(primitive, a, params), in_axes=axes)
            return apply(*args)

        return outs, push

    return rule


def zero_rule(primitive: Primitive) -> Callable:
    """The rule of a primitive whose derivative is zero almost everywhere (sign, floor, ...)."""

    def rule(primals, dependent, **params):
        del dependent
        outs = bind_primitive(primitive, primals, params)
        return outs, lambda stacks: [None] * len(outs)

    return rule


def _rows_sum(ta, tb, sign: int, shape: tuple[int, ...]):
    """ta + sign * tb kept as `Rows` when both are Rows (or zero) of the output's shape, else
    None (then the dense path handles them)."""
    stacks = (ta, tb)
    if not any(isinstance(t, Rows) for t in stacks) or not all(
        t is None or rows_of_shape(t, shape) for t in stacks
    ):
        return None
    if tb is None:
        return ta
    signed = tb if sign > 0 else tb.map(lax.neg)
    return signed if ta is None else Rows(ta.first + signed.first, ta.second + signed.second)


@lazy
def _add(a, b):
    out = lax.add(a, b)

    def push(ta, tb):
        rows = _rows_sum(ta, tb, 1, out.shape)
        if rows is not None:
            return rows
        ta, tb = unify([ta, tb], out.shape)
        if ta is None or tb is None:
            return ta if tb is None else tb
        return _wrap(ta, _rows(ta) + _rows(tb))

    return out, push


@lazy
def _sub(a, b):
    out = lax.sub(a, b)

    def push(ta, tb):
        rows = _rows_sum(ta, tb, -1, out.shape)
        if rows is not None:
            return rows
        ta, tb = unify([ta, tb], out.shape)
        if tb is None:
            return ta
        neg = _wrap(tb, -_rows(tb))
        return neg if ta is None else _wrap(ta, _rows(ta) + _rows(neg))

    return out, push


# --- bilinear and other multi-operand primitives -------------------------------------------------


@lazy
def _mul(a, b, **params):
    out = prims.mul_p.bind(a, b, **params)  # params: none in jax 0.9, `out_dtype` in 0.10
    return out, lambda ta, tb: product(a, b, ta, tb, out.shape)


@lazy
def _div(a, b):
    out = lax.div(a, b)
    inv = 1 / b

    def push(ta, tb):
        if tb is None:
            ta = ta if rows_of_shape(ta, out.shape) else unify([ta], out.shape)[0]
            return scale(ta, jnp.broadcast_to(inv, out.shape), None)
        t_inv = scale(tb, -inv * inv, 2 * inv * inv * inv)
        return product(a, inv, ta, t_inv, out.shape)

    return out, push


@single
def _pow(x, y):
    out = lax.pow(x, y)

    def push(tx, ty):
        wide = lambda v: jnp.broadcast_to(v, out.shape)
        if ty is None:
            yf = lax.convert_element_type(y, out.dtype)
            d1, d2 = yf * lax.pow(x, y - 1), yf * (yf - 1) * lax.pow(x, y - 2)
            return scale(expand(tx, out.shape), wide(d1), wide(d2))
        log_x = jnp.log(x)
        if tx is None:
            return scale(expand(ty, out.shape), wide(out * log_x), wide(out * log_x * log_x))
        t_log = scale(tx, 1 / x, -1 / (x * x))
        return scale(product(y, log_x, ty, t_log, out.shape), out, out)

    return out, push


def _minmax_rule(primitive: Primitive, pick_first: Callable) -> Callable:
    """max/min: the stack of the selected operand (ties share it half and half, as JAX does)."""

    @single
    def rule1(a, b):
        out = primitive.bind(a, b)
        half = jnp.asarray(0.5, out.dtype)
        w = jnp.where(pick_first(a, b), 1, jnp.where(a == b, half, 0)).astype(out.dtype)
        w = jnp.broadcast_to(w, out.shape)

        def push(ta, tb):
            terms = []
            if ta is not None:
                terms.append(w[None] * expand(ta, out.shape))
            if tb is not None:
                terms.append((1 - w)[None] * expand(tb, out.shape))
            return sum(terms[1:], terms[0])

        return out, push

    return rule1


def _reduce_extremum_rule(primitive: Primitive) -> Callable:
    """reduce_max/min: the stack at the extremal entries (averaged over ties)."""

    @single
    def rule1(x, *, axes, **params):
        y = primitive.bind(x, axes=axes, **params)
        kept = tuple(d for d in range(x.ndim) if d not in axes)
        hit = (x == lax.broadcast_in_dim(y, x.shape, kept)).astype(x.dtype)
        w = hit / jnp.sum(hit, axis=axes, keepdims=True)
        return y, lambda t: jnp.sum(t * w[None], axis=tuple(a + 1 for a in axes))

    return rule1


@single
def _clamp(lo, x, hi):
    out = lax.clamp(lo, x, hi)
    below, above = x < lo, x > hi
    weights = [w.astype(out.dtype) for w in (below, ~(below | above), above)]

    def push(*stacks):
        terms = [
            jnp.broadcast_to(w, out.shape)[None] * expand(t, out.shape)
            for w, t in zip(weights, stacks, strict=True)
            if t is not None
        ]
        return sum(terms[1:], terms[0])

    return out, push


# --- generic fallback from JAX's own jvp rules ---------------------------------------------------


def fallback_rule(primitive: Primitive) -> Callable:
    """A rule for any primitive from nested jvps: slower, warns once per primitive."""

    def rule(primals, dependent, **params):
        if primitive.name not in _WARNED:
            _WARNED.add(primitive.name)
            warnings.warn(
                f"vmcjet.laplacian: no rule for primitive '{primitive.name}', using the generic "
                "(nested jvp) fallback, which is slower",
                stacklevel=2,
            )
        outs = bind_primitive(primitive, primals, params)
        return outs, lambda stacks: _fallback_push(primitive, params, primals, dependent, stacks)

    return rule


def _fallback_push(primitive, params, primals, dependent, stacks):
    idx = [i for i, s in enumerate(stacks) if s is not None]

    def f(*varying):
        args = list(primals)
        for i, v in zip(idx, varying, strict=True):
            args[i] = v
        return tuple(bind_primitive(primitive, args, params))

    base = tuple(primals[i] for i in idx)
    jvp1 = lambda *t: jax.jvp(f, base, t)[1]
    jvp2 = lambda *t: jax.jvp(lambda *p: jax.jvp(f, p, t)[1], base, t)[1]
    firsts = [stacks[i][:-1] for i in idx]
    out_first = jax.vmap(jvp1)(*firsts)
    out_curv = jax.vmap(jvp2)(*firsts)
    out_lin = jvp1(*[stacks[i][-1] for i in idx])
    return [
        jnp.concatenate([j, (jnp.sum(c, axis=0) + lin)[None]])
        if jnp.issubdtype(lin.dtype, jnp.inexact)
        else None
        for j, c, lin in zip(out_first, out_curv, out_lin, strict=True)
    ]


# --- registration ---------------------------------------------------------------------------------

_LINEAR = (
    prims.neg_p, prims.reshape_p, prims.transpose_p, prims.squeeze_p,
    prims.rev_p, prims.slice_p, prims.reduce_sum_p, prims.cumsum_p, prims.copy_p,
    prims.convert_element_type_p, prims.reduce_precision_p, prims.gather_p, prims.dynamic_slice_p,
    prims.real_p, prims.imag_p, prims.conj_p, prims.sharding_constraint_p,
)  # fmt: skip
# primitive -> its operands in which it is (jointly) linear; None: all operands
_LINEAR_IN = {
    prims.pad_p: (0, 1),
    prims.dynamic_update_slice_p: (0, 1),
    prims.scatter_add_p: (0, 2),
    prims.scatter_p: (0, 2),
    prims.add_jaxvals_p: None,
    prims.select_n_p: tuple(range(1, 64)),
}
_ZERO = (
    prims.sign_p, prims.floor_p, prims.ceil_p, prims.round_p, prims.stop_gradient_p,
    prims.is_finite_p, prims.nextafter_p,
)  # fmt: skip


def register_rules(registry) -> None:
    """Registers this module's rules (see `vmcjet.laplacian.registry`)."""
    register_structural(registry)
    for primitive, rule in ((prims.mul_p, _mul), (prims.div_p, _div)):
        registry.register(primitive, rule, lazy=True)
    registry.register(prims.pow_p, _pow, lazy=False)


def register_structural(registry) -> None:
    """Registers the rules that hold for stacks of any order (`vmcjet.laplacian.taylor` shares
    them): linear and structural primitives, piecewise selections (max, min, clamp, reduce_max,
    reduce_min), zero derivatives, and add and sub (whose pushes also keep `Rows`)."""
    for primitive in _LINEAR:
        registry.register(primitive, linear_rule(primitive), lazy=False)
    for primitive, operands in _LINEAR_IN.items():
        registry.register(primitive, linear_rule(primitive, operands), lazy=False)
    stack_p = stack_primitive()
    if stack_p is not None:  # jax >= 0.10
        registry.register(stack_p, linear_rule(stack_p, None), lazy=False)
    for primitive in _ZERO:
        registry.register(primitive, zero_rule(primitive), lazy=False)
    for primitive, rule in ((prims.add_p, _add), (prims.sub_p, _sub)):
        registry.register(primitive, rule, lazy=True)
    registry.register(prims.clamp_p, _clamp, lazy=False)
    registry.register(prims.max_p, _minmax_rule(prims.max_p, lambda a, b: a > b), lazy=False)
    registry.register(prims.min_p, _minmax_rule(prims.min_p, lambda a, b: a < b), lazy=False)
    for primitive in (prims.reduce_max_p, prims.reduce_min_p):
        registry.register(primitive, _reduce_extremum_rule(primitive), lazy=False)

"""Rules for nested jaxprs and control flow: jit, calls, remat, custom_jvp/vjp, scan, while, cond.

Calls are interpreted inline (their inner jaxpr goes through the same interpreter), except
`jit`s with a named rule in the active registry (`Registry.register_call`: "slogdet" and "det",
`rules_linalg`). custom_jvp and
custom_vjp functions are differentiated through their primal function. Loops carry
(primal, stack) pairs; a carry gets a stack when its initial value or its update depends on x
(found by abstract evaluation of the body to a fixed point). Predicates and branch indices are
integers or booleans, so they never carry derivatives.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from vmcjet.laplacian import registry as registries
from vmcjet.laplacian._jax_internals import (
    bind_primitive,
    call_name,
    cond_branches,
    inner_jaxpr,
    jaxpr_as_fun,
    prims,
    scan_params,
    while_params,
)
from vmcjet.laplacian.engine import linearize_jaxpr
from vmcjet.laplacian.rules import LazyPush, num_rows, zeros_stack


def _call_rule(primals, dependent, **params):
    jaxpr, consts = inner_jaxpr(params)
    outs, _, push = linearize_jaxpr(jaxpr, consts, primals, dependent, dense_outputs=False)
    return outs, LazyPush(push)  # the inlined equations handle (or materialise) lazy stacks


def _jit_rule(primals, dependent, **params):
    special = registries.current().call_rule(call_name(params))
    if special is not None and len(primals) == 1 and primals[0].ndim >= 2:
        return special(primals, dependent, **params)
    return _call_rule(primals, dependent, **params)


def _stacks_through(closed, primals: list, stacks: list) -> tuple[list, list]:
    """Runs a closed jaxpr on (primals, stacks): returns (out_primals, out_stacks)."""
    flags = [s is not None for s in stacks]
    outs, _, push = linearize_jaxpr(closed.jaxpr, closed.consts, primals, flags)
    return outs, push(stacks)


def _fill(mask: list[bool], stacks: list, primals: list, rows: int) -> list:
    """Stacks where `mask` is set (zeros for symbolic zeros), None elsewhere."""
    return [
        (zeros_stack(rows, p) if s is None else s) if m else None
        for m, s, p in zip(mask, stacks, primals, strict=True)
    ]


def _abstract(tree):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)


def _carry_mask(step: Callable, carry_p: list, carry_s: list, rows: int, *rest) -> list[bool]:
    """Which carries need stacks: start from the initial ones, add those the step makes nonzero."""
    mask, num = [s is not None for s in carry_s], len(carry_s)
    while True:
        filled = _abstract(_fill(mask, carry_s, carry_p, rows))
        out_s = jax.eval_shape(lambda s, *r: step(carry_p, s, *r)[1][:num], filled, *rest)
        new = [m or o is not None for m, o in zip(mask, out_s, strict=True)]
        if new == mask:
            return mask
        mask = new


def _scan_rule(primals, dependent, **params):
    del dependent
    outs = bind_primitive(prims.scan_p, primals, params)
    scan = scan_params(params)
    body, nc, ncarry = scan.body, scan.num_consts, scan.num_carry

    def push(stacks):
        rows = num_rows(stacks)
        consts_p, carry_p, xs_p = primals[:nc], primals[nc : nc + ncarry], primals[nc + ncarry :]
        consts_s, carry_s, xs_s = stacks[:nc], stacks[nc : nc + ncarry], stacks[nc + ncarry :]
        xs_s = [None if s is None else jnp.moveaxis(s, 1, 0) for s in xs_s]

        def step(cp, cs, x):
            ins_p, ins_s = consts_p + list(cp) + list(x[0]), consts_s + list(cs) + list(x[1])
            return _stacks_through(body, ins_p, ins_s)

        x_slice = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), (xs_p, xs_s))
        mask = _carry_mask(step, carry_p, carry_s, rows, x_slice)

        def scan_body(carry, x):
            o, o_s = step(carry[0], carry[1], x)
            new_s = _fill(mask, o_s[:ncarry], o[:ncarry], rows)
            return (o[:ncarry], new_s), (o[ncarry:], o_s[ncarry:])

        init = (list(carry_p), _fill(mask, carry_s, carry_p, rows))
        (_, final_s), (_, ys_s) = lax.scan(
            scan_body, init, (list(xs_p), xs_s), length=scan.length,
            reverse=scan.reverse, unroll=scan.unroll,
        )  # fmt: skip
        return final_s + [None if s is None else jnp.moveaxis(s, 0, 1) for s in ys_s]

    return outs, push


def _while_rule(primals, dependent, **params):
    del dependent
    outs = bind_primitive(prims.while_p, primals, params)
    loop = while_params(params)
    nc, nb = loop.cond_nconsts, loop.body_nconsts
    cond_fun = jaxpr_as_fun(loop.cond)

    def push(stacks):
        rows = num_rows(stacks)
        cond_p, body_p, carry_p = primals[:nc], primals[nc : nc + nb], primals[nc + nb :]
        body_s, carry_s = stacks[nc : nc + nb], stacks[nc + nb :]

        def step(cp, cs):
            return _stacks_through(loop.body, body_p + list(cp), body_s + list(cs))

        mask = _carry_mask(step, carry_p, carry_s, rows)

        def body_fun(carry):
            o, o_s = step(carry[0], carry[1])
            return o, _fill(mask, o_s, o, rows)

        init = (list(carry_p), _fill(mask, carry_s, carry_p, rows))
        _, final_s = lax.while_loop(lambda c: cond_fun(*cond_p, *c[0])[0], body_fun, init)
        return final_s

    return outs, push


def _cond_rule(primals, dependent, **params):
    del dependent
    outs = bind_primitive(prims.cond_p, primals, params)
    index, ops_p = primals[0], primals[1:]

    def push(stacks):
        rows, ops_s = num_rows(stacks), stacks[1:]
        branches = [lambda s, b=b: _stacks_through(b, ops_p, s)[1] for b in cond_branches(params)]
        shapes = [jax.eval_shape(b, _abstract(ops_s)) for b in branches]
        mask = [any(s[i] is not None for s in shapes) for i in range(len(outs))]
        filled = [lambda s, b=b: _fill(mask, b(s), outs, rows) for b in branches]
        return lax.switch(index, filled, ops_s)

    return outs, push


_CALLS = (
    prims.closed_call_p, prims.call_p, prims.remat_p, prims.custom_jvp_call_p,
    prims.custom_vjp_call_p,
)  # fmt: skip


def register_rules(registry) -> None:
    """Registers this module's rules (see `vmcjet.laplacian.registry`). Inlined calls pass lazy
    stacks on to the rules inside; loops and branches materialise them."""
    registry.register(prims.jit_p, _jit_rule, lazy=True)
    for primitive in _CALLS:
        registry.register(primitive, _call_rule, lazy=True)
    for primitive, rule in ((prims.scan_p, _scan_rule), (prims.while_p, _while_rule),
                            (prims.cond_p, _cond_rule)):  # fmt: skip
        registry.register(primitive, rule, lazy=False)

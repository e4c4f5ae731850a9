"""Elementwise nonlinear primitives: the chain rule from f'(x) and f''(x).

For y = f(x) elementwise: J_k -> f'(x) J_k and L -> f'(x) L + f''(x) sum_k J_k^2 (`rules.scale`).
Each primitive only needs its two derivatives, written in terms of x and y = f(x) so that y is
reused (exp, tanh, logistic, ...); both are computed once in the primal stage.
"""

from collections.abc import Callable

import jax.numpy as jnp
from jax import lax

from vmcjet.laplacian._jax_internals import Primitive, prims
from vmcjet.laplacian.rules import lazy, scale


def elementwise_rule(primitive: Primitive, derivatives: Callable) -> Callable:
    """The rule of a unary elementwise primitive from `derivatives(x, y, **params) -> (f', f'')`.

    `y = f(x)` is passed so that derivatives reuse it (exp, tanh, logistic); f'' may be None when it
    vanishes. Both are computed in the primal stage, once.
    """

    @lazy
    def rule1(x, **params):
        y = primitive.bind(x, **params)
        d1, d2 = derivatives(x, y, **params)
        return y, lambda t: scale(t, d1, d2)

    return rule1


def _integer_pow_derivatives(x, y_exp):
    def power(m):
        return jnp.ones_like(x) if m == 0 else lax.integer_pow(x, m)

    if y_exp == 0:
        return jnp.zeros_like(x), None
    d2 = None if y_exp == 1 else y_exp * (y_exp - 1) * power(y_exp - 2)
    return y_exp * power(y_exp - 1), d2


_TWO_OVER_SQRT_PI = 1.1283791670955126
_LN2 = 0.6931471805599453

_ELEMENTWISE = {
    prims.exp_p: lambda x, y: (y, y),
    prims.exp2_p: lambda x, y: (_LN2 * y, _LN2 * _LN2 * y),
    prims.expm1_p: lambda x, y: (y + 1, y + 1),
    prims.log_p: lambda x, y: (1 / x, -1 / (x * x)),
    prims.log1p_p: lambda x, y: (1 / (1 + x), -1 / ((1 + x) * (1 + x))),
    prims.tanh_p: lambda x, y: (1 - y * y, -2 * y * (1 - y * y)),
    prims.logistic_p: lambda x, y: (y * (1 - y), y * (1 - y) * (1 - 2 * y)),
    prims.sin_p: lambda x, y: (jnp.cos(x), -y),
    prims.cos_p: lambda x, y: (-jnp.sin(x), -y),
    prims.tan_p: lambda x, y: (1 + y * y, 2 * y * (1 + y * y)),
    prims.sinh_p: lambda x, y: (jnp.cosh(x), y),
    prims.cosh_p: lambda x, y: (jnp.sinh(x), y),
    prims.sqrt_p: lambda x, y: (0.5 / y, -0.25 / (x * y)),
    prims.rsqrt_p: lambda x, y: (-0.5 * y / x, 0.75 * y / (x * x)),
    prims.cbrt_p: lambda x, y: (y / (3 * x), -2 * y / (9 * x * x)),
    prims.atan_p: lambda x, y: (1 / (1 + x * x), -2 * x / ((1 + x * x) * (1 + x * x))),
    prims.asinh_p: lambda x, y: (lax.rsqrt(1 + x * x), -x * lax.rsqrt(1 + x * x) ** 3),
    prims.atanh_p: lambda x, y: (1 / (1 - x * x), 2 * x / ((1 - x * x) * (1 - x * x))),
    prims.erf_p: lambda x, y: (
        _TWO_OVER_SQRT_PI * jnp.exp(-x * x),
        -2 * x * _TWO_OVER_SQRT_PI * jnp.exp(-x * x),
    ),
    prims.erfc_p: lambda x, y: (
        -_TWO_OVER_SQRT_PI * jnp.exp(-x * x),
        2 * x * _TWO_OVER_SQRT_PI * jnp.exp(-x * x),
    ),
    prims.abs_p: lambda x, y: (jnp.sign(x), None),
    prims.square_p: lambda x, y: (2 * x, 2.0),
}

# every unary elementwise primitive with a rule here (`vmcjet.laplacian.taylor` takes its
# higher derivatives from JAX's own jvp rules of the same primitives)
UNARY_PRIMITIVES = (*_ELEMENTWISE, prims.integer_pow_p)


def register_rules(registry) -> None:
    """Registers this module's rules (see `vmcjet.laplacian.registry`)."""
    for primitive, derivatives in _ELEMENTWISE.items():
        rule = elementwise_rule(primitive, lambda x, out, d=derivatives, **params: d(x, out))
        registry.register(primitive, rule, lazy=True, source="rules_elementwise.elementwise_rule")
    integer_pow = elementwise_rule(
        prims.integer_pow_p, lambda x, out, *, y: _integer_pow_derivatives(x, y)
    )
    registry.register(
        prims.integer_pow_p, integer_pow, lazy=True, source="rules_elementwise.elementwise_rule"
    )

"""The one table from JAX primitive to propagation rule of the collapsed forward Laplacian.

Rules are registered explicitly, never by importing a module: each rule module has a function
`register_rules(registry)`, and `default_registry()` calls them in one fixed order

    rules (arithmetic, linear and structural primitives), rules_elementwise, rules_control,
    rules_dot (products, broadcasts, then fast paths for lazy stacks on rules registered before),
    rules_linalg (the named calls "slogdet" and "det")

on first use. Registering a primitive twice is an error. Named calls (a `jit` whose name is
"slogdet" or "det") get rules of their own (`Registry.register_call`), used instead of
interpreting the call's body. A fast path that makes an existing rule
handle lazy stacks (`Sparse`, `ElectronSlice`, `Rows`) first is added with `Registry.extend`, which
records what it adds. A primitive without a rule goes through `rules.fallback_rule` (nested jvps,
slower, with a warning). The table (primitive, rule, whether its push takes lazy stacks, fast
paths) is docs/rules.md, written by `python -m vmcjet.laplacian.rules_doc`; a test fails when
that file is stale.

Other stack types use the same interpreter with a registry of their own: the higher-order
operators (`vmcjet.laplacian.taylor`) build one that shares the order-agnostic rules (linear,
structural, control flow) and replaces the nonlinear ones. `active(registry)` makes a registry the
one `rule_for` reads while a function is traced.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import NamedTuple

from vmcjet.laplacian._jax_internals import Primitive


class Entry(NamedTuple):
    """A registered rule.

    Attributes:
        rule: `rule(primals, dependent, **params) -> (outs, push)` (see `rules`).
        source: the function that built it, "module.function" within vmcjet.laplacian.
        lazy: whether its push takes lazy stacks (else the engine materialises them first).
        fast_paths: extensions added by `Registry.extend`, "module.function (stack kinds)".
    """

    rule: Callable
    source: str
    lazy: bool
    fast_paths: tuple[str, ...] = ()


def source_of(fn: Callable) -> str:
    """ "module.function" of `fn` within vmcjet.laplacian; a closure is named by the function
    that made it (e.g. "rules.register_linear")."""
    module = fn.__module__.removeprefix("vmcjet.laplacian.")
    return f"{module}.{fn.__qualname__.split('.<locals>')[0]}"


class Registry:
    """Primitive -> `Entry`; filled once by the rule modules' `register_rules`.

    Args:
        fallback: `fallback(primitive) -> rule` for primitives without a rule of their own.
    """

    def __init__(self, fallback: Callable[[Primitive], Callable]) -> None:
        self._entries: dict[Primitive, Entry] = {}
        self._calls: dict[str, Callable] = {}
        self.fallback = fallback

    def register(
        self, primitive: Primitive, rule: Callable, *, lazy: bool, source: str | None = None
    ) -> None:
        """Adds the rule of `primitive` (built by `source`, default: where `rule` was defined).

        Raises:
            ValueError: `primitive` already has a rule.
        """
        if primitive in self._entries:
            raise ValueError(
                f"a rule for '{primitive.name}' is registered twice (first by "
                f"{self._entries[primitive].source}); add a fast path with Registry.extend"
            )
        self._entries[primitive] = Entry(rule, source or source_of(rule), lazy)

    def extend(
        self, primitive: Primitive, wrap: Callable[[Callable], Callable], *, description: str
    ) -> None:
        """Replaces the rule of `primitive` by `wrap(rule)`, a rule that handles some lazy stacks
        first and falls back to the old one, and records `description` as a fast path.

        Raises:
            ValueError: `primitive` has no rule yet, or already has this fast path.
        """
        entry = self._entries.get(primitive)
        if entry is None:
            raise ValueError(f"no rule for '{primitive.name}' to extend with {description}")
        if description in entry.fast_paths:
            raise ValueError(f"fast path {description} added twice to '{primitive.name}'")
        self._entries[primitive] = Entry(
            wrap(entry.rule), entry.source, True, (*entry.fast_paths, description)
        )

    def register_call(self, name: str, rule: Callable) -> None:
        """Adds the rule of a `jit` named `name` (e.g. "slogdet"), taken instead of its body.

        Raises:
            ValueError: `name` already has a rule.
        """
        if name in self._calls:
            raise ValueError(f"a rule for calls named '{name}' is registered twice")
        self._calls[name] = rule

    def call_rule(self, name: str | None) -> Callable | None:
        """The rule of a `jit` named `name`, or None (then its body is interpreted)."""
        return None if name is None else self._calls.get(name)

    def rule(self, primitive: Primitive) -> Callable | None:
        entry = self._entries.get(primitive)
        return None if entry is None else entry.rule

    def entries(self) -> dict[Primitive, Entry]:
        return dict(self._entries)

    def calls(self) -> dict[str, Callable]:
        """Name -> rule of the named calls (`register_call`)."""
        return dict(self._calls)


@functools.cache
def default_registry() -> Registry:
    """Every rule of vmcjet.laplacian, registered in the order of the module docstring."""
    from vmcjet.laplacian import rules, rules_control, rules_dot, rules_elementwise, rules_linalg

    registry = Registry(rules.fallback_rule)
    for module in (rules, rules_elementwise, rules_control, rules_dot, rules_linalg):
        module.register_rules(registry)
    return registry


_ACTIVE: contextvars.ContextVar[Registry | None] = contextvars.ContextVar("registry", default=None)


@contextlib.contextmanager
def active(registry: Registry) -> Iterator[None]:
    """Within the block, the engine takes its rules from `registry` (default: the Laplacian's)."""
    token = _ACTIVE.set(registry)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def current() -> Registry:
    """The registry the engine uses now: the one made `active`, else `default_registry()`."""
    return _ACTIVE.get() or default_registry()


def rule_for(primitive: Primitive) -> Callable | None:
    """The registered rule of `primitive`, or None (then the engine uses the fallback)."""
    return current().rule(primitive)


def rule_or_fallback(primitive: Primitive) -> Callable:
    """The rule the engine applies to `primitive`: its own, else the registry's fallback."""
    registry = current()
    return registry.rule(primitive) or registry.fallback(primitive)

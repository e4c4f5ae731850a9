"""The rule registry: explicit, no primitive registered twice, fast paths named, and
docs/rules.md generated from it."""

from pathlib import Path

import pytest

from vmcjet.laplacian._jax_internals import prims
from vmcjet.laplacian.registry import Registry, default_registry, rule_for
from vmcjet.laplacian.rules import fallback_rule, linear_rule
from vmcjet.laplacian.rules_doc import RULES_DOC, document

ROOT = Path(__file__).resolve().parents[2]


def test_docs_rules_table_is_current():
    """Regenerate with `python -m vmcjet.laplacian.rules_doc > docs/rules.md`."""
    assert (ROOT / RULES_DOC).read_text() == document()


def test_registering_a_primitive_twice_is_an_error():
    registry = Registry(fallback_rule)
    registry.register(prims.neg_p, linear_rule(prims.neg_p), lazy=False)
    with pytest.raises(ValueError, match="'neg' is registered twice"):
        registry.register(prims.neg_p, linear_rule(prims.neg_p), lazy=False)


def test_extend_needs_a_rule_and_adds_each_fast_path_once():
    registry = Registry(fallback_rule)
    with pytest.raises(ValueError, match="no rule for 'neg'"):
        registry.extend(prims.neg_p, lambda rule: rule, description="x")
    registry.register(prims.neg_p, linear_rule(prims.neg_p), lazy=False)
    registry.extend(prims.neg_p, lambda rule: rule, description="x")
    with pytest.raises(ValueError, match="added twice"):
        registry.extend(prims.neg_p, lambda rule: rule, description="x")
    entry = registry.entries()[prims.neg_p]
    assert entry.fast_paths == ("x",) and entry.lazy and entry.source == "rules.linear_rule"


def test_the_four_sparse_fast_paths_are_explicit_extensions():
    extended = {
        p.name: e.fast_paths for p, e in default_registry().entries().items() if e.fast_paths
    }
    assert set(extended) == {"neg", "reshape", "slice", "reduce_sum"}
    assert all(len(paths) == 1 for paths in extended.values())


def test_a_primitive_without_a_rule_has_none():
    assert rule_for(prims.dot_general_p) is not None
    assert rule_for(prims.sort_p) is None  # the engine falls back to nested jvps

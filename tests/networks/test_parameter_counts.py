"""Parameter counts: the closed-form formulas of docs/networks.md against the actual pytrees, and
the table of docs/networks.md against both."""

import itertools
import re
from pathlib import Path

import jax
import numpy as np
import pytest
from tiny_networks import tiny_config

from vmcjet.config import NetworkConfig
from vmcjet.molecule import load_molecule
from vmcjet.networks import make_wavefunction, parameter_count, resolve_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "networks.md"


def _documented_formula(cfg: NetworkConfig, mol) -> int:
    """The formulas as written in docs/networks.md ("Parameter counts")."""
    cfg = resolve_config(cfg)
    m, n, g = len(mol.symbols), mol.n_electrons, 1 if mol.n_beta == 0 else 2
    f = 4 if cfg.inputs == "vectors" else 1
    k, e = cfg.determinants, 2 if cfg.envelope == "isotropic" else 10
    if cfg.kind == "ferminet":
        h1, h2, layers = cfg.ferminet.hidden_one, cfg.ferminet.hidden_two, cfg.ferminet.layers
        width = h1
        backbone = ((1 + g) * f * m + g * f) * h1 + h1 + (f * h2 + h2 if layers > 1 else 0)
        backbone += (layers - 1) * (((1 + g) * h1 + g * h2) * h1 + h1)
        backbone += max(layers - 2, 0) * (h2 * h2 + h2)
    else:
        width = cfg.psiformer.heads * cfg.psiformer.head_dim
        backbone = (f * m + 2) * width + cfg.psiformer.layers * (5 * width**2 + 5 * width)
    orbs = [n, n] if cfg.full_determinant else [mol.n_alpha, mol.n_beta]
    orbitals = sum((width + 1 + e * m) * k * o for o in orbs[:g])
    return backbone + orbitals + (2 if cfg.jastrow else 0)


def _leaf_count(cfg: NetworkConfig, mol) -> int:
    wf = make_wavefunction(cfg, mol)
    shapes = jax.eval_shape(lambda key: wf.init(key=key), jax.random.PRNGKey(0))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(shapes))


KINDS = ("ferminet", "psiformer")
ENVELOPES = ("isotropic", "anisotropic")
INPUTS = ("vectors", "distances")
OPTIONS = list(itertools.product(KINDS, (False, True), ENVELOPES, INPUTS))


@pytest.mark.parametrize("name", ["H", "Li", "LiH", "N2"])
@pytest.mark.parametrize(("kind", "full", "envelope", "inputs"), OPTIONS)
def test_formula_matches_the_parameters(name, kind, full, envelope, inputs):
    mol = load_molecule(name)
    cfg = tiny_config(kind, full_determinant=full, envelope=envelope, inputs=inputs)
    count = _leaf_count(cfg, mol)
    assert count == _documented_formula(cfg, mol) == parameter_count(cfg, mol)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_formula_for_any_depth(layers):
    mol = load_molecule("LiH")
    cfg = tiny_config("ferminet")
    cfg = NetworkConfig(ferminet=type(cfg.ferminet)(hidden_one=8, hidden_two=8, layers=layers))
    assert _leaf_count(cfg, mol) == _documented_formula(cfg, mol)


ROW = re.compile(r"^\| (ferminet|psiformer) \| (cpu|paper) \| (\w+) \| (block|full) \| ([\d,]+) \|")


def test_documented_table_matches_the_defaults():
    rows = [ROW.match(line) for line in DOC.read_text().splitlines()]
    rows = [row.groups() for row in rows if row]
    assert len(rows) == 16
    for kind, preset, name, mode, count in rows:
        cfg = NetworkConfig(kind=kind, preset=preset, full_determinant=mode == "full")
        mol = load_molecule(name)
        assert int(count.replace(",", "")) == _leaf_count(cfg, mol) == _documented_formula(cfg, mol)

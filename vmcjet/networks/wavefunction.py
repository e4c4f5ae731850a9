"""make_wavefunction: a backbone (FermiNet or Psiformer) -> orbitals -> determinants (-> Jastrow).

    psi(r) = exp(J(r)) sum_k det[phi_kj(r_i)]

`apply` returns (sign, log|psi|) for one walker; batch it with `jax.vmap`. Parameters are cast to
the electrons' dtype inside `apply`, so float32 parameters can be evaluated in float64. An optional
third argument, a `Tape` (vmcjet.networks.layers), records every dense layer for KFAC.

`network.symmetry = "inversion"` (molecules with a centre of inversion, e.g. N2) evaluates
psi_sym(r) = psi(r) + psi(P r), P r_i = 2 c - r_i about the centre of nuclear charge c: psi_sym is
even under inversion, so |psi_sym|^2 and every expectation value are inversion symmetric (the
dipole vanishes in expectation), at twice the cost; antisymmetry is kept (P moves every electron
alike). Not with KFAC (its tape records one pass).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet.config import SYMMETRIES, FermiNetConfig, NetworkConfig, PsiformerConfig
from vmcjet.errors import InputError
from vmcjet.molecule import Molecule
from vmcjet.networks.determinants import dense_matrices, log_determinants, signed_log_sum
from vmcjet.networks.envelopes import check_envelope
from vmcjet.networks.features import INPUTS, electron_nucleus, input_width, spin_groups
from vmcjet.networks.ferminet import apply_ferminet, ferminet_size, init_ferminet
from vmcjet.networks.jastrow import apply_jastrow, init_jastrow
from vmcjet.networks.layers import Tape, scope
from vmcjet.networks.orbitals import apply_orbitals, init_orbitals, orbital_widths, orbitals_size
from vmcjet.networks.psiformer import apply_psiformer, init_psiformer, model_width, psiformer_size

# Published sizes: FermiNet (Pfau et al. 2020) and Psiformer (von Glehn et al. 2023).
PAPER_SIZES = {
    "ferminet": {"determinants": 16, "ferminet": FermiNetConfig(256, 32, 4)},
    "psiformer": {"determinants": 16, "psiformer": PsiformerConfig(4, 4, 64)},
}


class Wavefunction(NamedTuple):
    """Pure functions of a neural wavefunction.

    init(*, key, dtype=jnp.float32) -> params (a pytree of arrays).
    apply(params, electrons (n, 3) bohr, tape=None, *, nuclei=None) -> (sign, log|psi|)
        scalars; a `Tape` records the dense layers (names: key paths in params,
        `dense_layer_names`); `nuclei` (n_atoms, 3) bohr replaces the molecule's nuclear
        positions (for derivatives with respect to them, e.g. forces; None: the molecule's).
    orbitals(params, electrons (n, 3) bohr) -> (K, n, n) orbital matrices [k, i, j] = phi_kj(r_i).
    """

    init: Callable[..., dict]
    apply: Callable[[dict, jax.Array], tuple[jax.Array, jax.Array]]
    orbitals: Callable[[dict, jax.Array], jax.Array]


def resolve_config(cfg: NetworkConfig) -> NetworkConfig:
    """Validates the options and applies the preset; returns the config actually built."""
    if cfg.kind not in PAPER_SIZES:
        raise InputError(f"unknown network.kind '{cfg.kind}'; use 'ferminet' or 'psiformer'")
    check_envelope(cfg.envelope)
    if cfg.inputs not in INPUTS:
        raise InputError(f"unknown network.inputs '{cfg.inputs}'; use 'vectors' or 'distances'")
    if cfg.symmetry not in SYMMETRIES:
        raise InputError(f"unknown network.symmetry '{cfg.symmetry}'; use '' or 'inversion'")
    if cfg.preset == "paper":
        default = NetworkConfig()
        sizes = PAPER_SIZES[cfg.kind]
        changed = [k for k in sizes if getattr(cfg, k) != getattr(default, k)]
        if changed:
            raise InputError(
                f"network.preset='paper' sets network.{changed[0]}; remove that override "
                "or use preset='cpu'"
            )
        cfg = dataclasses.replace(cfg, **sizes)
    elif cfg.preset != "cpu":
        raise InputError(f"unknown network.preset '{cfg.preset}'; use 'cpu' or 'paper'")
    sizes = [cfg.determinants, *dataclasses.astuple(getattr(cfg, cfg.kind))]
    if min(sizes) < 1:
        raise InputError(f"network sizes must be >= 1, got {sizes} for {cfg.kind}; fix the config")
    if cfg.jastrow is None:
        cfg = dataclasses.replace(cfg, jastrow=cfg.kind == "psiformer")
    return cfg


def _width(cfg: NetworkConfig) -> int:
    return cfg.ferminet.hidden_one if cfg.kind == "ferminet" else model_width(cfg.psiformer)


def parameter_count(cfg: NetworkConfig, molecule: Molecule) -> int:
    """Number of scalar parameters, from the formulas in docs/networks.md."""
    cfg = resolve_config(cfg)
    n_atoms = len(molecule.symbols)
    groups = spin_groups(molecule.n_alpha, molecule.n_beta)
    f = input_width(cfg.inputs)
    if cfg.kind == "ferminet":
        backbone = ferminet_size(cfg.ferminet, (n_atoms, len(groups), f))
    else:
        backbone = psiformer_size(cfg.psiformer, f * n_atoms)
    orbitals = orbitals_size(
        width=_width(cfg),
        n_atoms=n_atoms,
        n_dets=cfg.determinants,
        n_orbs=orbital_widths(groups, cfg.full_determinant),
        envelope=cfg.envelope,
    )
    return backbone + orbitals + (2 if cfg.jastrow else 0)


class _Layout(NamedTuple):
    """Static facts about the molecule that shape the network."""

    n_alpha: int
    n_beta: int
    groups: tuple[tuple[int, int], ...]  # (start, stop) of the non-empty spin channels
    coords: np.ndarray  # (n_atoms, 3) nuclei, bohr
    smooth: np.ndarray  # (n_atoms,) True for nuclei with an ECP (softened distances, no cusp)


def _layout(molecule: Molecule) -> _Layout:
    n_alpha, n_beta = molecule.n_alpha, molecule.n_beta
    if n_alpha < 1 or n_beta < 0:
        raise InputError(
            f"{molecule.name}: need n_alpha >= 1 and n_beta >= 0, got {n_alpha}, {n_beta}; "
            "check the charge and spin (2S = N_alpha - N_beta >= 0)"
        )
    coords = np.asarray(molecule.coords, dtype=np.float64)
    smooth = np.asarray(molecule.core_electrons or (0,) * len(coords)) > 0
    return _Layout(n_alpha, n_beta, spin_groups(n_alpha, n_beta), coords, smooth)


def _init_params(cfg: NetworkConfig, layout: _Layout, key: jax.Array, dtype) -> dict:
    n_atoms, f = len(layout.coords), input_width(cfg.inputs)
    key_backbone, key_orbitals = jax.random.split(key)
    if cfg.kind == "ferminet":
        shape = (n_atoms, len(layout.groups), f)
        backbone = init_ferminet(key_backbone, cfg.ferminet, shape, dtype=dtype)
    else:
        backbone = init_psiformer(key_backbone, cfg.psiformer, f * n_atoms, dtype=dtype)
    orbitals = init_orbitals(
        key_orbitals,
        width=_width(cfg),
        n_atoms=n_atoms,
        n_dets=cfg.determinants,
        n_orbs=orbital_widths(layout.groups, cfg.full_determinant),
        envelope=cfg.envelope,
        dtype=dtype,
    )
    params = {"backbone": backbone, "orbitals": orbitals}
    if cfg.jastrow:
        params["jastrow"] = init_jastrow(dtype=dtype)
    return params


def _orbital_blocks(
    cfg: NetworkConfig,
    layout: _Layout,
    params: dict,
    electrons: jax.Array,
    tape: Tape | None,
    nuclei: jax.Array | None = None,
):
    """Per spin channel (K, n_s, n_orb) orbital values at electrons (n, 3), bohr, for the
    molecule's nuclei or `nuclei` (n_atoms, 3) bohr (the only place nuclear positions enter)."""
    nuclei = layout.coords.astype(electrons.dtype) if nuclei is None else nuclei
    ae, r_ae = electron_nucleus(electrons, nuclei, layout.smooth)
    backbone = scope(tape, "backbone")
    if cfg.kind == "ferminet":
        h = apply_ferminet(
            params["backbone"], electrons, ae, r_ae, layout.groups, cfg.inputs, backbone
        )
    else:
        h = apply_psiformer(
            params["backbone"], cfg.psiformer, ae, r_ae, layout.n_alpha, cfg.inputs, backbone
        )
    orbitals = scope(tape, "orbitals")
    return apply_orbitals(
        params["orbitals"], h, ae, r_ae, layout.groups, cfg.determinants, orbitals
    )


def _same_spin_coincide(electrons: jax.Array, layout: _Layout) -> jax.Array:
    """True if two same-spin electrons sit at exactly the same point, where psi = 0 exactly by
    antisymmetry (rounding may leave the two equal orbital rows a few ulp apart, so the determinant
    alone does not always give -inf there). A boolean: it carries no derivative."""
    coincide = jnp.zeros((), bool)
    for start, stop in layout.groups:
        group = electrons[start:stop]
        same = jnp.all(group[:, None, :] == group[None, :, :], axis=-1)
        coincide = coincide | jnp.any(same & ~np.eye(stop - start, dtype=bool))
    return coincide


def _check_inversion_symmetric(molecule: Molecule) -> None:
    """InputError unless inverting the nuclei through their centre of charge maps each nucleus
    onto one of the same charge (within 1e-6 bohr)."""
    coords, charges = np.asarray(molecule.coords), np.asarray(molecule.charges)
    images = 2 * inversion_centre(coords, charges) - coords
    gaps = np.linalg.norm(images[:, None, :] - coords[None, :, :], axis=-1)
    same = charges[:, None] == charges[None, :]
    if not np.all(np.any((gaps < 1e-6) & same, axis=1)):
        raise InputError(
            f"network.symmetry='inversion' needs a molecule with inversion symmetry; "
            f"{molecule.name}'s nuclei are not (remove the setting)"
        )


def inversion_centre(coords: Any, charges: Any) -> Any:
    """Centre of nuclear charge sum_I Z_I R_I / sum_I Z_I (3,), bohr (numpy or jax arrays)."""
    return (charges[:, None] * coords).sum(axis=0) / charges.sum()


def make_wavefunction(network_config: NetworkConfig, molecule: Molecule) -> Wavefunction:
    """The wavefunction of `molecule` described by `network_config` (see the module docstring)."""
    cfg = resolve_config(network_config)
    layout = _layout(molecule)
    if cfg.symmetry == "inversion":
        _check_inversion_symmetric(molecule)
    charges = np.asarray(molecule.charges, dtype=np.float64)

    def init(*, key: jax.Array, dtype=jnp.float32) -> dict:
        return _init_params(cfg, layout, key, dtype)

    def network(
        params: dict, electrons: jax.Array, tape: Tape | None, nuclei
    ) -> tuple[jax.Array, jax.Array]:
        blocks = _orbital_blocks(cfg, layout, params, electrons, tape, nuclei)
        sign, log_abs = signed_log_sum(*log_determinants(blocks, cfg.full_determinant))
        if cfg.jastrow:
            jastrow = apply_jastrow(params["jastrow"], electrons, layout.n_alpha, layout.n_beta)
            log_abs = log_abs + jastrow
        return sign, log_abs

    def apply(
        params: dict, electrons: jax.Array, tape: Tape | None = None, *, nuclei=None
    ) -> tuple[jax.Array, jax.Array]:
        params = _cast(params, electrons.dtype)
        if cfg.symmetry == "inversion":
            if tape is not None:
                raise InputError("network.symmetry='inversion' cannot record a KFAC tape")
            coords = layout.coords.astype(electrons.dtype) if nuclei is None else nuclei
            centre = inversion_centre(coords, jnp.asarray(charges, electrons.dtype))
            inverted = 2 * centre[None, :] - electrons
            sign_r, log_r = network(params, electrons, None, nuclei)
            sign_i, log_i = network(params, inverted, None, nuclei)
            # concatenate, not jnp.stack: jax 0.10's `stack` primitive has no engine rule
            signs = jnp.concatenate([sign_r[None], sign_i[None]])
            sign, log_abs = signed_log_sum(signs, jnp.concatenate([log_r[None], log_i[None]]))
        else:
            sign, log_abs = network(params, electrons, tape, nuclei)
        return sign, jnp.where(_same_spin_coincide(electrons, layout), -jnp.inf, log_abs)

    def orbitals(params: dict, electrons: jax.Array) -> jax.Array:
        params = _cast(params, electrons.dtype)
        blocks = _orbital_blocks(cfg, layout, params, electrons, None)
        return dense_matrices(blocks, cfg.full_determinant)

    return Wavefunction(init=init, apply=apply, orbitals=orbitals)


def _cast(params: dict, dtype) -> dict:
    return jax.tree_util.tree_map(lambda p: p.astype(dtype), params)

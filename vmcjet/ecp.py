"""Effective core potentials (pseudopotentials): data from pyscf, the local part as a potential,
the non-local part by a randomly rotated spherical quadrature of wavefunction ratios.

An atom with an ECP loses its n_core core electrons; its nucleus acts with the effective charge
Z_eff = Z - n_core in every Coulomb term (`vmcjet.molecule` does this), plus the semi-local
potential on each electron at r = |r_i - R| (bohr), in pyscf's form (as published for ccECP):

    V_ecp(r_i) = V_loc(r) + sum_{l=0}^{L-1} V_l(r) sum_m |l m><l m|,
    V_x(r)     = sum_k c_k r^(n_k - 2) exp(-a_k r^2)     (hartree; pyscf lists terms by n_k)

|l m><l m| projects onto angular momentum l about the atom. With sum_m Y_lm(u) Y_lm*(u') =
(2l + 1) / (4 pi) P_l(u . u'), its contribution to the local energy of psi is, for electron i at
R + r u,

    (V_nl psi) / psi = sum_l V_l(r) (2l + 1) / (4 pi) int dOmega' P_l(u . u') psi' / psi
                     ~ sum_l V_l(r) (2l + 1) sum_q w_q P_l(u . u_q) psi_q / psi,

where psi' (psi_q) is psi with electron i moved to R + r u' (R + r u_q).

The quadrature is the 12 vertices u_q of an icosahedron with weights 1/12, exact for spherical
polynomials up to degree 5 (Mitas, Shirley and Ceperley, J. Chem. Phys. 95, 3467 (1991)). Each
walker's grid is turned by its own rotation drawn uniformly from SO(3) (`random_rotations`, from the
run's "ecp" random stream), so every rotated point is uniform on the sphere and the estimate is
unbiased for any psi. Cost: 12 evaluations of psi per electron and ECP atom (no cut-off radius).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet import elements
from vmcjet.errors import InputError

Array = jax.Array
SignedLogPsi = Callable[[Array], tuple[Array, Array]]  # electrons (n, 3) -> (sign, log|psi|)

ALL_HEAVY_ATOMS_FROM = 3  # "ccecp" alone: every atom with Z >= 3 (H and He keep all electrons)


class Channel(NamedTuple):
    """One radial function V(r) = sum_k c_k r^(n_k - 2) exp(-a_k r^2), hartree.

    Attributes:
        powers: n_k, shape (terms,), integers.
        exponents: a_k, shape (terms,), bohr^-2.
        coefficients: c_k, shape (terms,), hartree bohr^(2 - n_k).
    """

    powers: np.ndarray
    exponents: np.ndarray
    coefficients: np.ndarray


class AtomEcp(NamedTuple):
    """The ECP of one atom of a molecule.

    Attributes:
        atom: index of the atom in the molecule.
        core: number of core electrons it removes.
        local: V_loc (all angular momenta).
        nonlocal_: V_l for l = 0, 1, ..., L - 1 (projected onto angular momentum l).
    """

    atom: int
    core: int
    local: Channel
    nonlocal_: tuple[Channel, ...]


def parse_spec(spec: str, symbols: tuple[str, ...]) -> dict[str, str]:
    """Element -> ECP name for a molecule's element `symbols`.

    `spec` is "" (all electrons), one name for every atom with Z >= 3 ("ccecp"), or per element
    "Si:ccecp,O:ccecp".

    Raises:
        InputError: malformed spec, an element not in the molecule, an unknown ECP name, or an
            element the ECP has no entry for.
    """
    text = spec.strip()
    if not text:
        return {}
    if ":" not in text:
        heavy = [s for s in symbols if elements.atomic_number(s) >= ALL_HEAVY_ATOMS_FROM]
        chosen = {symbol: text for symbol in dict.fromkeys(heavy)}
    else:
        chosen = {}
        for item in text.split(","):
            symbol, _, name = (part.strip() for part in item.partition(":"))
            if not symbol or not name or ":" in name:
                raise InputError(
                    f"malformed system.ecp '{spec}'; use one name (\"ccecp\") or "
                    f'element:name pairs ("Si:ccecp,O:ccecp")'
                )
            if symbol not in symbols:
                raise InputError(
                    f"system.ecp names {symbol}, which is not in the molecule "
                    f"({', '.join(dict.fromkeys(symbols))}); remove it"
                )
            chosen[symbol] = name
    for symbol, name in chosen.items():
        pyscf_data(name, symbol)  # raises on unknown names and missing elements
    return chosen


@functools.cache
def pyscf_data(name: str, symbol: str) -> list:
    """pyscf's ECP `name` for element `symbol`: [n_core, [[l, terms by n], ...]] (l = -1: local);
    read once per process (the spec is parsed by the molecule, Hartree-Fock and every local-energy
    build). Callers must not change the returned list.

    Raises:
        InputError: pyscf does not know `name`, or it has no entry for `symbol`.
    """
    from pyscf import gto

    try:
        with warnings.catch_warnings():  # pyscf's "install basis-set-exchange" hint
            warnings.simplefilter("ignore")
            data = gto.basis.load_ecp(name, symbol)
    except (RuntimeError, KeyError, ValueError) as err:
        raise InputError(
            f"unknown ECP '{name}' (pyscf: {' '.join(str(err).split())}); use e.g. "
            'system.ecp = "ccecp"'
        ) from None
    if not data:
        raise InputError(
            f"ECP '{name}' has no entry for {symbol}; leave {symbol} all-electron (name the "
            f'other elements, e.g. system.ecp = "O:{name}") or choose another ECP'
        )
    return data


def _channel(terms_by_power: list) -> Channel:
    powers, exponents, coefficients = [], [], []
    for n, terms in enumerate(terms_by_power):
        for exponent, coefficient in terms:
            powers.append(n)
            exponents.append(exponent)
            coefficients.append(coefficient)
    return Channel(np.array(powers), np.array(exponents), np.array(coefficients))


def atom_ecps(symbols: tuple[str, ...], spec: str) -> tuple[AtomEcp, ...]:
    """The ECP of every atom whose element has one under the system.ecp `spec` (`parse_spec`),
    in atom order."""
    chosen = parse_spec(spec, symbols)
    out = []
    for atom, symbol in enumerate(symbols):
        if symbol not in chosen:
            continue
        core, channels = pyscf_data(chosen[symbol], symbol)
        by_momentum = {momentum: _channel(terms) for momentum, terms in channels}
        empty = Channel(np.zeros(0, int), np.zeros(0), np.zeros(0))
        top = max(by_momentum, default=-1)
        nonlocal_ = tuple(by_momentum.get(momentum, empty) for momentum in range(top + 1))
        out.append(AtomEcp(atom, int(core), by_momentum.get(-1, empty), nonlocal_))
    return tuple(out)


def radial(channel: Channel, r: Array) -> Array:
    """V(r) of a channel at distances r (any shape, bohr), hartree, in r's dtype."""
    if channel.powers.size == 0:
        return jnp.zeros_like(r)
    c = jnp.asarray(channel.coefficients, r.dtype)
    a = jnp.asarray(channel.exponents, r.dtype)
    n = jnp.asarray(channel.powers - 2, r.dtype)
    rr = jnp.expand_dims(r, -1)
    shape = (1,) * r.ndim + (-1,)
    c, a, n = (jnp.reshape(v, shape) for v in (c, a, n))
    return jnp.sum(c * rr**n * jnp.exp(-a * rr * rr), axis=-1)


def local_energy_part(electrons: Array, coords: Array, ecps: tuple[AtomEcp, ...]) -> Array:
    """sum_i sum_atoms V_loc(|r_i - R|) of one configuration (n, 3) bohr: scalar, hartree."""
    total = jnp.zeros((), electrons.dtype)
    for ecp in ecps:
        r = jnp.linalg.norm(electrons - coords[ecp.atom][None, :], axis=-1)
        total = total + jnp.sum(radial(ecp.local, r))
    return total


def icosahedron() -> np.ndarray:
    """The 12 unit vectors to the vertices of an icosahedron, shape (12, 3)."""
    z, rho = 1 / np.sqrt(5), 2 / np.sqrt(5)
    ring = [
        (rho * np.cos(np.pi * k / 5), rho * np.sin(np.pi * k / 5), z if k % 2 == 0 else -z)
        for k in range(10)
    ]
    return np.array([(0.0, 0.0, 1.0), (0.0, 0.0, -1.0), *ring])


def random_rotations(key: Array, count: int, dtype: Any = jnp.float32) -> Array:
    """`count` rotation matrices uniform over SO(3) (from uniform unit quaternions), shape
    (count, 3, 3)."""
    q = jax.random.normal(key, (count, 4), dtype)
    w, x, y, z = jnp.moveaxis(q / jnp.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)


def _legendre(degree: int, x: Array) -> Array:
    """P_degree(x) by Bonnet's recursion."""
    previous, current = jnp.ones_like(x), x
    if degree == 0:
        return previous
    for k in range(1, degree):
        previous, current = current, ((2 * k + 1) * x * current - k * previous) / (k + 1)
    return current


def nonlocal_energy_part(
    signed_log_psi: SignedLogPsi,
    electrons: Array,
    coords: Array,
    ecps: tuple[AtomEcp, ...],
    rotation: Array,
) -> Array:
    """(V_nl psi) / psi of one configuration by the rotated quadrature (module docstring).

    Args:
        signed_log_psi: electrons (n, 3) -> (sign, log|psi|).
        electrons: positions, shape (n, 3), bohr.
        coords: nuclear positions, shape (n_atoms, 3), bohr.
        ecps: the molecule's atom ECPs (`atom_ecps`).
        rotation: the quadrature grid's rotation, shape (3, 3).

    Returns:
        Scalar, hartree.
    """
    n = electrons.shape[0]
    grid = jnp.asarray(icosahedron(), electrons.dtype) @ rotation.T  # (12, 3)
    sign, log = signed_log_psi(electrons)
    moved = jnp.eye(n, dtype=bool)[:, None, :, None]  # (n, 1, n, 1): electron i is moved
    total = jnp.zeros((), electrons.dtype)
    for ecp in ecps:
        if not ecp.nonlocal_:
            continue
        centre = coords[ecp.atom]
        offset = electrons - centre[None, :]
        r = jnp.linalg.norm(offset, axis=-1)  # (n,)
        cosines = (offset / r[:, None]) @ grid.T  # (n, 12)
        points = centre[None, None, :] + r[:, None, None] * grid[None, :, :]  # (n, 12, 3)
        configs = jnp.where(moved, points[:, :, None, :], electrons[None, None, :, :])
        signs, logs = jax.vmap(signed_log_psi)(configs.reshape(-1, n, 3))
        ratios = (signs * sign * jnp.exp(logs - log)).reshape(n, -1)
        weights = sum(
            radial(channel, r)[:, None] * (2 * momentum + 1) * _legendre(momentum, cosines)
            for momentum, channel in enumerate(ecp.nonlocal_)
        )
        total = total + jnp.sum(weights * ratios) / grid.shape[0]
    return total

"""A molecule: nuclei (bohr), nuclear charges, total charge and spin. Loading and validation.

A molecule is given as a catalogue name (`LiH`, case-insensitive), a molecule TOML file, or an
`.xyz` file (angstrom). A molecule TOML file has this schema::

    name = "LiH"                      # optional, defaults to the file name
    units = "bohr"                    # required: "bohr" or "angstrom"
    charge = 0                        # total charge (e), default 0
    spin = 0                          # 2S = N_alpha - N_beta, default N_electrons mod 2
    geometry_source = "..."           # where the geometry comes from
    [[atoms]]
    symbol = "Li"
    coords = [0.0, 0.0, 0.0]
    [[references]]                    # optional, any number
    energy = -8.070548                # hartree
    kind = "exact"                    # "exact", "ferminet", "psiformer", "ccsd(t)", ...
    source = "citation"
    ecp = "ccecp"                     # optional: the energy is for this system.ecp (default "")

With an effective core potential (`load_molecule(..., ecp="ccecp")`, `vmcjet.ecp`) the atoms it
applies to lose their core electrons: `charges` are then the effective charges Z - n_core (used in
every Coulomb term, the electron count, walker initialisation and spins), and only the references
made with the same `ecp` are kept.

Everything is checked here, before any JAX work; every problem is an `InputError` with one line
naming the problem and the fix. The built-in catalogue is `molecules/` at the repository root,
packaged as `vmcjet/_catalogue` in a wheel.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vmcjet import ecp as ecps
from vmcjet import elements
from vmcjet.errors import InputError
from vmcjet.fileio import read_text
from vmcjet.units import LENGTH_UNITS

MIN_NUCLEAR_DISTANCE = 0.1  # bohr; closer nuclei are an input error
_PACKAGE_DIR = Path(__file__).resolve().parent
_CATALOGUE_DIRS = (_PACKAGE_DIR / "_catalogue", _PACKAGE_DIR.parent / "molecules")
_TOP_LEVEL_KEYS = ("name", "units", "charge", "spin", "geometry_source", "atoms", "references")


@dataclass(frozen=True, eq=False)
class Reference:
    """A published energy of a system, hartree (`ecp`: the system.ecp it was made with, "" for
    all electrons)."""

    energy: float  # hartree
    kind: str  # "exact" (estimated exact non-relativistic), "ferminet", "psiformer", "ccsd(t)", ...
    source: str  # citation
    ecp: str = ""


@dataclass(frozen=True, eq=False)
class Molecule:
    """Nuclei and electrons of a system, atomic units.

    Attributes:
        name: display name ("LiH").
        symbols: element symbols, length n_atoms.
        coords: nuclear positions, shape (n_atoms, 3), bohr.
        charges: nuclear charges Z, shape (n_atoms,), units of e; with an ECP the effective
            charges Z - n_core.
        charge: total charge of the system (e).
        spin: 2S = N_alpha - N_beta.
        references: published energies.
        geometry_source: where the geometry comes from.
        ecp: the system.ecp spec applied ("" for all electrons; `vmcjet.ecp.parse_spec`).
        core_electrons: core electrons removed per atom by the ECP, length n_atoms.
    """

    name: str
    symbols: tuple[str, ...]
    coords: np.ndarray
    charges: np.ndarray
    charge: int = 0
    spin: int = 0
    references: tuple[Reference, ...] = field(default_factory=tuple)
    geometry_source: str = ""
    ecp: str = ""
    core_electrons: tuple[int, ...] = ()

    @property
    def n_electrons(self) -> int:
        return int(round(float(np.sum(self.charges)))) - self.charge

    @property
    def n_alpha(self) -> int:
        return (self.n_electrons + self.spin) // 2

    @property
    def n_beta(self) -> int:
        return (self.n_electrons - self.spin) // 2

    @property
    def all_electron_charges(self) -> np.ndarray:
        """`charges`, with 0 for the atoms whose core an ECP removed, shape (n_atoms,)."""
        cores = np.asarray(self.core_electrons or (0,) * len(self.symbols))
        return np.where(cores > 0, 0.0, self.charges)

    @property
    def exact_energy(self) -> float | None:
        """Estimated exact non-relativistic energy (hartree), if known."""
        return next((r.energy for r in self.references if r.kind == "exact"), None)

    @property
    def nuclear_repulsion(self) -> float:
        """sum_{I<J} Z_I Z_J / |R_I - R_J|, hartree."""
        upper = np.triu_indices(len(self.symbols), k=1)
        pair_charges = (self.charges[:, None] * self.charges[None, :])[upper]
        return float(np.sum(pair_charges / pair_distances(self.coords)))


def pair_distances(coords: np.ndarray) -> np.ndarray:
    """Distances |R_I - R_J| for I < J (upper triangle, row-major), shape (n(n-1)/2,), bohr."""
    coords = np.asarray(coords, dtype=np.float64)
    diff = coords[:, None, :] - coords[None, :, :]
    upper = np.triu_indices(len(coords), k=1)
    return np.linalg.norm(diff, axis=-1)[upper]


def min_internuclear_distance(molecule: Molecule) -> float | None:
    """The smallest distance between two nuclei (bohr); None for a single atom."""
    distances = pair_distances(molecule.coords)
    return float(distances.min()) if distances.size else None


def catalogue_dir() -> Path:
    """The folder of built-in molecule files: the packaged copy first, then the repository's."""
    for folder in _CATALOGUE_DIRS:
        if folder.is_dir() and any(folder.glob("*.toml")):
            return folder
    raise InputError(f"molecule catalogue not found in {_CATALOGUE_DIRS[1]}; reinstall vmcjet")


def _catalogue_files() -> dict[str, Path]:
    return {path.stem: path for path in catalogue_dir().glob("*.toml")}


def catalogue_names() -> list[str]:
    """Names of the built-in molecules ("LiH", "N2", ...), sorted case-insensitively."""
    return sorted(_catalogue_files(), key=str.lower)


def load_molecule(
    spec: str | Path, *, charge: int | None = None, spin: int | None = None, ecp: str = ""
) -> Molecule:
    """Loads and validates a molecule.

    Args:
        spec: a catalogue name (case-insensitive), or a path to a molecule `.toml` or `.xyz` file.
        charge: overrides the total charge (e).
        spin: overrides 2S = N_alpha - N_beta.
        ecp: effective core potentials, "" (all electrons), "ccecp" (every atom with Z >= 3) or
            per element "Si:ccecp,O:ccecp" (`vmcjet.ecp.parse_spec`).

    Returns:
        The molecule, coordinates in bohr.

    Raises:
        InputError: anything wrong with the input, on one line with the fix.
    """
    path = _resolve(spec)
    raw = _read_xyz(path) if path.suffix.lower() == ".xyz" else _read_toml(path)
    raw.setdefault("name", path.stem)
    if charge is not None:
        raw["charge"] = charge
    if spin is not None:
        raw["spin"] = spin
    return _build(raw, where=str(spec), ecp=ecp)


def _resolve(spec: str | Path) -> Path:
    """The file behind `spec`: an existing .toml/.xyz path, or a catalogue entry."""
    text = str(spec).strip()
    path = Path(text).expanduser()
    looks_like_path = isinstance(spec, Path) or path.suffix or "/" in text or "\\" in text
    if not looks_like_path:
        files = {name.lower(): file for name, file in _catalogue_files().items()}
        if text.lower() in files:
            return files[text.lower()]
        lower = {name.lower(): name for name in catalogue_names()}
        close = [lower[c] for c in difflib.get_close_matches(text.lower(), lower, n=3, cutoff=0.4)]
        hint = (
            f"did you mean {', '.join(close)}?" if close else "run `vmcjet molecules` for the list"
        )
        raise InputError(f"unknown molecule '{text}'; {hint} (or give a .toml/.xyz file)")
    if path.suffix.lower() not in (".toml", ".xyz"):
        raise InputError(f"molecule file '{text}' must end in .toml or .xyz; rename or convert it")
    if not path.is_file():
        raise InputError(f"molecule file '{text}' not found; check the path")
    return path


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(read_text(path, "molecule file", "fix the file"))
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"malformed TOML in molecule file '{path}': {err}; fix the file") from None
    for key in raw:
        if key not in _TOP_LEVEL_KEYS:
            close = difflib.get_close_matches(key, _TOP_LEVEL_KEYS, n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else f"valid keys: {', '.join(_TOP_LEVEL_KEYS)}"
            )
            raise InputError(f"molecule file '{path}': unknown key '{key}'; {hint}")
    return raw


def _read_xyz(path: Path) -> dict[str, Any]:
    """An .xyz file: atom count, a comment line, then `symbol x y z` lines in angstrom."""
    lines = [line.split() for line in read_text(path, "xyz file", "fix the file").splitlines()]
    try:
        count = int(lines[0][0])
    except (IndexError, ValueError):
        raise InputError(f"xyz file '{path}': first line must be the number of atoms") from None
    rows = [row for row in lines[2:] if row]
    if len(rows) != count:
        raise InputError(
            f"xyz file '{path}': says {count} atoms but has {len(rows)}; fix the count"
        )
    atoms = []
    for row in rows:
        if len(row) < 4:
            raise InputError(f"xyz file '{path}': line '{' '.join(row)}' needs symbol x y z")
        atoms.append({"symbol": row[0], "coords": [_xyz_number(path, v) for v in row[1:4]]})
    comment = " ".join(lines[1]) if len(lines) > 1 else ""
    return {"units": "angstrom", "atoms": atoms, "geometry_source": comment or str(path)}


def _xyz_number(path: Path, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"xyz file '{path}': '{text}' is not a number; fix the coordinate"
        ) from None


def _build(raw: dict[str, Any], where: str, ecp: str = "") -> Molecule:
    """Validates the raw fields and returns the Molecule (coordinates converted to bohr, charges
    reduced by the cores of the `ecp` spec)."""
    scale = _units(raw.get("units"), where)
    symbols, coords = _atoms(raw.get("atoms"), where)
    coords = coords * scale
    _check_distances(symbols, coords, where)
    cores = core_electrons(tuple(symbols), ecp)
    charges = np.array([elements.atomic_number(s) for s in symbols], dtype=np.float64)
    charges = charges - np.array(cores, dtype=np.float64)
    charge = _integer(raw.get("charge", 0), "charge", where)
    n_electrons = int(charges.sum()) - charge
    if n_electrons <= 0:
        raise InputError(
            f"molecule '{where}': charge {charge} leaves {n_electrons} electrons; "
            f"use a charge below {int(charges.sum())}"
        )
    spin = _integer(raw.get("spin", n_electrons % 2), "spin", where)
    _check_spin(spin, n_electrons, where)
    coords.setflags(write=False)
    charges.setflags(write=False)
    return Molecule(
        name=str(raw["name"]),
        symbols=tuple(symbols),
        coords=coords,
        charges=charges,
        charge=charge,
        spin=spin,
        references=tuple(
            r for r in _references(raw.get("references", []), where) if r.ecp == ecp.strip()
        ),
        geometry_source=str(raw.get("geometry_source", "")),
        ecp=ecp.strip(),
        core_electrons=cores,
    )


def core_electrons(symbols: tuple[str, ...], ecp: str) -> tuple[int, ...]:
    """Core electrons the `ecp` spec removes from each atom (0 without one)."""
    by_atom = {e.atom: e.core for e in ecps.atom_ecps(symbols, ecp)}
    return tuple(by_atom.get(i, 0) for i in range(len(symbols)))


def _units(units: Any, where: str) -> float:
    valid = " or ".join(f'"{u}"' for u in LENGTH_UNITS)
    if units is None:
        raise InputError(f"molecule '{where}': missing units; add units = {valid}")
    if not isinstance(units, str) or units not in LENGTH_UNITS:
        raise InputError(f"molecule '{where}': unknown units {units!r}; use units = {valid}")
    return LENGTH_UNITS[units]


def _atoms(atoms: Any, where: str) -> tuple[list[str], np.ndarray]:
    if not isinstance(atoms, list) or not atoms:
        raise InputError(
            f"molecule '{where}': no atoms; add [[atoms]] tables with symbol and coords"
        )
    symbols, coords = [], []
    for index, atom in enumerate(atoms):
        if not isinstance(atom, dict) or "symbol" not in atom:
            raise InputError(f"molecule '{where}': atom {index} has no symbol; add symbol = \"H\"")
        try:
            symbol = elements.lookup(atom["symbol"]).symbol
        except InputError as err:
            raise InputError(f"molecule '{where}': {err}") from None
        symbols.append(symbol)
        coords.append(_coords(atom.get("coords"), f"atom {index} ({symbol})", where))
    return symbols, np.array(coords, dtype=np.float64)


def _coords(value: Any, label: str, where: str) -> list[float]:
    fix = "give coords = [x, y, z] with three finite numbers"
    if value is None:
        raise InputError(f"molecule '{where}': {label} has no coordinates; {fix}")
    numeric = isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    )
    if not numeric or len(value) != 3:
        raise InputError(f"molecule '{where}': {label} has coordinates {value!r}; {fix}")
    if not all(math.isfinite(v) for v in value):
        raise InputError(f"molecule '{where}': {label} has non-finite coordinates {value}; {fix}")
    return [float(v) for v in value]


def _check_distances(symbols: list[str], coords: np.ndarray, where: str) -> None:
    n = len(symbols)
    if n < 2:
        return
    distances = pair_distances(coords)
    k = int(np.argmin(distances))
    if distances[k] < MIN_NUCLEAR_DISTANCE:
        i, j = (int(a[k]) for a in np.triu_indices(n, k=1))
        raise InputError(
            f"molecule '{where}': nuclei {i} ({symbols[i]}) and {j} ({symbols[j]}) are "
            f"{distances[k]:.3g} bohr apart (minimum {MIN_NUCLEAR_DISTANCE}); check the "
            "coordinates and units"
        )


def _integer(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"molecule '{where}': {key} must be an integer, got {value!r}")
    return value


def _check_spin(spin: int, n_electrons: int, where: str) -> None:
    if abs(spin) > n_electrons:
        raise InputError(
            f"molecule '{where}': |spin| = {abs(spin)} exceeds the {n_electrons} electrons; "
            f"spin is 2S = N_alpha - N_beta, at most {n_electrons}"
        )
    if (n_electrons - spin) % 2:
        hint = ""
        if spin > 0 and (n_electrons - spin + 1) % 2 == 0:
            hint = f" (spin looks like the multiplicity 2S+1; did you mean spin = {spin - 1}?)"
        raise InputError(
            f"molecule '{where}': spin {spin} has the wrong parity for {n_electrons} electrons; "
            f"spin = 2S = N_alpha - N_beta must be {'odd' if n_electrons % 2 else 'even'}{hint}"
        )


def _references(refs: Any, where: str) -> tuple[Reference, ...]:
    fix = "write [[references]] with energy (hartree), kind and source"
    if not isinstance(refs, list):
        raise InputError(f"molecule '{where}': references must be a list of tables; {fix}")
    out = []
    for ref in refs:
        energy = ref.get("energy") if isinstance(ref, dict) else None
        finite = isinstance(energy, int | float) and not isinstance(energy, bool)
        if not finite or not math.isfinite(energy):
            raise InputError(f"molecule '{where}': reference {ref!r} has no finite energy; {fix}")
        out.append(
            Reference(
                float(energy),
                str(ref.get("kind", "")),
                str(ref.get("source", "")),
                str(ref.get("ecp", "")),
            )
        )
    return tuple(out)

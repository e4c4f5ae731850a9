"""Element data: the one place that maps element symbols to atomic numbers and names.

Covers hydrogen to krypton (Z = 1..36), enough for the catalogue and for third-row molecules
such as P2. `lookup` accepts any case ("li", "LI", "Li") and returns the canonical symbol; for an
unknown symbol it suggests the closest known ones.
"""

from __future__ import annotations

import difflib
from typing import NamedTuple

from vmcjet.errors import InputError


class Element(NamedTuple):
    symbol: str  # "Li"
    atomic_number: int  # Z, the nuclear charge in units of e
    name: str  # "lithium"


_TABLE = (  # (symbol, name) in order of atomic number
    ("H", "hydrogen"),
    ("He", "helium"),
    ("Li", "lithium"),
    ("Be", "beryllium"),
    ("B", "boron"),
    ("C", "carbon"),
    ("N", "nitrogen"),
    ("O", "oxygen"),
    ("F", "fluorine"),
    ("Ne", "neon"),
    ("Na", "sodium"),
    ("Mg", "magnesium"),
    ("Al", "aluminium"),
    ("Si", "silicon"),
    ("P", "phosphorus"),
    ("S", "sulfur"),
    ("Cl", "chlorine"),
    ("Ar", "argon"),
    ("K", "potassium"),
    ("Ca", "calcium"),
    ("Sc", "scandium"),
    ("Ti", "titanium"),
    ("V", "vanadium"),
    ("Cr", "chromium"),
    ("Mn", "manganese"),
    ("Fe", "iron"),
    ("Co", "cobalt"),
    ("Ni", "nickel"),
    ("Cu", "copper"),
    ("Zn", "zinc"),
    ("Ga", "gallium"),
    ("Ge", "germanium"),
    ("As", "arsenic"),
    ("Se", "selenium"),
    ("Br", "bromine"),
    ("Kr", "krypton"),
)

ELEMENTS: dict[str, Element] = {
    symbol: Element(symbol, z, name) for z, (symbol, name) in enumerate(_TABLE, start=1)
}
"""Symbol -> Element, in order of atomic number."""

_BY_LOWER = {symbol.lower(): element for symbol, element in ELEMENTS.items()}


def lookup(symbol: str) -> Element:
    """The element with this symbol (any case: "li", "LI" and "Li" are lithium).

    Raises:
        InputError: unknown symbol, with the closest known symbols as a suggestion.
    """
    element = _BY_LOWER.get(str(symbol).strip().lower())
    if element is not None:
        return element
    close = difflib.get_close_matches(str(symbol).strip().lower(), list(_BY_LOWER), n=3, cutoff=0.3)
    hint = ", ".join(_BY_LOWER[c].symbol for c in close)
    known = f"known elements are {_TABLE[0][0]}..{_TABLE[-1][0]}"
    suggestion = f"did you mean {hint}?" if close else known
    raise InputError(f"unknown element '{symbol}'; {suggestion}")


def atomic_number(symbol: str) -> int:
    """Z of the element with this symbol (any case)."""
    return lookup(symbol).atomic_number

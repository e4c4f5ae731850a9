"""Error bars of correlated Monte Carlo series by reblocking (Flyvbjerg and Petersen 1989).

A series x_1..x_n (e.g. the mean local energy per step) is correlated in time, so sigma/sqrt(n)
underestimates the error of its mean. Reblocking replaces the series by the means of consecutive
pairs, again and again: at level k the blocks have B = 2^k entries and the naive error of the mean
of the n_k block means, err_k = sqrt(s_k^2 / n_k) (s_k^2: sample variance of the block means), grows
with k until the blocks are longer than the correlation time, then stays on a plateau.

Automatic block choice (Lee, Booth, Filippi and Umrigar, J. Chem. Phys. 135, 084109 (2011), a
Wolff-type criterion, also used by pyblock): take the smallest level whose block size satisfies

    B^3 > 2 n (err_k / err_0)^4,

which balances the bias of short blocks (~tau / B) against the noise of few blocks (~1/sqrt(n_k)).
If no level satisfies it (a series too short for its correlation time) the last level with at
least 2 blocks is used; its error is then a lower bound.

The reported tau is the statistical inefficiency tau = 1 + 2 sum_{t>=1} rho(t) (the integrated
autocorrelation time in the convention where independent data have tau = 1), estimated as
n err^2 / s_0^2: the number of steps per independent sample.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from vmcjet.errors import InputError


class Estimate(NamedTuple):
    """Mean of a correlated series with its error bar.

    Attributes:
        mean: the sample mean (units of the data, e.g. hartree).
        error: standard error of the mean from reblocking.
        variance: sample variance of the data (units squared).
        tau: statistical inefficiency 1 + 2 sum rho(t), steps; 1 for independent data.
        n: number of data points.
    """

    mean: float
    error: float
    variance: float
    tau: float
    n: int

    def __str__(self) -> str:
        return format_value_error(self.mean, self.error)

    def plus_minus(self) -> str:
        """'mean ± error' with the error rounded to two significant digits."""
        decimals = _decimals(self.error)
        return f"{self.mean:.{decimals}f} ± {self.error:.{decimals}f}"


def _decimals(error: float, digits: int = 2) -> int:
    """Decimal places that show `error` with `digits` significant digits (at least 0)."""
    if not math.isfinite(error) or error <= 0:
        return 6
    decimals = digits - 1 - math.floor(math.log10(error))
    if round(error * 10**decimals) >= 10**digits:  # 0.000996 rounds up to 0.0010
        decimals -= 1
    return max(decimals, 0)


def format_value_error(mean: float, error: float, digits: int = 2) -> str:
    """Concise notation: format_value_error(-8.070123, 0.00034) == '-8.07012(34)'.

    Args:
        mean: the value.
        error: its standard error (non-finite or zero: the value alone with 6 decimals).
        digits: significant digits of the error.

    Returns:
        The value rounded to the error's last digit, with the error digits in parentheses.
    """
    if not math.isfinite(error) or error <= 0:
        return f"{mean:.6f}"
    decimals = _decimals(error, digits)
    return f"{mean:.{decimals}f}({round(error * 10**decimals)})"


def reblock(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block sizes and naive errors of the mean at each reblocking level.

    Args:
        data: the series, shape (n,), n >= 2.

    Returns:
        (block_sizes (L,), errors (L,)): level k has blocks of 2^k entries; an odd trailing entry
        is dropped when pairing. Levels run while at least 2 blocks remain.
    """
    blocks = np.asarray(data, dtype=np.float64)
    sizes, errors = [], []
    size = 1
    while blocks.size >= 2:
        sizes.append(size)
        errors.append(np.sqrt(np.var(blocks, ddof=1) / blocks.size))
        even = blocks.size - blocks.size % 2
        blocks = 0.5 * (blocks[0:even:2] + blocks[1:even:2])
        size *= 2
    return np.array(sizes), np.array(errors)


def optimal_level(block_sizes: np.ndarray, errors: np.ndarray, n: int) -> int:
    """Index of the level chosen by B^3 > 2 n (err_k / err_0)^4 (see the module docstring)."""
    if errors[0] == 0:
        return 0
    satisfied = block_sizes.astype(np.float64) ** 3 > 2 * n * (errors / errors[0]) ** 4
    return int(np.argmax(satisfied)) if satisfied.any() else len(errors) - 1


def estimate(data: np.ndarray) -> Estimate:
    """Mean, reblocked error, variance and tau of a series.

    Args:
        data: the series, shape (n,), finite, n >= 2.

    Returns:
        The `Estimate`.

    Raises:
        InputError: for fewer than 2 values or non-finite values.
    """
    data = np.asarray(data, dtype=np.float64).reshape(-1)
    if data.size < 2 or not np.all(np.isfinite(data)):
        raise InputError(
            f"statistics need at least 2 finite values, got {data.size} values "
            f"({np.sum(~np.isfinite(data))} non-finite); drop non-finite steps first"
        )
    sizes, errors = reblock(data)
    error = float(errors[optimal_level(sizes, errors, data.size)])
    variance = float(np.var(data, ddof=1))
    tau = data.size * error**2 / variance if variance > 0 else 1.0
    return Estimate(float(np.mean(data)), error, variance, tau, int(data.size))

"""Reblocking against analytic errors of independent and AR(1) series; formatting."""

import numpy as np
import pytest

from vmcjet.errors import InputError
from vmcjet.statistics import Estimate, estimate, format_value_error, reblock


def ar1(phi, n, seed):
    """x_t = phi x_{t-1} + e_t with unit innovations, started in equilibrium."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=n)
    x = np.empty(n)
    x[0] = noise[0] / np.sqrt(1 - phi**2)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + noise[t]
    return x


def test_independent_data_error_is_sigma_over_sqrt_n():
    sigma, n = 2.0, 2**14
    results = [estimate(3.0 + sigma * np.random.default_rng(s).normal(size=n)) for s in range(8)]
    ratios = np.array([r.error for r in results]) / (sigma / np.sqrt(n))
    # With ~256 blocks one error estimate is good to ~5%; the average over 8 series to ~2%.
    assert np.all(np.abs(ratios - 1) < 0.2) and abs(ratios.mean() - 1) < 0.06
    assert np.mean([r.tau for r in results]) == pytest.approx(1.0, abs=0.15)
    assert results[0].n == n
    assert results[0].variance == pytest.approx(sigma**2, rel=0.05)
    assert abs(results[0].mean - 3.0) < 4 * sigma / np.sqrt(n)


@pytest.mark.parametrize("phi", [0.5, 0.8, 0.9])
def test_ar1_error_and_tau_match_analytic_values(phi):
    n = 2**16
    results = [estimate(ar1(phi, n, seed)) for seed in range(4)]
    tau = (1 + phi) / (1 - phi)
    error = np.sqrt(tau / (1 - phi**2) / n)
    assert np.mean([r.tau for r in results]) == pytest.approx(tau, rel=0.15)
    assert np.mean([r.error for r in results]) == pytest.approx(error, rel=0.08)
    # The naive error is clearly too small, so the test can tell reblocking from no reblocking.
    assert all(r.error > 1.5 * np.sqrt(r.variance / n) for r in results)


def test_reblock_levels_halve_the_data():
    sizes, errors = reblock(np.arange(100.0))
    assert sizes.tolist() == [1, 2, 4, 8, 16, 32]
    np.testing.assert_allclose(errors[0], np.std(np.arange(100.0), ddof=1) / 10)


@pytest.mark.parametrize(
    "mean, error, text",
    [
        (-8.070123, 0.00034, "-8.07012(34)"),
        (-8.070123, 0.000996, "-8.0701(10)"),
        (1.5, 0.25, "1.50(25)"),
        (1234.5, 34.0, "1234(34)"),
        (-2.0, 0.0, "-2.000000"),
    ],
)
def test_format_value_error(mean, error, text):
    assert format_value_error(mean, error) == text


def test_estimate_str_and_plus_minus():
    value = Estimate(mean=-1.17447, error=0.00012, variance=0.01, tau=2.0, n=100)
    assert str(value) == "-1.17447(12)"
    assert value.plus_minus() == "-1.17447 ± 0.00012"


def test_bad_input_raises():
    with pytest.raises(InputError, match="finite"):
        estimate(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(InputError, match="at least 2"):
        estimate(np.array([1.0]))

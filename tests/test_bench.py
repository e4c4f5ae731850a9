"""Smoke test of the kinetic-energy benchmark harness on tiny cases (1 repeat)."""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet.bench import (
    KineticCase,
    add_kinetic_arguments,
    best_rows,
    make_case,
    mlp_case,
    run_kinetic_benchmark,
    write_results,
)
from vmcjet.errors import InputError


def _determinant_case():
    """log|det(I + x)| of x (2, 2): jax.experimental.jet has no rule for it (lu)."""

    def log_psi(params, x):
        return jnp.linalg.slogdet(params + x)[1]

    def sample(batch, *, key):
        return 0.1 * jax.random.normal(key, (batch, 2, 2), dtype=jnp.float64)

    return KineticCase("det", log_psi, jnp.eye(2, dtype=jnp.float64), sample)


def test_harness_writes_rows_table_json_and_plot(tmp_path):
    cases = [mlp_case((3, 8, 1), dtype=jnp.float64, name="tiny"), _determinant_case()]
    rows = run_kinetic_benchmark(cases, ["hessian", "loop", "taylor"], [4], 1, log=lambda _: None)
    assert [(r["case"], r["method"]) for r in rows] == [
        (case, method) for case in ("tiny", "det") for method in ("hessian", "loop", "taylor")
    ]
    failed = [(r["case"], r["method"]) for r in rows if "error" in r]
    assert failed == [("det", "taylor")]
    hessian_ms = {r["case"]: r["median_ms"] for r in rows if r["method"] == "hessian"}
    for row in (r for r in rows if "error" not in r):
        assert row["batch"] == 4
        assert row["median_ms"] > 0 and row["compile_s"] > 0 and row["peak_mib"] >= row["temp_mib"]
        expected = row["median_ms"] / hessian_ms[row["case"]]
        np.testing.assert_allclose(row["ratio_to_hessian"], expected)
        assert "ratio_to_collapsed" not in row  # "collapsed" was not benchmarked

    paths = write_results(rows, tmp_path, stem="smoke", command="pytest", dtype=jnp.float64)
    saved = json.loads(paths["json"].read_text())
    assert saved["rows"] == rows and saved["command"] == "pytest" and saved["dtype"] == "float64"
    assert saved["machine"]["cpu_count"] >= 1
    table = paths["markdown"].read_text()
    assert "| tiny | 4 | all | loop |" in table and "det | 4 | all | taylor" in table
    pytest.importorskip("matplotlib")
    assert paths["png"].stat().st_size > 0


def test_walker_chunk_sweep_compares_like_with_like(tmp_path):
    case = mlp_case((3, 8, 1), dtype=jnp.float64, name="tiny")
    rows = run_kinetic_benchmark(
        [case], ["collapsed", "loop"], [6], 1, walker_batch_sizes=(None, 2), log=lambda _: None
    )
    assert [(r["method"], r["walker_batch"]) for r in rows] == [
        ("collapsed", None), ("loop", None), ("collapsed", 2), ("loop", 2)
    ]  # fmt: skip
    ms = {(r["method"], r["walker_batch"]): r["median_ms"] for r in rows}
    for row in rows:  # ratios are taken at the same walker chunk
        expected = ms[(row["method"], row["walker_batch"])] / ms[("collapsed", row["walker_batch"])]
        np.testing.assert_allclose(row["ratio_to_collapsed"], expected)
    best = {r["method"]: r for r in best_rows(rows)}
    for method in ("collapsed", "loop"):
        assert best[method]["median_ms"] == min(ms[(method, None)], ms[(method, 2)])
    np.testing.assert_allclose(
        best["loop"]["ratio_to_best_collapsed"],
        best["loop"]["median_ms"] / best["collapsed"]["median_ms"],
    )
    text = write_results(rows, tmp_path, stem="sweep", command="pytest", dtype=jnp.float64)
    table = text["markdown"].read_text()
    assert "| tiny | 6 | 2 | loop |" in table and "Fastest walker chunk" in table


def test_flags_parse_lists():
    parser = argparse.ArgumentParser()
    add_kinetic_arguments(parser)
    args = parser.parse_args(["--cases", "mlp,ferminet-N2", "--batch-sizes", "8,32", "--quick"])
    assert args.cases == ("mlp", "ferminet-N2") and args.batch_sizes == (8, 32) and args.quick
    assert args.walker_batch_sizes == (None,)
    args = parser.parse_args(["--walker-batch-size", "none,64"])
    assert args.walker_batch_sizes == (None, 64)


def test_bad_case_or_method_is_input_error():
    with pytest.raises(InputError, match="unknown benchmark case 'resnet'"):
        make_case("resnet")
    with pytest.raises(InputError, match="bad methods \\['backprop'\\]"):
        run_kinetic_benchmark(["mlp"], ["backprop"], [4], 1)


def test_taylor_paper_probe_has_its_widths():
    case = make_case("mlp-taylor")
    assert case.name == "mlp-taylor"
    assert [w.shape for w, _ in case.params] == [
        (50, 768),
        (768, 768),
        (768, 512),
        (512, 512),
        (512, 1),
    ]
    assert case.sample(3, key=jax.random.key(0)).shape == (3, 50)


def test_operator_benchmark_methods_agree_and_cli_writes_files(tmp_path, capsys):
    from vmcjet.bench_operator import run_operator_benchmark
    from vmcjet.cli import main

    rows = run_operator_benchmark("biharmonic", 2, 2, 1, dtype=jnp.float64)
    assert [r["method"] for r in rows] == ["collapsed", "nested", "jet"]
    assert all(r["max_rel_diff_to_nested"] < 1e-10 and r["median_ms"] > 0 for r in rows)
    assert rows[1]["ratio_to_nested"] == 1.0
    argv = ["bench", "operator", "--operator", "laplacian", "--inputs", "2", "--batch-size", "2"]
    argv += ["--repeats", "1", "--methods", "collapsed,nested", "--out", str(tmp_path)]
    assert main(argv) == 0
    saved = json.loads((tmp_path / "operator.json").read_text())
    assert [r["method"] for r in saved["rows"]] == ["collapsed", "nested"]
    with pytest.raises(InputError, match="bad operator 'curl'"):
        run_operator_benchmark("curl", 2, 2, 1)

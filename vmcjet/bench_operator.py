"""Higher-order operator benchmark: Laplacian and biharmonic of the tanh MLP probe, side by side.

`vmcjet bench operator --operator biharmonic --inputs 5` times, for a batch of points (vmapped,
one jit each), after compilation and interleaved (`bench.interleaved_medians`):

- "collapsed": `forward_laplacian` (Laplacian) or `biharmonic` (order 4 over D^2 directions, ONE
  weighted fourth-order row), vmcjet's collapsed Taylor mode;
- "nested": nested backprop, trace(jax.hessian(f)) for the Laplacian and trace(jax.hessian) of that
  for the biharmonic;
- "jet": standard (uncollapsed) Taylor mode, `jax.experimental.jet` vmapped over the same
  directions with the same weights: every direction carries all its orders up to m.

The network is the collapsed Taylor-mode paper's probe (`bench.TAYLOR_PAPER_WIDTHS`, tanh MLP
50 -> 768 -> 768 -> 512 -> 512 -> 1), with its input width set by --inputs (the paper's biharmonic
setting has 5). Memory is XLA's compiled memory analysis, as in `vmcjet bench kinetic`.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import jet

from vmcjet.bench import (
    TAYLOR_PAPER_WIDTHS,
    compiled_with_memory,
    interleaved_medians,
    machine_info,
    mlp_case,
)
from vmcjet.errors import InputError
from vmcjet.laplacian import biharmonic, forward_laplacian
from vmcjet.laplacian.operator import biharmonic_directions

Array = jax.Array
OPERATORS = ("laplacian", "biharmonic")
METHODS = ("collapsed", "nested", "jet")


def _nested(f: Callable, operator: str) -> Callable:
    laplacian = lambda x: jnp.trace(jax.hessian(f)(x))
    return laplacian if operator == "laplacian" else lambda x: jnp.trace(jax.hessian(laplacian)(x))


def _jet(f: Callable, operator: str) -> Callable:
    """sum_k w_k d^m f[v_k] from one uncollapsed jet per direction (vmapped)."""
    order = 2 if operator == "laplacian" else 4

    def apply(x: Array) -> Array:
        if operator == "laplacian":
            directions = jnp.eye(x.size, dtype=x.dtype)
            weights = jnp.ones(x.size, x.dtype)
        else:
            directions, weights = biharmonic_directions(x.size, x.dtype)

        def along(v):
            series = (v,) + (jnp.zeros_like(v),) * (order - 1)
            return jet.jet(f, (x,), (series,))[1][order - 1]

        return weights @ jax.vmap(along)(directions)

    return apply


def operator_function(f: Callable, operator: str, method: str) -> Callable[[Array], Array]:
    """x -> the operator applied to scalar f at x, computed by `method`."""
    if method == "nested":
        return _nested(f, operator)
    if method == "jet":
        return _jet(f, operator)
    if operator == "laplacian":
        return lambda x: forward_laplacian(f)(x)[2]
    return lambda x: biharmonic(f)(x)[1]


def run_operator_benchmark(
    operator: str, inputs: int, batch: int, repeats: int, methods=METHODS, *, dtype=jnp.float32
) -> list[dict[str, Any]]:
    """One row per method: median ms per batch, ratio to nested, compile time, memory; the
    methods' results are checked against each other (relative difference to nested).

    Raises:
        InputError: an unknown operator or method, or repeats < 1.
    """
    unknown = [m for m in methods if m not in METHODS]
    if operator not in OPERATORS or unknown or repeats < 1:
        raise InputError(
            f"bad operator {operator!r}, methods {unknown} or repeats={repeats}; operators: "
            f"{', '.join(OPERATORS)}; methods: {', '.join(METHODS)}; repeats >= 1"
        )
    case = mlp_case((inputs, *TAYLOR_PAPER_WIDTHS[1:]), dtype=dtype, name=f"mlp-taylor-{inputs}")
    points = case.sample(batch, key=jax.random.key(1))
    rows, compiled, values = {}, {}, {}
    for method in methods:
        row = {"operator": operator, "inputs": inputs, "batch": batch, "method": method}
        rows[method] = row

        def batched(params, x, method=method):
            f = functools.partial(case.log_psi, params)
            return jax.vmap(operator_function(f, operator, method))(x)

        try:
            compiled[method], stats = compiled_with_memory(batched, case.params, points)
            values[method] = jax.block_until_ready(compiled[method](case.params, points))
        except Exception as err:  # a method that cannot handle the case is a result
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            compiled.pop(method, None)
            continue
        row.update(stats)
    calls = {m: functools.partial(fn, case.params, points) for m, fn in compiled.items()}
    for method, median in interleaved_medians(calls, repeats).items():
        rows[method]["median_ms"] = median
    reference = values.get("nested")
    for method, row in rows.items():
        base = rows.get("nested", {}).get("median_ms")
        if base and "median_ms" in row:
            row["ratio_to_nested"] = row["median_ms"] / base
        if reference is not None and method in values:
            scale = jnp.max(jnp.abs(reference))
            row["max_rel_diff_to_nested"] = float(
                jnp.max(jnp.abs(values[method] - reference)) / scale
            )
    return list(rows.values())


COLUMNS = (
    "operator", "inputs", "batch", "method", "median_ms", "ratio_to_nested", "compile_s",
    "temp_mib", "peak_mib", "max_rel_diff_to_nested", "error",
)  # fmt: skip


def markdown_table(rows) -> str:
    cell = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def add_operator_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `vmcjet bench operator`."""
    parser.add_argument("--operator", choices=OPERATORS, default="biharmonic")
    parser.add_argument("--inputs", type=int, default=5, help="input width D of the MLP probe")
    parser.add_argument("--batch-size", type=int, default=16, help="points per batch")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per method")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--out", default="benchmarks/results", help="output folder")
    parser.add_argument("--stem", default="operator", help="output file name stem")


def run_operator_from_args(args: argparse.Namespace, command: str) -> dict[str, Path]:
    """Runs the benchmark the parsed flags describe; writes <stem>.json and <stem>.md."""
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    methods = tuple(m for m in args.methods.split(",") if m)
    rows = run_operator_benchmark(
        args.operator, args.inputs, args.batch_size, args.repeats, methods,
        dtype=jnp.dtype(args.dtype),
    )  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"command": command, "dtype": args.dtype, "machine": machine_info()}
    paths = {"json": out / f"{args.stem}.json", "markdown": out / f"{args.stem}.md"}
    paths["json"].write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    table = markdown_table(rows)
    paths["markdown"].write_text(f"Command: `{command}`\n\nmachine: {meta['machine']}\n\n{table}")
    print(table + "\n".join(f"wrote {path}" for path in paths.values()))
    return paths

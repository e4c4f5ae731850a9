"""Kinetic-energy benchmark: every Laplacian method side by side on probe and wavefunction cases.

For each case x batch size x method the harness records the compile time, the median wall time of
one batch after compilation over `repeats` interleaved calls (methods alternate within one process,
so drifting machine load hits all of them alike), the ratios to "hessian" and "collapsed", and
XLA's compiled memory analysis (temporary buffers and an estimated peak). It writes a markdown table
and JSON under the output folder and, if matplotlib imports, a PNG plot. A method that cannot trace
a case (e.g. jax.experimental.jet has no rule for `lu`, used by slogdet) is recorded with its error.

`benchmarks/kinetic.py` and `vmcjet bench kinetic` parse flags with `add_kinetic_arguments` and call
`run_kinetic_from_args`.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet.config import FermiNetConfig, NetworkConfig, PsiformerConfig
from vmcjet.environment import environment_info
from vmcjet.errors import InputError
from vmcjet.laplacian.kinetic import make_kinetic_energy
from vmcjet.laplacian.methods import LAPLACIAN_METHODS

Array = jax.Array
MIB = 2.0**20
PROBE_WIDTHS = (5, 1024, 768, 512, 256, 128, 1)  # the talk's tanh MLP probe
# The collapsed Taylor-mode paper's probe (Dangel et al. 2025): tanh MLP with D = 50 inputs.
TAYLOR_PAPER_WIDTHS = (50, 768, 768, 512, 512, 1)
DEFAULT_CASES = (
    "mlp",
    *(f"{kind}-{mol}" for kind in ("ferminet", "psiformer") for mol in ("LiH", "N2", "P2")),
)
QUICK = {"cases": ("mlp", "ferminet-LiH"), "batch_sizes": (16,), "repeats": 2}
# Benchmark networks, the peers' sizes (docs/benchmarks.md, "Cases"): FermiNet 3 x (128, 16);
# Psiformer 2 layers of width 128; 4 determinants.
NETWORKS = {
    "ferminet": NetworkConfig(kind="ferminet", determinants=4, ferminet=FermiNetConfig(128, 16, 3)),
    "psiformer": NetworkConfig(
        kind="psiformer", determinants=4, psiformer=PsiformerConfig(2, 4, 32)
    ),
}


class KineticCase(NamedTuple):
    """A benchmark case: log|psi|(params, x) with x of shape `x_shape`, and its parameters."""

    name: str
    log_psi: Callable[[Any, Array], Array]  # (params, x) -> scalar
    params: Any  # pytree of arrays
    sample: Callable[..., Array]  # sample(batch, *, key) -> walkers (batch,) + x_shape


def mlp_case(widths: Sequence[int] = PROBE_WIDTHS, *, dtype=jnp.float32, name="mlp") -> KineticCase:
    """The tanh MLP probe: x (widths[0],) -> scalar, tanh on every hidden layer, linear output."""
    keys = jax.random.split(jax.random.key(0), len(widths) - 1)
    params = [
        (jax.random.normal(k, (m, n), dtype) * m**-0.5, jnp.zeros((n,), dtype))
        for k, m, n in zip(keys, widths[:-1], widths[1:], strict=True)
    ]

    def log_psi(params, x):
        for w, b in params[:-1]:
            x = jnp.tanh(x @ w + b)
        w, b = params[-1]
        return (x @ w + b)[0]

    def sample(batch, *, key):
        return jax.random.normal(key, (batch, widths[0]), dtype)

    return KineticCase(name, log_psi, params, sample)


def network_case(kind: str, molecule_name: str, *, dtype=jnp.float32) -> KineticCase:
    """log|psi| of the project's FermiNet or Psiformer (`NETWORKS`) for a catalogue molecule."""
    from vmcjet.mcmc import init_walkers
    from vmcjet.molecule import load_molecule
    from vmcjet.networks import make_wavefunction

    molecule = load_molecule(molecule_name)
    wavefunction = make_wavefunction(NETWORKS[kind], molecule)
    params = wavefunction.init(key=jax.random.key(0), dtype=dtype)

    def log_psi(params, electrons):
        return wavefunction.apply(params, electrons)[1]

    def sample(batch, *, key):
        return init_walkers(molecule, batch, key=key, dtype=dtype)

    return KineticCase(f"{kind}-{molecule.name}", log_psi, params, sample)


def make_case(name: str, *, dtype=jnp.float32) -> KineticCase:
    """ "mlp", "mlp-taylor" (`TAYLOR_PAPER_WIDTHS`) or "<ferminet|psiformer>-<catalogue
    molecule>" (e.g. "ferminet-N2")."""
    if name == "mlp":
        return mlp_case(dtype=dtype)
    if name == "mlp-taylor":
        return mlp_case(TAYLOR_PAPER_WIDTHS, dtype=dtype, name=name)
    kind, _, molecule_name = name.partition("-")
    if kind not in NETWORKS or not molecule_name:
        raise InputError(
            f"unknown benchmark case {name!r}; use 'mlp', 'mlp-taylor' or e.g. 'ferminet-N2'"
        )
    return network_case(kind, molecule_name, dtype=dtype)


def compiled_with_memory(fn: Callable, *args) -> tuple[Any, dict[str, float]]:
    """jit-compiled `fn` for `args`, its compile time (s) and XLA's memory analysis (MiB)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    temp = memory.temp_size_in_bytes
    peak = temp + memory.argument_size_in_bytes + memory.output_size_in_bytes
    peak -= memory.alias_size_in_bytes
    return compiled, {"compile_s": seconds, "temp_mib": temp / MIB, "peak_mib": peak / MIB}


def _compile(case: KineticCase, method: str, walkers: Array, options: dict[str, Any]):
    """The compiled kinetic-energy function of (params, walkers), its compile time and memory."""

    def kinetic(params, walkers):
        log_psi = lambda x: case.log_psi(params, x)
        return make_kinetic_energy(log_psi, method=method, **options)(walkers)

    return compiled_with_memory(kinetic, case.params, walkers)


def _timed(fn: Callable[[], Any]) -> float:
    """Milliseconds of one call of `fn`, until its results are ready."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return 1e3 * (time.perf_counter() - start)


def interleaved_medians(calls: Mapping[Any, Callable[[], Any]], repeats: int) -> dict[Any, float]:
    """Median ms of each zero-argument call over `repeats` interleaved rounds, after one warm-up
    call each (rounds interleave the calls so that a change of machine load hits all alike)."""
    for fn in calls.values():
        _timed(fn)
    samples: dict[Any, list[float]] = {key: [] for key in calls}
    for _ in range(repeats):
        for key, fn in calls.items():
            samples[key].append(_timed(fn))
    return {key: statistics.median(values) for key, values in samples.items()}


def _bench_batch(case, variants, batch, repeats, chunk_size) -> list[dict[str, Any]]:
    """Rows of one case and batch size: compile every (method, walker chunk) variant, then
    interleaved timed calls; ratios compare methods at the same walker chunk."""
    walkers = case.sample(batch, key=jax.random.key(1))
    rows, compiled = {}, {}
    for method, walker_batch in variants:
        key = (method, walker_batch)
        rows[key] = {
            "case": case.name,
            "method": method,
            "batch": batch,
            "walker_batch": walker_batch,
        }
        options = {"chunk_size": chunk_size, "walker_batch_size": walker_batch}
        try:
            compiled[key], stats = _compile(case, method, walkers, options)
            jax.block_until_ready(compiled[key](case.params, walkers))  # warm-up
        except Exception as err:  # a method that cannot handle this case is a result, not a crash
            rows[key]["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            compiled.pop(key, None)
            continue
        rows[key].update(stats)
    calls = {key: functools.partial(fn, case.params, walkers) for key, fn in compiled.items()}
    for key, median in interleaved_medians(calls, repeats).items():
        rows[key]["median_ms"] = median
    for reference in ("hessian", "collapsed"):
        for (_, walker_batch), row in rows.items():
            base = rows.get((reference, walker_batch), {}).get("median_ms")
            if base and "median_ms" in row:
                row[f"ratio_to_{reference}"] = row["median_ms"] / base
    return list(rows.values())


def run_kinetic_benchmark(
    cases: Sequence[str | KineticCase],
    methods: Sequence[str],
    batch_sizes: Sequence[int],
    repeats: int,
    *,
    dtype=jnp.float32,
    chunk_size: int | None = None,
    walker_batch_sizes: Sequence[int | None] = (None,),
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Benchmarks the kinetic energy of every case x batch size x method x walker chunk.

    Args:
        cases: case names (see `make_case`) or ready `KineticCase`s.
        methods: names from `LAPLACIAN_METHODS`.
        batch_sizes: walkers per batch.
        repeats: timed calls per variant (interleaved across methods and walker chunks).
        dtype: floating dtype of parameters and walkers.
        chunk_size: passed to `make_kinetic_energy`.
        walker_batch_sizes: the `walker_batch_size` settings to run side by side (None: vmap
            over the whole batch); `best_rows` picks each method's fastest.
        log: receives one line per finished row.

    Returns:
        One dict per row: case, method, batch, walker_batch, compile_s, median_ms,
        ratio_to_hessian, ratio_to_collapsed (at the same walker_batch), temp_mib, peak_mib (XLA
        memory analysis), or error.

    Raises:
        InputError: for an unknown case or method, or repeats < 1.
    """
    unknown = [m for m in methods if m not in LAPLACIAN_METHODS]
    if unknown or repeats < 1:
        valid = ", ".join(LAPLACIAN_METHODS)
        raise InputError(
            f"bad methods {unknown} or repeats={repeats}; methods: {valid}, repeats>=1"
        )
    variants = [(m, w) for w in walker_batch_sizes for m in methods]
    rows = []
    for spec in cases:
        case = make_case(spec, dtype=dtype) if isinstance(spec, str) else spec
        for batch in batch_sizes:
            for row in _bench_batch(case, variants, batch, repeats, chunk_size):
                log(format_row(row))
                rows.append(row)
    return rows


def best_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per case, batch and method, the row of its fastest walker chunk, with
    `ratio_to_best_collapsed` (its time over collapsed's best time) when collapsed ran."""
    best: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = (row["case"], row["batch"], row["method"])
        if "median_ms" in row and (key not in best or row["median_ms"] < best[key]["median_ms"]):
            best[key] = row
    out = []
    for (case, batch, _), row in best.items():
        ours = best.get((case, batch, "collapsed"))
        extra = {"ratio_to_best_collapsed": row["median_ms"] / ours["median_ms"]} if ours else {}
        out.append({**row, **extra})
    return out


def _several_walker_chunks(rows: Sequence[dict[str, Any]]) -> bool:
    return len({row.get("walker_batch") for row in rows}) > 1


def format_row(row: dict[str, Any]) -> str:
    """One human-readable line of a result row."""
    walker = row.get("walker_batch")
    head = f"{row['case']:>16} B={row['batch']:<4} wb={walker or 'all':<4} {row['method']:>16}"
    if "error" in row:
        return f"{head}  failed: {row['error']}"
    ratios = " ".join(f"{k[9:]}={row[k]:.2f}x" for k in row if k.startswith("ratio_to_"))
    return (
        f"{head} {row['median_ms']:10.2f} ms  compile {row['compile_s']:6.1f} s  "
        f"temp {row['temp_mib']:8.1f} MiB  {ratios}"
    )


COLUMNS = (
    "case",
    "batch",
    "walker_batch",
    "method",
    "median_ms",
    "ratio_to_hessian",
    "ratio_to_collapsed",
    "compile_s",
    "temp_mib",
    "peak_mib",
)


def markdown_table(rows: Sequence[dict[str, Any]], extra_columns: Sequence[str] = ()) -> str:
    """The rows as a markdown table (failed methods show their error in the last column)."""

    def cell(row, column):
        value = row.get(column, "")
        if column == "walker_batch":
            return "all" if value is None else str(value)
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    columns = (*COLUMNS, *extra_columns, "error")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row, column) for column in columns) + " |")
    return "\n".join(lines) + "\n"


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured: `environment_info()` and the load of the machine."""
    import os

    return {
        **environment_info(),
        "load_average_1_5_15_min": os.getloadavg(),  # other processes sharing the CPU
    }


def plot(rows: Sequence[dict[str, Any]], path: Path) -> bool:
    """Bars of median time per (case, batch) and method, log scale; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    several = _several_walker_chunks(rows)
    label = lambda r: (
        f"{r['method']} wb={r.get('walker_batch') or 'all'}" if several else r["method"]
    )
    groups = list(dict.fromkeys((r["case"], r["batch"]) for r in rows))
    methods = list(dict.fromkeys(label(r) for r in rows))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * len(methods) / 3), 4.5))
    for i, method in enumerate(methods):
        times = {
            (r["case"], r["batch"]): r.get("median_ms", np.nan) for r in rows if label(r) == method
        }
        heights = [times.get(group, np.nan) for group in groups]
        color = plt.cm.tab20(i % 20)
        ax.bar(np.arange(len(groups)) + i * width, heights, width, label=method, color=color)
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{case}\nB={batch}" for case, batch in groups], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("median ms per batch (kinetic energy)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_results(rows, out_dir: str | Path, *, stem: str, command: str, dtype) -> dict[str, Path]:
    """Writes <stem>.json (rows, machine, command), <stem>.md and <stem>.png; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "markdown": out / f"{stem}.md"}
    meta = {"command": command, "dtype": jnp.dtype(dtype).name, "machine": machine_info()}
    paths["json"].write_text(json.dumps({**meta, "rows": list(rows)}, indent=1) + "\n")
    header = f"Command: `{command}`\n\ndtype {meta['dtype']}; machine: {meta['machine']}\n\n"
    text = header + markdown_table(rows)
    if _several_walker_chunks(rows):
        text += "\nFastest walker chunk of each method:\n\n"
        text += markdown_table(best_rows(rows), ("ratio_to_best_collapsed",))
    paths["markdown"].write_text(text)
    if plot(rows, out / f"{stem}.png"):
        paths["png"] = out / f"{stem}.png"
    return paths


def add_kinetic_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `vmcjet bench kinetic` / `python benchmarks/kinetic.py`."""

    def names(text):
        return tuple(item for item in text.split(",") if item)

    def sizes(text):
        return tuple(int(item) for item in names(text))

    def walker_sizes(text):
        return tuple(None if item.lower() in ("none", "all") else int(item) for item in names(text))

    parser.add_argument("--cases", type=names, default=DEFAULT_CASES, help="comma-separated")
    parser.add_argument(
        "--methods", type=names, default=tuple(LAPLACIAN_METHODS), help="comma-separated"
    )
    parser.add_argument("--batch-sizes", type=sizes, default=(64, 256), help="e.g. 64,256")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per method")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--chunk-size", type=int, help="directions per inner chunk")
    parser.add_argument(
        "--walker-batch-size",
        "--walker-batch-sizes",
        dest="walker_batch_sizes",
        type=walker_sizes,
        default=(None,),
        help="walkers per lax.map chunk; a comma list (e.g. none,64,128) runs each side by side",
    )
    parser.add_argument("--out", default="benchmarks/results", help="output folder")
    parser.add_argument("--stem", default="kinetic", help="output file name stem")
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK}")


def run_kinetic_from_args(args: argparse.Namespace, command: str) -> dict[str, Path]:
    """Runs the benchmark the parsed flags describe and writes its outputs."""
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.dtype(args.dtype)
    settings = {"cases": args.cases, "batch_sizes": args.batch_sizes, "repeats": args.repeats}
    if args.quick:
        settings = QUICK
    rows = run_kinetic_benchmark(
        methods=args.methods,
        dtype=dtype,
        chunk_size=args.chunk_size,
        walker_batch_sizes=args.walker_batch_sizes,
        **settings,
    )
    paths = write_results(rows, args.out, stem=args.stem, command=command, dtype=dtype)
    print("\n".join(f"wrote {path}" for path in paths.values()))
    return paths

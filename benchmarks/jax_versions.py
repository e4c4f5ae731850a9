"""vmcjet on several JAX versions, side by side: `vmcjet bench step` parts and batched small LU.

Each Python interpreter (one per virtual environment, e.g. jax 0.9.2 and 0.10.2; a wrapper script
that sets XLA_FLAGS counts as another) runs the same measurement in its own process; the
interpreters take turns for `--rounds` rounds (interleaved, so a change of machine load hits all),
and the report gives per interpreter (labelled by its jax version and XLA_FLAGS) the median over
rounds of each part's median time, and its ratio to the first interpreter's.

    python benchmarks/jax_versions.py --python python --python /tmp/venv010/bin/python \\
        --rounds 3 --name jax-versions-s9 -- --molecule N2 --repeats 10

The LU probe times, for walkers x determinants of n x n matrices (LiH 256 x 4 x 2 x 2, N2 128 x 8
x 7 x 7, a 30-electron molecule's 128 x 16 x 15 x 15), the log-determinant, its gradient and the
inverse, each by JAX's LAPACK path (`jnp.linalg.slogdet`; LU + two triangular solves) and by
vmcjet's own elimination (`vmcjet.linalg`), median of 20 calls after compilation, with the
`vmcjet` command's process settings (`cli.apply_process_settings`). An interpreter whose vmcjet
has no `vmcjet.linalg` (an older checkout on PYTHONPATH) reports only the LAPACK cases.
BENCH_LABEL in an interpreter's environment is added to its label (e.g. to tell two checkouts
apart).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PART_LINE = re.compile(r"^\s*(\w+):\s+([\d.]+) ms")

LU_PROBE = """
import json, time
import jax, jax.numpy as jnp, numpy as np
from jax import lax
from vmcjet.cli import apply_process_settings
apply_process_settings()  # as the `vmcjet` command (and so `bench step`) does

def lapack_inverse(a):
    lu, _, perm = lax.linalg.lu(a)
    permutation = jax.nn.one_hot(perm, a.shape[-1], dtype=a.dtype)
    lower = lax.linalg.triangular_solve(lu, permutation, left_side=True, lower=True,
                                        unit_diagonal=True)
    return lax.linalg.triangular_solve(lu, lower, left_side=True, lower=False)

cases = {
    "slogdet lapack": lambda a: jnp.linalg.slogdet(a)[1],
    "slogdet_grad lapack": jax.grad(lambda a: jnp.linalg.slogdet(a)[1].sum()),
    "inverse lapack": lapack_inverse,
}
try:
    from vmcjet.linalg import slogdet, slogdet_and_inverse
    cases.update({
        "slogdet vmcjet": lambda a: slogdet(a)[1],
        "slogdet_grad vmcjet": jax.grad(lambda a: slogdet(a)[1].sum()),
        "inverse vmcjet": lambda a: slogdet_and_inverse(a)[2],
    })
except ImportError:
    pass

def median_us(f, a):
    jax.block_until_ready(f(a))
    times = []
    for _ in range(20):
        t = time.perf_counter(); jax.block_until_ready(f(a)); times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e6)

out = {"jax": jax.__version__}
for name, shape in (("LiH", (256, 4, 2, 2)), ("N2", (128, 8, 7, 7)), ("30e", (128, 16, 15, 15))):
    a = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
    out[name] = {case: median_us(jax.jit(f), a) for case, f in cases.items()}
print(json.dumps(out))
"""


def bench_step(python: str, args: list[str]) -> tuple[str, dict[str, float]]:
    """(jax version and XLA_FLAGS, {part: median ms}) of one `vmcjet bench step` in `python`."""
    version = subprocess.run(
        [
            python,
            "-c",
            "import os, jax; print(jax.__version__, os.environ.get('XLA_FLAGS', ''),"
            " os.environ.get('BENCH_LABEL', ''))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    result = subprocess.run(
        [python, "-m", "vmcjet", "bench", "step", *args], capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"bench step failed in {python}:\n{result.stderr[-2000:]}")
    parts = {}
    for line in result.stdout.splitlines():
        match = PART_LINE.match(line)
        if match:
            parts[match.group(1)] = float(match.group(2))
    return version, parts


def lu_probe(python: str) -> dict:
    result = subprocess.run([python, "-c", LU_PROBE], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"LU probe failed in {python}:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _table(name: str, rows: dict[str, list[float]], versions: list[str], digits: int) -> list[str]:
    """Markdown rows: per row its values per version and each version's ratio to the first."""
    head = " | ".join(f"jax {v}" for v in versions)
    ratios = " | ".join(f"ratio {v}" for v in versions[1:])
    lines = [f"| {name} | {head} | {ratios} |", "|---" * (2 * len(versions)) + "|"]
    for row, values in rows.items():
        cells = " | ".join(f"{v:.{digits}f}" for v in values)
        ratio_cells = " | ".join(f"{v / values[0]:.2f}" for v in values[1:])
        lines.append(f"| {row} | {cells} | {ratio_cells} |")
    return lines


def report(versions: list[str], steps: dict, probes: dict, args: list[str]) -> str:
    parts = {
        part: [statistics.median(steps[v][part]) for v in versions] for part in steps[versions[0]]
    }
    lu = {
        f"{system} {op}": [
            statistics.median(p[system].get(op, math.nan) for p in probes[v]) for v in versions
        ]
        for system in ("LiH", "N2", "30e")
        for op in probes[versions[0]][0][system]
    }
    lines = [f"`vmcjet bench step {' '.join(args)}`, medians over rounds (ms)", ""]
    lines += _table("part", parts, versions, 2)
    lines += ["", "Batched small LU (us, medians over rounds):", ""]
    lines += _table("case", lu, versions, 1)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", required=True, help="interpreter (repeat)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default="jax-versions")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    if len(options.python) < 2:
        parser.error("give --python at least twice (the reference first)")
    args = [a for a in options.bench_args if a != "--"]
    steps: dict[str, dict[str, list[float]]] = {}
    probes: dict[str, list[dict]] = {}
    versions: list[str] = []
    for round_ in range(options.rounds):
        for python in options.python:
            version, parts = bench_step(python, args)
            if round_ == 0:
                versions.append(version)
            for part, ms in parts.items():
                steps.setdefault(version, {}).setdefault(part, []).append(ms)
            probes.setdefault(version, []).append(lu_probe(python))
            print(f"round {round_ + 1}, jax {version}: {parts}", flush=True)
    text = report(versions, steps, probes, args)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{options.name}.md").write_text(text)
    record = {"args": args, "versions": versions, "steps": steps, "lu": probes}
    (RESULTS / f"{options.name}.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()

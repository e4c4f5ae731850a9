"""How precise must SPRING's kernel be? Per-walker gradients of a trained run's wavefunction at
its walkers (float32, as in a float32 run), the kernel's spectrum at the configured damping, and
the direction's relative error against a float64 numpy reference for three ways of forming and
solving the B x B kernel: float32 products and solve, float32 products with a float64 sum and
solve, and float64 products and solve (vmcjet's default). Also the time of each, side by side.

    python benchmarks/spring_precision.py RUN_FOLDER [--batch-sizes 256,1024] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_factor, cho_solve

from vmcjet import runfolder
from vmcjet.cli import apply_process_settings
from vmcjet.log_psi_gradients import per_walker_gradients
from vmcjet.optim.spring import leaf_rows
from vmcjet.session import open_session, restore_state, run_molecule
from vmcjet.step_parts import make_sampler


def direction(rows, residuals, damping, products, solve):
    """SPRING's direction without momentum, products and solve in the given dtypes."""
    batch = rows[0].shape[0]
    scale = float(np.sqrt(batch))
    wide = jnp.float64 in (jnp.dtype(products), jnp.dtype(solve))
    with jax.enable_x64(True) if wide else contextlib.nullcontext():
        kernel = jnp.full((batch, batch), 1.0 / batch, solve) + damping * jnp.eye(
            batch, dtype=solve
        )
        means = [jnp.mean(leaf, axis=0) for leaf in rows]
        for leaf, mean in zip(rows, means, strict=True):
            centred = ((leaf - mean) / scale).astype(products)
            kernel = kernel + (centred @ centred.T).astype(solve)
        target = (residuals - residuals.mean()).astype(solve) / scale
        zeta = cho_solve(cho_factor(kernel), target).astype(rows[0].dtype)
    total = jnp.sum(zeta)
    return jnp.concatenate(
        [(leaf.T @ zeta - m * total) / scale for leaf, m in zip(rows, means, strict=True)]
    )


MODES = {
    "float32": ("float32", "float32"),
    "f32 products, f64 solve": ("float32", "float64"),
    "float64": ("float64", "float64"),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_folder")
    parser.add_argument("--batch-sizes", default="256,1024")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    apply_process_settings()  # as the `vmcjet` command does, so that the numbers compare
    folder = Path(args.run_folder)
    config = runfolder.read_config(folder)
    molecule = run_molecule(config)
    session = open_session(config, molecule)
    state, _ = restore_state(session, folder / "checkpoints", log=lambda _: None)
    sample = jax.jit(make_sampler(session.wavefunction, molecule, config))
    grads = jax.jit(per_walker_gradients(session.wavefunction))
    damping = config.optim.damping
    print(f"{molecule.name}, damping {damping}, step {int(state.step)}")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        walkers = jnp.concatenate([state.sampler.walkers] * (batch // config.batch_size + 1))
        sampler = state.sampler._replace(walkers=walkers[:batch], log_abs_psi=jnp.zeros(batch))
        for i in range(20):
            sampler, _ = sample(state.params, sampler, key=jax.random.key(i))
        rows = leaf_rows(grads(state.params, sampler.walkers))
        residuals = jax.random.normal(jax.random.key(99), (batch,), jnp.float32)
        o = np.concatenate([np.asarray(r, np.float64) for r in rows], axis=1)
        o_bar = (o - o.mean(0)) / np.sqrt(batch)
        eps = (np.asarray(residuals, np.float64) - float(residuals.mean())) / np.sqrt(batch)
        eigen = np.linalg.eigvalsh(o_bar @ o_bar.T)
        kernel = o_bar @ o_bar.T + damping * np.eye(batch) + 1.0 / batch
        reference = o_bar.T @ np.linalg.solve(kernel, eps)
        print(
            f"B={batch} P={o.shape[1]}: kernel eigenvalues {eigen[1]:.2e} .. {eigen[-1]:.2e}, "
            f"condition with damping {(eigen[-1] + damping) / (eigen[1] + damping):.2e}"
        )
        calls = {
            name: jax.jit(lambda r, s, p=p, q=q: direction(r, s, damping, p, q))
            for name, (p, q) in MODES.items()
        }
        times = {name: [] for name in calls}
        for name, fn in calls.items():
            phi = np.asarray(fn(rows, residuals), np.float64)
            error = np.linalg.norm(phi - reference) / np.linalg.norm(reference)
            print(f"  {name:>24}: relative error {error:.2e}")
        for _ in range(args.repeats):
            for name, fn in calls.items():
                start = time.perf_counter()
                jax.block_until_ready(fn(rows, residuals))
                times[name].append(1e3 * (time.perf_counter() - start))
        for name, values in times.items():
            print(f"  {name:>24}: {statistics.median(values):.1f} ms (median of {args.repeats})")


if __name__ == "__main__":
    main()

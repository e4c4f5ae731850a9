"""Dimension-wise derivatives of a hollow network (`vmcjet.dimwise`) against the general methods,
side by side: cost relative to one forward pass as the dimension d grows, and the divergence of a
continuous normalising flow's vector field f(x) = hollow_net(x), exact and by Hutchinson.

    vmcjet bench dimwise --dims 16,64,256,1024 --batch-size 64 --repeats 7 --stem dimwise-s11

Per d (float32, `batch` points, all jitted, medians of interleaved repeats after compilation):
- forward: f(x);
- D^1 dimwise: (f, D^1 f) by `dimension_wise(order=1)` (one backward pass); its sum is the
  divergence;
- D^1 vmap-jvp: the Jacobian's diagonal from d Jacobian-vector products (vmap over unit vectors);
- D^1 jacfwd: the diagonal of the dense Jacobian (`jax.jacfwd`);
- D^2 dimwise / D^2 vmap-jvp: second dimension-wise derivatives (two backward passes / d nested
  forward-over-forward products);
- Hutchinson: one Rademacher probe's estimate v^T J v of the divergence (one jvp).
The divergence check (float64, d = 16) compares the exact values and the spread of Hutchinson's
estimate over probes. Writes OUT/STEM.{md,json}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp

from vmcjet.bench import interleaved_medians, machine_info
from vmcjet.dimwise import dimension_wise, hollow_net


def diagonal_by_jvps(fn, x: jax.Array, order: int) -> jax.Array:
    """(d^order f_i / dx_i^order)_i of fn: (d,) -> (d,) from d nested jvps along unit vectors."""

    def along(unit):
        g = fn
        for _ in range(order):
            g = lambda y, g=g: jax.jvp(g, (y,), (unit,))[1]  # noqa: E731
        return jnp.dot(g(x), unit)

    return jax.vmap(along)(jnp.eye(x.shape[0], dtype=x.dtype))


def timings(dim: int, batch: int, repeats: int) -> dict[str, float]:
    net = hollow_net(dim)
    params = net.init(jax.random.key(0), jnp.float32)
    xs = jax.random.normal(jax.random.key(1), (batch, dim), jnp.float32)
    probes = jax.random.rademacher(jax.random.key(2), (batch, dim), jnp.float32)
    f = lambda x: net.apply(params, x)  # noqa: E731
    fns = {
        "forward": jax.vmap(f),
        "D1 dimwise": jax.vmap(lambda x: dimension_wise(net, order=1)(params, x)[1][0]),
        "D1 vmap-jvp": jax.vmap(lambda x: diagonal_by_jvps(f, x, 1)),
        "D1 jacfwd": jax.vmap(lambda x: jnp.diagonal(jax.jacfwd(f)(x))),
        "D2 dimwise": jax.vmap(lambda x: dimension_wise(net, order=2)(params, x)[1][1]),
        "D2 vmap-jvp": jax.vmap(lambda x: diagonal_by_jvps(f, x, 2)),
    }
    jitted = {name: jax.jit(fn) for name, fn in fns.items()}
    hutchinson = jax.jit(jax.vmap(lambda x, v: jnp.dot(jax.jvp(f, (x,), (v,))[1], v)))
    calls = {name: (lambda fn=fn: fn(xs)) for name, fn in jitted.items()}
    calls["Hutchinson (1 probe)"] = lambda: hutchinson(xs, probes)
    return interleaved_medians(calls, repeats)


def divergence_check(dim: int = 16, probes: int = 1000) -> dict[str, float]:
    """Exact divergences (dimwise, vmap-jvp) and Hutchinson's mean and spread, float64."""
    with jax.enable_x64(True):
        net = hollow_net(dim)
        params = net.init(jax.random.key(0), jnp.float64)
        x = jax.random.normal(jax.random.key(1), (dim,), jnp.float64)
        f = lambda y: net.apply(params, y)  # noqa: E731
        exact = float(jnp.sum(dimension_wise(net, order=1)(params, x)[1][0]))
        by_jvps = float(jnp.sum(diagonal_by_jvps(f, x, 1)))
        vs = jax.random.rademacher(jax.random.key(3), (probes, dim), jnp.float64)
        estimates = jax.vmap(lambda v: jnp.dot(jax.jvp(f, (x,), (v,))[1], v))(vs)
        return {
            "dim": dim,
            "dimwise": exact,
            "vmap_jvp": by_jvps,
            "hutchinson_mean": float(jnp.mean(estimates)),
            "hutchinson_std_one_probe": float(jnp.std(estimates)),
            "probes": probes,
        }


def add_dimwise_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `vmcjet bench dimwise`."""
    parser.add_argument(
        "--dims", type=lambda text: [int(d) for d in text.split(",")], default=[16, 64, 256, 1024]
    )
    parser.add_argument("--batch-size", type=int, default=64, help="points per batch")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per method")
    parser.add_argument("--out", default="benchmarks/results", help="output folder")
    parser.add_argument("--stem", default="dimwise", help="output file name stem")


def run_dimwise_from_args(args: argparse.Namespace, command: str) -> str:
    """Runs the benchmark the parsed flags describe; writes STEM.md and STEM.json; returns the
    table."""
    rows = {dim: timings(dim, args.batch_size, args.repeats) for dim in args.dims}
    check = divergence_check()
    names = list(next(iter(rows.values())))
    lines = [
        f"Command: `{command}`",
        "",
        f"Hollow network, batch {args.batch_size}, float32: median ms and (ratio to forward)",
        "",
        "| d | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for dim, row in rows.items():
        cells = [f"{row[n]:.3f} ({row[n] / row['forward']:.1f}x)" for n in names]
        lines.append(f"| {dim} | " + " | ".join(cells) + " |")
    lines += ["", f"Divergence check (float64): {json.dumps(check)}", ""]
    text = "\n".join(lines)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.stem}.md").write_text(text)
    record = {
        "command": command,
        "machine": machine_info(),
        "timings_ms": rows,
        "divergence": check,
    }
    (out / f"{args.stem}.json").write_text(json.dumps(record, indent=1))
    print(text)
    return text

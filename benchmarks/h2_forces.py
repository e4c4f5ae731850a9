"""H2 forces against minus the derivative of the energy, per bond length R (bohr).

For each R: train H2 with the defaults (`vmcjet run`), evaluate the forces
(`vmcjet eval --observables forces`), and estimate -dE/dR at the trained parameters by correlated
sampling: walkers sampled from psi_R^2 are reweighted by psi_{R +- h}^2 / psi_R^2 (the network at
the same parameters, its second nucleus moved by +-h along the bond) and the reweighted mean local
energies give -(E(R + h) - E(R - h)) / 2h; its error bar comes from blocks of steps. The ZV-ZB
force on the second nucleus along the bond estimates the same quantity. Writes a markdown table.

    python benchmarks/h2_forces.py --out runs/forces --bonds 1.2,1.4011,1.6
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet import runfolder
from vmcjet.cli import apply_process_settings
from vmcjet.hamiltonian import make_local_energy
from vmcjet.session import open_session, restore_state, run_molecule, stream_key
from vmcjet.step_parts import make_sampler

MOLECULE = """name = "H2-{bond}"
units = "bohr"
charge = 0
spin = 0

[[atoms]]
symbol = "H"
coords = [0.0, 0.0, 0.0]

[[atoms]]
symbol = "H"
coords = [0.0, 0.0, {bond}]
"""


def vmcjet(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "vmcjet", *args], check=True)


def correlated_derivative(
    folder: Path, steps: int, h: float, blocks: int = 20
) -> tuple[float, float]:
    """-dE/dR (hartree/bohr) at the run's parameters from `steps` MCMC steps, with its error."""
    config = runfolder.read_config(folder)
    molecule = run_molecule(config)
    session = open_session(config, molecule)
    state, _ = restore_state(session, folder / runfolder.CHECKPOINT_DIR, log=lambda _: None)
    sample = jax.jit(make_sampler(session.wavefunction, molecule, config))
    apply, nuclei = session.wavefunction.apply, np.asarray(molecule.coords)

    def moved(dz: float) -> np.ndarray:
        at = nuclei.copy()
        at[1, 2] += dz
        return at

    def log_psi_at(at):
        return jax.vmap(lambda x: apply(state.params, x, nuclei=jnp.asarray(at, x.dtype))[1])

    def local_energy_at(at: np.ndarray):
        signed_log_psi = lambda p, x: apply(p, x, nuclei=jnp.asarray(at, x.dtype))  # noqa: E731
        return make_local_energy(signed_log_psi, at, molecule.charges)

    energies = {dz: local_energy_at(moved(dz)) for dz in (h, -h)}

    @jax.jit
    def weighted_sums(walkers):
        base = log_psi_at(nuclei)(walkers)
        sums = []
        for dz in (h, -h):
            weights = jnp.exp(2 * (log_psi_at(moved(dz))(walkers) - base))
            sums.append(
                jnp.stack(
                    [jnp.sum(weights * energies[dz](state.params, walkers)), jnp.sum(weights)]
                )
            )
        return jnp.stack(sums)  # (2, 2): +h and -h, (sum w E, sum w)

    key = stream_key(jax.random.key(config.seed + 1), "eval")
    sampler, totals = state.sampler, []
    for t in range(steps):
        sampler, _ = sample(state.params, sampler, key=jax.random.fold_in(key, t))
        totals.append(np.asarray(weighted_sums(sampler.walkers), dtype=np.float64))
    per_block = np.array_split(np.asarray(totals), blocks)

    def derivative(parts: np.ndarray) -> float:
        summed = parts.sum(axis=0)
        e_plus, e_minus = summed[0, 0] / summed[0, 1], summed[1, 0] / summed[1, 1]
        return -(e_plus - e_minus) / (2 * h)

    block_values = np.array([derivative(b) for b in per_block])
    return derivative(np.asarray(totals)), float(block_values.std(ddof=1) / np.sqrt(blocks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/forces"))
    parser.add_argument("--bonds", default="1.2,1.4011,1.6")
    parser.add_argument("--steps", type=int, default=3000, help="training steps")
    parser.add_argument("--eval-steps", type=int, default=1000)
    parser.add_argument("--h", type=float, default=0.01, help="bond displacement, bohr")
    args = parser.parse_args()
    apply_process_settings()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [
        "| R (bohr) | ZV-ZB F_z (Ha/bohr) | -dE/dR, correlated sampling | bare HF F_z |",
        "|---|---|---|---|",
    ]
    for bond in args.bonds.split(","):
        toml = args.out / f"h2-{bond}.toml"
        toml.write_text(MOLECULE.format(bond=bond))
        folder = args.out / f"h2-{bond}"
        if not (folder / runfolder.CHECKPOINT_DIR).exists():
            vmcjet("run", "--molecule", str(toml), "--steps", str(args.steps), "--out", str(folder))
        vmcjet("eval", str(folder), "--steps", str(args.eval_steps), "--observables", "forces")
        forces = json.loads((folder / "eval.json").read_text())["forces"]
        zv, zv_error = forces["zv_zb"]["forces"][1][2], forces["zv_zb"]["errors"][1][2]
        bare, bare_error = (forces["hellmann_feynman"][k][1][2] for k in ("forces", "errors"))
        value, error = correlated_derivative(folder, args.eval_steps, args.h)
        rows.append(
            f"| {bond} | {zv:+.4f} ± {zv_error:.4f} | {value:+.4f} ± {error:.4f} | "
            f"{bare:+.4f} ± {bare_error:.4f} |"
        )
        print(rows[-1], flush=True)
    (args.out / "h2_forces.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

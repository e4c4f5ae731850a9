"""What the MCMC moves per step cost: whole optimisation steps of one molecule with the size
table's config at several `mcmc.moves`, compiled, then timed side by side in interleaved rounds
(medians, ms). The energy per step that fewer moves buy is measured by training runs
(docs/results.md, "Defaults by system size"); this gives the time per step to weigh it with.

    python benchmarks/step_moves.py --molecule Ne --moves 10,20 [--repeats 15]
"""

from __future__ import annotations

import argparse
import dataclasses

from vmcjet.bench import interleaved_medians
from vmcjet.bench_step import whole_step
from vmcjet.cli import apply_process_settings
from vmcjet.defaults import resolve_run_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecule", default="Ne")
    parser.add_argument("--moves", default="10,20", help="comma-separated moves per step")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    apply_process_settings()
    config, _ = resolve_run_config(None, {"system": {"molecule": args.molecule}}, {})
    steps = {}
    for moves in (int(m) for m in args.moves.split(",")):
        mcmc = dataclasses.replace(config.mcmc, moves=moves)
        steps[moves] = whole_step(dataclasses.replace(config, mcmc=mcmc))
    medians = interleaved_medians(steps, args.repeats)
    print(f"{args.molecule}: batch {config.batch_size}, {config.optim.optimizer}")
    for moves, ms in medians.items():
        print(f"  moves {moves:3d}: {ms:8.1f} ms per step")


if __name__ == "__main__":
    main()

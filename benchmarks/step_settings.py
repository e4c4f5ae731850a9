"""What one setting costs per step: whole optimisation steps of one molecule with the size
table's config at several values of one config key (e.g. `mcmc.moves`, `mcmc.proposal`),
compiled, then timed side by side in interleaved rounds (medians, ms). The energy per step that a
value buys is measured by training runs (docs/results.md, "Defaults by system size"); this gives
the time per step to weigh it with.

    python benchmarks/step_settings.py --molecule Ne --vary mcmc.moves=10,20 [--repeats 15]
    python benchmarks/step_settings.py --molecule N2 --vary mcmc.proposal=gaussian,nucleus-scaled
"""

from __future__ import annotations

import argparse

from vmcjet.bench import interleaved_medians
from vmcjet.bench_step import whole_step
from vmcjet.cli import apply_process_settings
from vmcjet.config import parse_overrides
from vmcjet.defaults import resolve_run_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecule", default="Ne")
    parser.add_argument(
        "--vary", default="mcmc.moves=10,20", help="KEY=V1,V2,...: one config key, its values"
    )
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    apply_process_settings()
    key, _, values = args.vary.partition("=")
    flags = {"system": {"molecule": args.molecule}}
    steps, configs = {}, {}
    for value in values.split(","):
        sets = parse_overrides([f"{key}={value}"])
        configs[value], _ = resolve_run_config(None, flags, sets)
        steps[value] = whole_step(configs[value])
    medians = interleaved_medians(steps, args.repeats)
    first = next(iter(configs.values()))
    print(f"{args.molecule}: batch {first.batch_size}, {first.optim.optimizer}")
    width = max(len(value) for value in medians)
    for value, ms in medians.items():
        print(f"  {key} = {value:<{width}}  {ms:8.1f} ms per step")


if __name__ == "__main__":
    main()

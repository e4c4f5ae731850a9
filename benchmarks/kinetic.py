"""Kinetic-energy benchmark of every Laplacian method (thin wrapper over `vmcjet.bench`).

    python benchmarks/kinetic.py                      # all cases, batch 64 and 256, 5 repeats
    python benchmarks/kinetic.py --quick              # smoke test
    python benchmarks/kinetic.py --cases mlp,ferminet-N2 --methods collapsed,folx --batch-sizes 64

Writes benchmarks/results/<stem>.{json,md,png}. Same flags as `vmcjet bench kinetic`.
"""

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from vmcjet.bench import add_kinetic_arguments, run_kinetic_from_args
from vmcjet.cli import apply_process_settings


def main(argv: list[str]) -> None:
    apply_process_settings()  # as the `vmcjet` command does, so that the numbers compare
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_kinetic_arguments(parser)
    command = shlex.join(["python", "benchmarks/kinetic.py", *argv])
    run_kinetic_from_args(parser.parse_args(argv), command)


if __name__ == "__main__":
    main(sys.argv[1:])

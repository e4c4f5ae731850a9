"""The `vmcjet` command line: `vmcjet molecules [NAME]` and `vmcjet run ...`.

Every `VmcjetError` (bad molecule, bad config, bad flag, unusable checkpoint) ends the program with
`vmcjet: error: <one line>` on stderr and exit status 2, never a traceback. The molecule is loaded
and validated before anything else; the optimisation itself lives in `vmcjet.driver`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from vmcjet import config as config_lib
from vmcjet.allocator import retain_freed_memory
from vmcjet.blas_threads import limit_blas_threads
from vmcjet.config import Config
from vmcjet.errors import InputError, Interrupted, VmcjetError
from vmcjet.fileio import os_error_message
from vmcjet.molecule import (
    Molecule,
    catalogue_names,
    load_molecule,
    min_internuclear_distance,
)
from vmcjet.units import ANGSTROM_PER_BOHR
from vmcjet.xla_cpu import keep_reductions_in_xla

# `vmcjet run` flag (argparse dest) -> the config key it sets.
FLAG_KEYS = {
    "molecule": "system.molecule",
    "charge": "system.charge",
    "spin": "system.spin",
    "steps": "steps",
    "network": "network.kind",
    "batch_size": "batch_size",
    "seed": "seed",
    "laplacian": "laplacian.method",
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are InputErrors (one line, exit status 2)."""

    def error(self, message: str) -> NoReturn:
        raise InputError(f"{message}; see `{self.prog} --help`")


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that set config options (shared by `run` and `bench step`)."""
    parser.add_argument("--molecule", help="catalogue name, molecule .toml or .xyz file (angstrom)")
    parser.add_argument("--charge", type=int, help="total charge (e), overrides the molecule's")
    parser.add_argument("--spin", type=int, help="2S = N_alpha - N_beta, overrides the molecule's")
    parser.add_argument("--steps", type=int, help="optimisation steps")
    parser.add_argument("--network", help=f"network kind: {', '.join(config_lib.NETWORK_KINDS)}")
    parser.add_argument("--batch-size", type=int, help="number of walkers")
    parser.add_argument("--seed", type=int, help="root random seed")
    parser.add_argument("--laplacian", help="Laplacian method (laplacian.method)")
    parser.add_argument("--config", help="TOML file with config options")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one option"
    )


def _add_run_parser(commands: Any) -> None:
    run = commands.add_parser("run", help="optimise a wavefunction")
    _add_config_arguments(run)
    run.add_argument("--out", help="run folder to create (default runs/<molecule>-<time>)")
    run.add_argument("--print-config", action="store_true", help="print the config and exit")
    run.add_argument("--resume", metavar="RUN_FOLDER", help="continue a run from its checkpoint")
    run.add_argument(
        "--reinit-walkers", action="store_true", help="with --resume: fresh walkers and burn-in"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vmcjet", description="Variational Monte Carlo for molecules (JAX).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    molecules = commands.add_parser("molecules", help="list the catalogue or show one molecule")
    molecules.add_argument("molecule", nargs="?", help="catalogue name, .toml or .xyz file")
    info = commands.add_parser(
        "info", help="versions, devices, processes and precision/allocator settings"
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of aligned lines")
    _add_run_parser(commands)
    _add_analysis_parsers(commands)
    return parser


def _add_analysis_parsers(commands: Any) -> None:
    evaluate = commands.add_parser("eval", help="MCMC with frozen parameters: energy ± error")
    evaluate.add_argument("run_folder", help="folder written by `vmcjet run`")
    evaluate.add_argument(
        "--steps",
        type=int,
        help="MCMC steps to average over (default: 10^6 walker samples / batch, at least 1000)",
    )
    evaluate.add_argument(
        "--observables",
        help="comma-separated observables besides the energy: s2, dipole, density, forces "
        "(default: the run config's `observables`)",
    )
    analyze = commands.add_parser("analyze", help="energy ± error from the training statistics")
    analyze.add_argument("run_folder", help="folder written by `vmcjet run`")
    analyze.add_argument(
        "--discard", type=float, default=0.5, help="leading fraction of steps to drop"
    )
    plot = commands.add_parser("plot", help="PNG of energy, variance and acceptance per step")
    plot.add_argument("run_folder", help="folder written by `vmcjet run`")
    plot.add_argument("--output", help="PNG path (default RUN/training.png or RUN/density.png)")
    plot.add_argument(
        "--density",
        action="store_true",
        help="plot RUN/density.h5 (from `vmcjet eval RUN --observables density`) instead",
    )
    bench = commands.add_parser("bench", help="benchmarks")
    kinds = bench.add_subparsers(dest="bench", required=True, parser_class=_Parser)
    from vmcjet.bench import add_kinetic_arguments

    add_kinetic_arguments(kinds.add_parser("kinetic", help="kinetic energy: Laplacian methods"))
    from vmcjet.bench_operator import add_operator_arguments

    add_operator_arguments(
        kinds.add_parser("operator", help="Laplacian or biharmonic of the MLP probe: methods")
    )
    from vmcjet.bench_dimwise import add_dimwise_arguments

    add_dimwise_arguments(
        kinds.add_parser("dimwise", help="dimension-wise derivatives against jvps and jacfwd")
    )
    step = kinds.add_parser("step", help="time of one step: sampling, local energy, update")
    _add_config_arguments(step)
    step.add_argument("--repeats", type=int, default=15, help="timed calls of each part")
    step.add_argument(
        "--batch-sizes",
        help="comma-separated batch sizes timed side by side (e.g. 128,256,512); writes a table, "
        "JSON and plot under --output",
    )
    step.add_argument("--output", default="benchmarks/results", help="folder of the sweep files")
    step.add_argument("--name", default="step", help="file stem of the sweep files")


def _analysis(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from vmcjet import evaluate

    if args.command == "eval":
        record = evaluate.evaluate(args.run_folder, args.steps, observables_text=args.observables)
        print(evaluate.format_summary(record))
    elif args.command == "analyze":
        print(evaluate.format_summary(evaluate.analyze(args.run_folder, discard=args.discard)))
    elif args.command == "plot":
        from vmcjet import plots

        draw = plots.plot_density if args.density else plots.plot
        print(f"wrote {draw(args.run_folder, args.output)}")
    elif args.bench == "step":
        from vmcjet import bench_step

        config = resolve_config(args)
        if args.batch_sizes:
            sizes = _batch_sizes(args.batch_sizes)
            rows = bench_step.sweep(config, sizes, repeats=args.repeats)
            command = shlex.join(["vmcjet", *argv])
            path = bench_step.write_sweep(rows, Path(args.output), args.name, config, command)
            print(bench_step.format_table(rows))
            print(f"wrote {path}")
        else:
            bench_step.run(config, repeats=args.repeats)
    elif args.bench == "dimwise":
        from vmcjet.bench_dimwise import run_dimwise_from_args

        run_dimwise_from_args(args, shlex.join(["vmcjet", *argv]))
    elif args.bench == "operator":
        from vmcjet.bench_operator import run_operator_from_args

        run_operator_from_args(args, shlex.join(["vmcjet", *argv]))
    else:
        from vmcjet.bench import run_kinetic_from_args

        run_kinetic_from_args(args, shlex.join(["vmcjet", *argv]))
    return 0


def _batch_sizes(text: str) -> list[int]:
    """'256,128' -> [128, 256] (sorted, so ratios are to the smallest); anything but positive
    integers is an InputError."""
    try:
        sizes = [int(item) for item in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise InputError(f"--batch-sizes expects positive integers like 128,256,512, got '{text}'")
    return sorted(set(sizes))


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    dotted = {key: getattr(args, dest) for dest, key in FLAG_KEYS.items()}
    return config_lib.nest({k: v for k, v in dotted.items() if v is not None})


def resolve_config(args: argparse.Namespace) -> Config:
    """Defaults <- size table for the molecule <- --config file <- flags <- --set, validated.

    A resumed run starts from its stored config instead (the size table is not applied again).
    """
    flags, sets = _flag_overrides(args), config_lib.parse_overrides(args.set)
    if getattr(args, "resume", None) is None:
        from vmcjet.defaults import resolve_run_config

        config = resolve_run_config(args.config, flags, sets)[0]
    else:
        from vmcjet import runfolder

        base = runfolder.read_config(runfolder.existing_run_folder(args.resume))
        config = config_lib.build_config(args.config, flags, base=base)
        config = config_lib.build_config(None, sets, base=config)
    config_lib.validate(config)
    return config


def check_run_flags(args: argparse.Namespace) -> None:
    """Flags that only make sense together: --out starts a new run, --resume continues one."""
    if args.resume is not None and args.out is not None:
        raise InputError(
            "--out and --resume exclude each other (a resumed run writes to its own folder); "
            "drop --out"
        )
    if args.reinit_walkers and args.resume is None:
        raise InputError("--reinit-walkers needs --resume RUN_FOLDER (a new run has fresh walkers)")


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    check_run_flags(args)
    config = resolve_config(args)
    system = config.system
    molecule = load_molecule(
        system.molecule, charge=system.charge, spin=system.spin, ecp=system.ecp
    )
    if args.print_config:
        print(config_lib.to_toml(config), end="")
        return 0
    from vmcjet import driver

    driver.run(
        config,
        molecule,
        out=args.out,
        resume=args.resume,
        reinit_walkers=args.reinit_walkers,
        argv=list(argv),
    )
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _best_reference(molecule: Molecule) -> str:
    if not molecule.references:
        return "-"
    ref = next((r for r in molecule.references if r.kind == "exact"), molecule.references[0])
    return f"{ref.energy:.6f} ({ref.kind})"


def format_catalogue() -> str:
    """The catalogue as a table: name, electrons, spin, best reference energy (hartree)."""
    molecules = [load_molecule(name) for name in catalogue_names()]
    molecules.sort(key=lambda m: (len(m.symbols) > 1, m.n_electrons, m.name.lower()))
    lines = [f"{'name':<6} {'electrons':>9} {'spin':>4}  reference energy (Ha)"]
    for m in molecules:
        lines.append(f"{m.name:<6} {m.n_electrons:>9} {m.spin:>4}  {_best_reference(m)}")
    lines.append("spin = 2S = N_alpha - N_beta; `vmcjet molecules NAME` shows one system.")
    return "\n".join(lines)


def format_molecule(molecule: Molecule) -> str:
    """One molecule: charge, spin, electrons, coordinates (bohr and angstrom), references."""
    m = molecule
    lines = [
        f"{m.name}: {m.n_electrons} electrons ({m.n_alpha} alpha, {m.n_beta} beta), "
        f"charge {m.charge}, spin 2S = {m.spin}",
        f"geometry: {m.geometry_source or '-'}",
        f"{'atom':<5} {'x':>10} {'y':>10} {'z':>10}   (bohr)   "
        f"{'x':>9} {'y':>9} {'z':>9}   (angstrom)",
    ]
    for symbol, xyz in zip(m.symbols, m.coords, strict=True):
        bohr = " ".join(f"{v:>10.5f}" for v in xyz)
        angstrom = " ".join(f"{v * ANGSTROM_PER_BOHR:>9.5f}" for v in xyz)
        lines.append(f"{symbol:<5} {bohr}            {angstrom}")
    distance = min_internuclear_distance(m)
    if distance is not None:
        lines.append(
            f"minimum internuclear distance: {distance:.5f} bohr "
            f"({distance * ANGSTROM_PER_BOHR:.5f} angstrom)"
        )
        lines.append(f"nuclear repulsion: {m.nuclear_repulsion:.6f} Ha")
    for ref in m.references:
        lines.append(f"reference: {ref.energy:.6f} Ha ({ref.kind}) {ref.source}")
    return "\n".join(lines)


# Seconds after which a signal that arrived inside a garbage-collector callback is sent again.
SIGNAL_RETRY_SECONDS = 0.05


def _in_gc_callback(frame: Any) -> bool:
    """Whether `frame` (or a caller of it) is a garbage-collector callback or a `__del__`, where
    Python prints an exception ("Exception ignored in ...") and drops it."""
    callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _raise_interrupted(signum: int, frame: Any) -> None:
    """Raises `Interrupted`; inside a gc callback (JAX registers one) the exception would be
    dropped and the signal lost, so the signal is sent again shortly, from outside it."""
    if _in_gc_callback(frame):
        threading.Timer(SIGNAL_RETRY_SECONDS, os.kill, (os.getpid(), signum)).start()
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` (one line, exit 128 + signal) until the run's
    optimisation loop installs its own handler (checkpoint, clean exit)."""
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _raise_interrupted)
    except ValueError:  # not the main thread: leave the handlers alone
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def apply_process_settings() -> None:
    """The command's process-wide settings (vmcjet.xla_cpu, vmcjet.allocator,
    vmcjet.blas_threads); benchmark scripts apply them too, so that their numbers compare with the
    command's."""
    keep_reductions_in_xla()
    retain_freed_memory()
    limit_blas_threads()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vmcjet` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    apply_process_settings()
    with _signals_raise():
        return _main(argv)


def _main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "molecules":
            text = (
                format_catalogue()
                if args.molecule is None
                else format_molecule(load_molecule(args.molecule))
            )
            print(text)
            return 0
        if args.command == "info":
            from vmcjet.environment import environment_info, format_info

            info = environment_info()
            print(json.dumps(info, indent=2) if args.json else format_info(info))
            return 0
        if args.command == "run":
            return _run(args, argv)
        return _analysis(args, argv)
    except Interrupted as err:
        print(f"vmcjet: {err}", file=sys.stderr)
        return 128 + err.signum
    except KeyboardInterrupt:  # SIGINT before the handler was installed
        print("vmcjet: stopped by SIGINT; run the same command again", file=sys.stderr)
        return 130
    except VmcjetError as err:
        print(f"vmcjet: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `vmcjet molecules | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:  # full or read-only filesystem, a file where a folder should be, ...
        print(f"vmcjet: error: {os_error_message(err)}", file=sys.stderr)
        return 2

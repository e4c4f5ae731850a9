"""`vmcjet plot`: training curves from a run's statistics (training.png) and the one-electron
density that `vmcjet eval --observables density` wrote (density.png). Images are written through a
temporary file and a rename; matplotlib is the optional `plot` extra."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vmcjet import runfolder
from vmcjet.errors import InputError
from vmcjet.evaluate import DENSITY_FILE
from vmcjet.fileio import atomic_path
from vmcjet.session import run_molecule


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("plotting needs matplotlib; pip install 'vmcjet[plot]'") from None
    return plt


def _save(fig: Any, path: Path, plt: Any) -> None:
    """Writes `fig` to `path` through a temporary file and a rename (a reader never sees half an
    image), in the format `path`'s extension names."""
    image_format = _image_format(path, plt)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format=image_format)
    finally:
        plt.close(fig)


def plot(folder: str | Path, output: str | Path | None = None) -> Path:
    """PNG of energy per step (with running mean and reference), variance (log) and acceptance."""
    plt = _pyplot()
    folder = runfolder.existing_run_folder(folder)
    path = Path(output) if output else folder / "training.png"
    _image_format(path, plt)
    column = runfolder.stats_columns(folder)
    measured = np.isfinite(column["energy"])  # skipped steps have no energy: gaps in the plot
    if not measured.any():
        raise InputError(f"'{folder}' has no step with an energy yet; run some steps first")
    molecule = run_molecule(runfolder.read_config(folder))
    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    axes[0].plot(column["step"], column["energy"], lw=0.5, alpha=0.6, label="energy")
    axes[0].plot(column["step"], column["running_mean"], lw=1.5, label="running mean")
    if molecule.exact_energy is not None:
        axes[0].axhline(molecule.exact_energy, color="k", ls="--", lw=1, label="exact")
    energies = column["energy"][measured]
    settled = energies[len(energies) // 10 :]  # the first 10% of steps would set the scale
    low, high = np.percentile(settled, [1, 99])
    if molecule.exact_energy is not None:
        low = min(low, molecule.exact_energy)
    pad = 0.5 * (high - low) + 1e-6
    axes[0].set_ylim(low - pad, high + pad)
    axes[0].set_ylabel("energy (Ha)")
    axes[0].legend()
    axes[1].semilogy(column["step"], column["variance"], lw=0.7)
    axes[1].set_ylabel("variance (Ha²)")
    axes[2].plot(column["step"], column["acceptance"], lw=0.7)
    axes[2].set_ylabel("acceptance")
    axes[2].set_xlabel("step")
    fig.suptitle(f"{molecule.name}: {folder.name}")
    _save(fig, path, plt)
    return path


def plot_density(folder: str | Path, output: str | Path | None = None) -> Path:
    """PNG of RUN/density.h5: the total density (log scale) on the plane through the nuclei that
    contains their longest extent (z for an atom), and alpha, beta and total along that axis
    through the centre of the nuclei."""
    import h5py

    plt = _pyplot()
    folder = runfolder.existing_run_folder(folder)
    path = Path(output) if output else folder / "density.png"
    _image_format(path, plt)
    source = folder / DENSITY_FILE
    if not source.exists():
        raise InputError(
            f"'{folder}' has no {DENSITY_FILE}; run `vmcjet eval {folder} --observables density`"
        )
    with h5py.File(source, "r") as handle:
        alpha, beta = np.asarray(handle["alpha"]), np.asarray(handle["beta"])
        edges = [np.asarray(handle[f"edges_{name}"]) for name in "xyz"]
    molecule = run_molecule(runfolder.read_config(folder))
    coords = np.asarray(molecule.coords)
    extent = np.ptp(coords, axis=0)
    axis = int(np.argmax(extent)) if extent.max() > 0 else 2  # the line's axis
    # the plane's other axis: the remaining one along which the nuclei spread more (a planar
    # molecule's plane; for an atom or a linear molecule any)
    across = max((k for k in range(3) if k != axis), key=lambda k: extent[k])
    normal = 3 - axis - across
    centres = [0.5 * (e[1:] + e[:-1]) for e in edges]
    middle = coords.mean(axis=0)
    index = [int(np.argmin(np.abs(c - m))) for c, m in zip(centres, middle, strict=True)]
    total = alpha + beta
    plane = np.take(total, index[normal], axis=normal)  # axes (across, axis) in index order
    if across > axis:
        plane = plane.T
    names = "xyz"
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    floor = max(total.max() * 1e-6, 1e-12)
    image = left.pcolormesh(
        edges[axis], edges[across], np.log10(np.maximum(plane, floor)), shading="flat"
    )
    left.scatter(coords[:, axis], coords[:, across], c="w", marker="x")
    left.set_xlabel(f"{names[axis]} (bohr)")
    left.set_ylabel(f"{names[across]} (bohr)")
    left.set_aspect("equal")
    fig.colorbar(image, ax=left, label="log10 density (electrons / bohr³)")
    along = [index[0], index[1], index[2]]
    for label, values in (("total", total), ("alpha", alpha), ("beta", beta)):
        picked = [slice(None) if k == axis else along[k] for k in range(3)]
        right.semilogy(centres[axis], np.maximum(values[tuple(picked)], floor), label=label)
    for position in coords[:, axis]:
        right.axvline(position, color="k", lw=0.5, ls=":")
    right.set_xlabel(f"{names[axis]} (bohr), through the centre of the nuclei")
    right.set_ylabel("density (electrons / bohr³)")
    right.legend()
    fig.suptitle(f"{molecule.name}: one-electron density ({folder.name})")
    _save(fig, path, plt)
    return path


def _image_format(path: Path, plt: Any) -> str:
    """The image format named by `path`'s extension; an unknown one or a missing folder is an
    InputError."""
    supported = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in supported:
        raise InputError(
            f"--output '{path}' must end in one of {', '.join('.' + k for k in sorted(supported))}"
            "; e.g. training.png"
        )
    if not path.parent.is_dir():
        raise InputError(f"--output '{path}': folder '{path.parent}' does not exist; create it")
    return suffix

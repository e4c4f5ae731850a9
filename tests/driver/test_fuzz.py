"""Random bytes, non-UTF-8 text, truncated files and bit flips (fixed seed) fed into every
file-reading entry point of the CLI: molecule .toml/.xyz, --config, a run's config.toml,
stats.csv and checkpoints. Each call ends with status 0 or with one `vmcjet: error:` line, never a
traceback (an exception escaping `cli.main` fails the test)."""

import numpy as np
import pytest
from tiny_runs import tiny_run_args

from vmcjet import checkpoint, cli
from vmcjet.molecule import catalogue_dir

RNG_SEED = 1313


def damaged_versions(valid: bytes, rng: np.random.Generator, count: int) -> list[bytes]:
    """Random bytes, invalid UTF-8, truncations of `valid` and single-byte flips."""
    cases = [b"", b"\xff\xfe\x00garbage", rng.bytes(17), rng.bytes(400)]
    cases += [valid[: int(len(valid) * f)] for f in (0.1, 0.5, 0.93)]
    for _ in range(3):
        flipped = bytearray(valid)
        flipped[rng.integers(len(valid))] ^= 1 << int(rng.integers(8))
        cases.append(bytes(flipped))
    return cases[:count]


def assert_clean(argv, capsys):
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2), (argv, code, err[-500:])
    if code == 2:
        last = err.strip().splitlines()[-1]
        assert last.startswith("vmcjet: error: "), last


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz") / "run"
    assert cli.main(tiny_run_args(folder, steps=5)) == 0
    return folder


def test_molecule_and_config_files(tmp_path, capsys):
    rng = np.random.default_rng(RNG_SEED)
    toml = (catalogue_dir() / "LiH.toml").read_bytes()
    xyz = b"2\nH2\nH 0 0 0\nH 0 0 0.74\n"
    config = b'steps = 3\nseed = 4\n[optim]\nlr = 0.5\n[system]\nmolecule = "H2"\n'
    for suffix, valid in ((".toml", toml), (".xyz", xyz)):
        for i, data in enumerate(damaged_versions(valid, rng, 10)):
            path = tmp_path / f"m{i}{suffix}"
            path.write_bytes(data)
            assert_clean(["molecules", str(path)], capsys)
            assert_clean(["run", "--molecule", str(path), "--print-config"], capsys)
    for i, data in enumerate(damaged_versions(config, rng, 10)):
        path = tmp_path / f"c{i}.toml"
        path.write_bytes(data)
        assert_clean(["run", "--config", str(path), "--print-config"], capsys)


def test_stats_and_config_of_a_run(run_folder, tmp_path, capsys):
    rng = np.random.default_rng(RNG_SEED + 1)
    stats = (run_folder / "stats.csv").read_bytes()
    config = (run_folder / "config.toml").read_bytes()
    try:
        for i, data in enumerate(damaged_versions(stats, rng, 10)):
            (run_folder / "stats.csv").write_bytes(data)
            assert_clean(["analyze", str(run_folder), "--discard", "0"], capsys)
            if i % 3 == 0:
                assert_clean(["plot", str(run_folder), "--output", str(tmp_path / "p.png")], capsys)
        (run_folder / "stats.csv").unlink()
        assert_clean(["analyze", str(run_folder)], capsys)
        assert_clean(["plot", str(run_folder)], capsys)
    finally:
        (run_folder / "stats.csv").write_bytes(stats)
    try:
        for data in damaged_versions(config, rng, 10):
            (run_folder / "config.toml").write_bytes(data)
            assert_clean(["analyze", str(run_folder)], capsys)
            assert_clean(["run", "--resume", str(run_folder), "--steps", "5"], capsys)
    finally:
        (run_folder / "config.toml").write_bytes(config)


def test_checkpoints_of_a_run(run_folder, capsys):
    rng = np.random.default_rng(RNG_SEED + 2)
    paths = checkpoint.list_checkpoints(run_folder / "checkpoints")
    originals = {p: p.read_bytes() for p in paths}
    newest = paths[-1]
    try:
        for data in damaged_versions(originals[newest], rng, 10)[2:7]:
            for path in paths:
                path.write_bytes(data)
            assert_clean(["eval", str(run_folder), "--steps", "2"], capsys)
        assert_clean(["run", "--resume", str(run_folder), "--steps", "6"], capsys)
    finally:
        for path, data in originals.items():
            path.write_bytes(data)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plot", "RUN", "--output", "training.txt"], "must end in one of"),
        (["plot", "RUN", "--output", "/nonexistent/folder/t.png"], "does not exist"),
    ],
)
def test_plot_output_is_checked(run_folder, capsys, argv, message):
    argv = [str(run_folder) if a == "RUN" else a for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err

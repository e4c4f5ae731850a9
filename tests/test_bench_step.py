"""`vmcjet bench step`: every part timed and measured at every batch size, side by side, and the
sweep's table, JSON and plot written (tiny H2 network, 1 repeat: a smoke test, no timing claims)."""

import json

import pytest

from vmcjet import bench_step, cli
from vmcjet.config import build_config

TINY = {
    "system": {"molecule": "H2"},
    "network": {"determinants": 1, "ferminet": {"hidden_one": 8, "hidden_two": 4, "layers": 1}},
    "precision": "float64",
}


@pytest.mark.parametrize("optimizer", ["spring", "adam"])
def test_sweep_has_every_part_at_every_batch(optimizer):
    config = build_config(overrides={**TINY, "optim": {"optimizer": optimizer}})
    rows = bench_step.sweep(config, [4, 8], repeats=1)
    assert {(r["batch"], r["part"]) for r in rows} == {
        (b, p) for b in (4, 8) for p in bench_step.PARTS
    }
    for row in rows:
        assert row["ms"] > 0 and row["us_per_walker"] == pytest.approx(
            1e3 * row["ms"] / row["batch"]
        )
        assert (row["temp_mib"] is None) == (row["part"] == "whole_step")
        if row["batch"] == 4:
            assert row["per_walker_ratio"] == pytest.approx(1.0)
    table = bench_step.format_table(rows)
    assert table.count("\n") == 3 and "whole_step" in table


def test_cli_sweep_writes_table_json_and_plot(tmp_path, capsys):
    argv = ["bench", "step", "--molecule", "H2", "--batch-sizes", "4,8", "--repeats", "1"]
    argv += ["--output", str(tmp_path), "--name", "tiny", "--set", "precision=float64"]
    argv += ["--set", "network.ferminet.layers=1", "--set", "network.determinants=1"]
    assert cli.main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    record = json.loads((tmp_path / "tiny.json").read_text())
    assert record["command"].startswith("vmcjet bench step") and len(record["rows"]) == 10
    assert (tmp_path / "tiny.md").read_text().startswith("`vmcjet bench step")
    assert (tmp_path / "tiny.png").stat().st_size > 0


def test_whole_step_runs_one_step_without_building_the_parts(monkeypatch):
    """`whole_step` (benchmarks/step_settings.py) calls the session's step from step 0 and never
    compiles the separate parts."""
    monkeypatch.setattr(bench_step, "make_step_parts", lambda *a: pytest.fail("parts built"))
    config = build_config(overrides={**TINY, "batch_size": 4})
    state, _ = bench_step.whole_step(config)()
    assert int(state.step) == 1

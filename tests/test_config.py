"""Config: defaults <- TOML <- overrides, unknown keys, types, --set parsing, round trip."""

import dataclasses
import tomllib

import pytest

from vmcjet import config as config_lib
from vmcjet.config import Config, build_config, parse_overrides
from vmcjet.errors import InputError


def _set(*items):
    return build_config(overrides=parse_overrides(list(items)))


@pytest.mark.parametrize(
    ("item", "suggestion"),
    [("optim.lrr=1", "optim.lr"), ("optm.lr=1", "optim.lr"), ("step=3", "steps")],
)
def test_unknown_key_suggests_the_closest(item, suggestion):
    with pytest.raises(InputError, match=f"unknown config key.*did you mean '{suggestion}'"):
        _set(item)


def test_unknown_key_in_a_file_section(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[mcmc]\nmovs = 3\n")
    with pytest.raises(InputError, match="did you mean 'mcmc.moves'"):
        build_config(path)


@pytest.mark.parametrize(
    ("item", "expected"),
    [("steps=1.5", "expects int"), ("network.kind=3", "expects str"), ("seed=true", "expects int")],
)
def test_wrong_type_names_key_and_type(item, expected):
    key = item.split("=")[0]
    with pytest.raises(InputError, match=f"'{key}' {expected}"):
        _set(item)


def test_section_given_a_value_is_an_error():
    with pytest.raises(InputError, match="is a section"):
        _set("optim=3")
    with pytest.raises(InputError, match="is a section"):
        _set("optim.lr=1", "optim=3")
    with pytest.raises(InputError, match="conflicts"):
        _set("optim=3", "optim.lr=1")


def test_set_parses_toml_values_and_bare_words():
    config = _set(
        "optim.lr=1",  # an int where a float is expected becomes a float
        "system.molecule=data/h2.xyz",  # bare word: a string
        'network.kind="psiformer"',
        "system.charge=none",
        "laplacian.chunk_size=6",
        "network.full_determinant=true",
    )
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.system.molecule == "data/h2.xyz"
    assert config.network.kind == "psiformer"
    assert config.system.charge is None
    assert config.laplacian.chunk_size == 6
    assert config.network.full_determinant is True


@pytest.mark.parametrize("item", ["optim.lr", "=3", " =1"])
def test_malformed_set_item(item):
    with pytest.raises(InputError, match="--set expects key=value"):
        parse_overrides([item])


def test_overrides_win_over_file_which_wins_over_defaults(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("steps = 3\nseed = 5\n[optim]\nlr = 0.5\n")
    config = build_config(path, parse_overrides(["steps=9"]))
    assert (config.steps, config.seed, config.optim.lr) == (9, 5, 0.5)
    assert config.batch_size == Config().batch_size


def test_toml_round_trip(tmp_path):
    config = _set(
        "steps=17",
        "optim.lr=0.125",
        "system.molecule=N2",
        "system.spin=2",
        "laplacian.walker_batch_size=64",
        'precision="float64"',
    )
    text = config_lib.to_toml(config)
    tomllib.loads(text)  # valid TOML
    path = tmp_path / "resolved.toml"
    path.write_text(text)
    assert build_config(path) == config


def test_config_hash_depends_on_values_only():
    config = Config()
    assert config_lib.config_hash(config) == config_lib.config_hash(Config())
    changed = dataclasses.replace(config, seed=1)
    assert config_lib.config_hash(changed) != config_lib.config_hash(config)


def test_malformed_toml_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("steps = = 3\n")
    with pytest.raises(InputError, match="malformed TOML") as info:
        build_config(path)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        build_config(tmp_path / "missing.toml")

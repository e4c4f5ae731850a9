"""Every option of a vmcjet run, with its default and a one-line comment, in one place.

A config is a tree of frozen dataclasses. It is built from the defaults, then a TOML file
(`--config run.toml`), then dotted overrides (`--set optim.lr=0.02`). Unknown keys are an
`InputError` that suggests the closest valid key; a wrongly typed value names the key and the type.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmcjet.errors import InputError
from vmcjet.fileio import read_text
from vmcjet.matmul_precision import MATMUL_PRECISIONS


@dataclass(frozen=True)
class SystemConfig:
    molecule: str = "LiH"  # catalogue name, path to a molecule TOML, or an .xyz file
    charge: int | None = None  # overrides the molecule's total charge (e)
    spin: int | None = None  # overrides 2S = N_alpha - N_beta
    basis: str = "ccpvdz"  # Gaussian basis of the Hartree-Fock reference (pretraining)
    hf: str = "auto"  # Hartree-Fock: "auto" (RHF closed / UHF open shell), "rhf", "uhf", "rohf"
    # Effective core potentials: "" (all electrons), "ccecp" (every atom with Z >= 3) or per
    # element "Si:ccecp,O:ccecp" (vmcjet.ecp); the default basis then becomes ccecp-ccpvdz on them.
    ecp: str = ""


@dataclass(frozen=True)
class FermiNetConfig:
    hidden_one: int = 64  # width of the one-electron stream
    hidden_two: int = 16  # width of the two-electron (pair) stream
    layers: int = 3  # number of interaction layers


@dataclass(frozen=True)
class PsiformerConfig:
    layers: int = 2  # number of self-attention layers
    heads: int = 4  # attention heads per layer
    head_dim: int = 8  # width of each head; model width = heads * head_dim


@dataclass(frozen=True)
class NetworkConfig:
    kind: str = "ferminet"  # "ferminet" or "psiformer"
    preset: str = "cpu"  # "cpu": these or the size table's sizes; "paper": docs/networks.md
    determinants: int = 4  # number of determinants K
    full_determinant: bool = False  # dense over both spins (True) or block-diagonal by spin
    envelope: str = "isotropic"  # "isotropic" or "anisotropic" exponential envelopes
    inputs: str = "vectors"  # "vectors" (r_i - R_I, distances) or "distances" (rotation invariant)
    jastrow: bool | None = None  # electron-electron cusp Jastrow; None: on for psiformer only
    # "" or "inversion": psi(r) + psi(-r) about the centre of nuclear charge (docs/networks.md)
    symmetry: str = ""
    ferminet: FermiNetConfig = field(default_factory=FermiNetConfig)
    psiformer: PsiformerConfig = field(default_factory=PsiformerConfig)


@dataclass(frozen=True)
class LaplacianConfig:
    method: str = "collapsed"  # "collapsed", "loop", "hessian", "vmap_jvp", "taylor", "folx"
    chunk_size: int | None = None  # directions per inner chunk (None: the method's own default)
    walker_batch_size: int | None = None  # walkers per lax.map chunk (None: all at once)


@dataclass(frozen=True)
class McmcConfig:
    moves: int = 10  # Metropolis moves per optimisation step
    width: float = 0.2  # initial Gaussian proposal width (bohr)
    proposal: str = "gaussian"  # "gaussian", "nucleus-scaled" (per-electron widths) or "langevin"
    target_acceptance: float = 0.5  # the width adapts towards this acceptance rate
    burn_in: int = 200  # moves before the first optimisation step
    init_spread: float = 1.0  # Gaussian spread of initial electrons around their nucleus (bohr)


@dataclass(frozen=True)
class PretrainConfig:
    iterations: int = 1000  # maximum Adam steps fitting the orbitals to Hartree-Fock (0: skip)
    lr: float = 3e-3  # Adam learning rate of pretraining
    moves: int = 1  # Metropolis moves per pretraining step
    window: int = 100  # early stop: iterations per window (its median orbital loss is compared)
    patience: int = 3  # early stop: windows in a row without a better median by tolerance
    tolerance: float = 0.0  # early stop: relative improvement that counts (0: never stop early)


@dataclass(frozen=True)
class KfacConfig:
    lr: float = 0.05  # KFAC's initial learning rate (optim.lr is SPRING's and Adam's)
    lr_decay: float = 1e-3  # KFAC: lr(t) = lr / (1 + lr_decay * t) (docs/results.md, "KFAC")
    damping: float = 1e-3  # Tikhonov damping lambda: (A (x) G + lambda I)^-1 per dense layer
    decay: float = 0.95  # moving-average weight of the previous curvature factors, in [0, 1)
    inverse_period: int = 10  # eigendecompositions of the factors every N steps (and at step 0)
    max_norm: float = 1e-3  # norm constraint: bound on lr^2 g^T F^-1 g at the initial lr
    centred: bool = True  # centred Fisher (as SPRING) or the uncentred mean O O^T
    sharing: str = "expand"  # shared layers: "expand" (each row a sample) or "reduce" (row sums)


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "spring"  # "spring" (natural gradient in sample space), "kfac" or "adam"
    lr: float = 0.1  # initial learning rate (SPRING step scale; tuned on LiH, docs/results.md)
    lr_decay: float = 1e-2  # lr(t) = lr / (1 + lr_decay * t)
    lr_drop_step: int = 0  # from this step on, any optimiser's rate x lr_drop_factor (0: never)
    lr_drop_factor: float = 1.0  # the late drop of the rate (LiH longer recipe, docs/results.md)
    damping: float = 1e-3  # SPRING: Tikhonov damping of the sample-space kernel
    momentum: float = 0.99  # SPRING: reuse of the previous direction (mu)
    max_norm: float = 1e-3  # SPRING: bound on the squared norm of the step (norm constraint)
    kernel_dtype: str = "float64"  # SPRING: dtype of the B x B kernel and its Cholesky solve
    clip_width: float = 5.0  # gradient only: E_L clipped to median +/- clip_width * mean |dev|
    kfac: KfacConfig = field(default_factory=KfacConfig)


@dataclass(frozen=True)
class CheckpointConfig:
    every_steps: int = 500  # write a checkpoint every N steps (0: never by count)
    every_minutes: float = 10.0  # ...and at least every M minutes (0: never by time)
    keep: int = 3  # number of checkpoints kept
    max_skipped_steps: int = 20  # stop after this many consecutive non-finite updates


@dataclass(frozen=True)
class Config:
    seed: int = 0  # root of every random key (streams and their derivation: vmcjet/session.py)
    batch_size: int = 256  # number of walkers (divisible by the device count; SPRING ~ B^2)
    steps: int = 10000  # optimisation steps
    # Wall-time limit of the command (minutes, from its start: set-up and pretraining count); the
    # run stops after the step that reaches it, saved (`--resume` continues). None: no limit.
    max_minutes: float | None = None
    precision: str = "float32"  # "float32" or "float64"
    # Precision of the matrix products in the local energy, gradients and optimiser update:
    # "highest", "high" or "default" (on GPUs "default" allows TF32; vmcjet/matmul_precision.py).
    matmul_precision: str = "highest"
    devices: int | None = None  # walkers are sharded over the first N devices (None: all)
    memory_budget_mib: float | None = None  # per-walker parts chunked to fit (None: no chunks)
    # Walker chunks of the local energy (and of Adam's and KFAC's gradients) hold about this many
    # MiB of temporaries (a speed setting; None: 8 on CPUs, measured; whole batch on GPUs).
    working_set_mib: float | None = None
    log_every: int = 100  # plain log line every N steps when not on a terminal
    # Observables `vmcjet eval` estimates besides the energy, comma-separated: "s2", "dipole",
    # "density", "forces" (vmcjet/observables.py; `vmcjet eval --observables` overrides).
    observables: str = ""
    # During training, every N steps the observables above except "density" are estimated on the
    # step's walkers and appended to RUN/observables.jsonl (one batch, no error bar). 0: never.
    observables_every: int = 0
    system: SystemConfig = field(default_factory=SystemConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    laplacian: LaplacianConfig = field(default_factory=LaplacianConfig)
    mcmc: McmcConfig = field(default_factory=McmcConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, tp in _field_types(cls).items():
        if dataclasses.is_dataclass(tp):
            keys += _all_keys(tp, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _unknown_key(key: str) -> InputError:
    close = difflib.get_close_matches(key, _all_keys(Config), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else "; see `vmcjet run --print-config`"
    return InputError(f"unknown config key '{key}'{hint}")


def _type_name(tp: Any) -> str:
    return " or ".join("none" if a is type(None) else a.__name__ for a in _type_options(tp))


def _type_options(tp: Any) -> tuple[type, ...]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.get_args(tp)
    return (tp,)


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Checks `value` against the annotated type; ints are accepted where floats are expected."""
    for option in _type_options(tp):
        if option is type(None) and value is None:
            return None
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option in (str, bool) and type(value) is option:
            return value
    raise InputError(f"config key '{key}' expects {_type_name(tp)}, got {value!r}")


def _merge(obj: Any, updates: dict[str, Any], prefix: str = "") -> Any:
    types_ = _field_types(type(obj))
    changes = {}
    for name, value in updates.items():
        key = prefix + name
        if name not in types_:
            raise _unknown_key(key)
        tp = types_[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise InputError(
                    f"config key '{key}' is a section; write [{key}] or {key}.<option>"
                )
            changes[name] = _merge(getattr(obj, name), value, key + ".")
        else:
            changes[name] = _coerce(key, value, tp)
    return dataclasses.replace(obj, **changes)


def _parse_value(key: str, text: str) -> Any:
    """Parses the right-hand side of `--set key=value` as a TOML value (bare words are strings)."""
    if text.lower() in ("none", "null"):
        return None
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """{'optim.lr': 0.02} -> {'optim': {'lr': 0.02}}; a key both leaf and section is an error."""
    tree: dict[str, Any] = {}
    for key, value in dotted.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"config key '{key}' conflicts with another --set")
        if isinstance(node.get(leaf), dict):
            raise InputError(f"config key '{key}' is a section; set one of its options instead")
        node[leaf] = value
    return tree


def parse_overrides(assignments: list[str]) -> dict[str, Any]:
    """Turns ['optim.lr=0.02', ...] into a nested dict; malformed items are an InputError."""
    dotted = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects key=value (e.g. optim.lr=0.02), got '{item}'")
        dotted[key.strip()] = _parse_value(key.strip(), text.strip())
    return nest(dotted)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Reads a TOML file; a missing or malformed file is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file '{path}' not found; check the path given to --config")
    try:
        return tomllib.loads(read_text(path, "config file", "fix the file"))
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"malformed TOML in '{path}': {err}; fix the file") from None


def build_config(
    file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    base: Config | None = None,
) -> Config:
    """Defaults (or `base`), then the TOML `file`, then nested `overrides`."""
    config = base or Config()
    if file is not None:
        config = _merge(config, load_toml(file))
    if overrides:
        config = _merge(config, overrides)
    return config


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def to_toml(config: Config) -> str:
    """The resolved config as TOML; options that are None are written as comments."""
    lines: list[str] = []

    def emit(tree: dict[str, Any], section: str) -> None:
        scalars = {k: v for k, v in tree.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in tree.items() if isinstance(v, dict)}
        if section:
            lines.append(f"\n[{section}]")
        for key, value in scalars.items():
            lines.append(f"# {key} = none" if value is None else f"{key} = {_toml_value(value)}")
        for key, sub in tables.items():
            emit(sub, f"{section}.{key}" if section else key)

    emit(to_dict(config), "")
    return "\n".join(lines).strip() + "\n"


def config_hash(config: Config) -> str:
    """Short stable hash of the resolved config (stored in checkpoints)."""
    return hashlib.sha256(to_toml(config).encode()).hexdigest()[:16]


# (dotted key, lower bound, whether the bound itself is allowed): checked by `validate`.
_BOUNDS = (
    ("steps", 0, False),
    ("batch_size", 0, False),
    ("log_every", 0, False),
    ("devices", 0, False),
    ("network.determinants", 0, False),
    ("network.ferminet.hidden_one", 0, False),
    ("network.ferminet.hidden_two", 0, False),
    ("network.ferminet.layers", 0, True),
    ("network.psiformer.layers", 0, True),
    ("network.psiformer.heads", 0, False),
    ("network.psiformer.head_dim", 0, False),
    ("mcmc.moves", 0, False),
    ("mcmc.width", 0.0, False),
    ("mcmc.burn_in", 0, True),
    ("pretrain.iterations", 0, True),
    ("pretrain.lr", 0.0, False),
    ("pretrain.window", 0, False),
    ("pretrain.patience", 0, False),
    ("pretrain.tolerance", 0.0, True),
    ("optim.lr", 0.0, False),
    ("optim.lr_decay", 0.0, True),
    ("optim.lr_drop_step", 0, True),
    ("optim.lr_drop_factor", 0.0, False),
    ("optim.damping", 0.0, False),
    ("optim.max_norm", 0.0, False),
    ("optim.clip_width", 0.0, False),
    ("optim.kfac.lr", 0.0, False),
    ("optim.kfac.lr_decay", 0.0, True),
    ("optim.kfac.damping", 0.0, False),
    ("optim.kfac.decay", 0.0, True),
    ("optim.kfac.inverse_period", 0, False),
    ("optim.kfac.max_norm", 0.0, False),
    ("checkpoint.keep", 0, False),
    ("checkpoint.every_steps", 0, True),
    ("checkpoint.every_minutes", 0.0, True),
    ("seed", 0, True),
    ("checkpoint.max_skipped_steps", 0, False),
    ("laplacian.chunk_size", 0, False),
    ("laplacian.walker_batch_size", 0, False),
    ("memory_budget_mib", 0.0, False),
    ("working_set_mib", 0.0, False),
    ("observables_every", 0, True),
    ("max_minutes", 0.0, False),
)
PRECISIONS = ("float32", "float64")
NETWORK_KINDS = ("ferminet", "psiformer")  # values of network.kind
# The names `optim.optimizer` takes (vmcjet.optim builds them).
OPTIMIZERS = ("spring", "adam", "kfac")
KFAC_SHARING = ("expand", "reduce")  # optim.kfac.sharing (as vmcjet.optim.kfac.SHARING)
MCMC_PROPOSALS = ("gaussian", "nucleus-scaled", "langevin")  # kernels of vmcjet.mcmc
SYMMETRIES = ("", "inversion")  # network.symmetry: none, or psi(r) + psi(-r) (vmcjet.networks)
HF_METHODS = ("auto", "rhf", "uhf", "rohf")  # system.hf (run by vmcjet.hartree_fock)
# (dotted key, the names it takes): checked by `validate`.
_CHOICES = (
    ("precision", PRECISIONS),
    ("matmul_precision", MATMUL_PRECISIONS),
    ("optim.kernel_dtype", PRECISIONS),
    ("system.hf", HF_METHODS),
    ("mcmc.proposal", MCMC_PROPOSALS),
    ("optim.kfac.sharing", KFAC_SHARING),
    ("network.symmetry", SYMMETRIES),
)


def get_setting(config: Config, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


MAX_INT = 2**63 - 1  # integers are stored as int64 (seed: jax.random.key takes an int64)


def _check_numbers(config: Config) -> None:
    """Every float setting is finite (TOML allows nan and inf) and every int fits in int64."""
    for key in _all_keys(Config):
        value = get_setting(config, key)
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"config key '{key}' must be a finite number, got {value}")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise InputError(f"config key '{key}' must be at most {MAX_INT} in size, got {value}")


def validate(config: Config) -> None:
    """Every check of a resolved config, in one place: numbers that must be positive (or
    non-negative), names from a fixed list (network kind, Laplacian method, optimiser, ...).
    Called where a config is resolved (`cli.resolve_config`) and by `driver.run`, so a Python
    caller gets the same checks as the command.

    Raises:
        InputError: naming the key, the value and what is allowed.
    """
    _check_numbers(config)
    from vmcjet.observables import check_with_ecp, parse_observables

    check_with_ecp(parse_observables(config.observables), config.system.ecp)
    if config.network.kind not in NETWORK_KINDS:
        raise InputError(
            f"unknown network kind '{config.network.kind}' (--network / network.kind); "
            f"choose one of: {', '.join(NETWORK_KINDS)}"
        )
    from vmcjet.laplacian.methods import laplacian_method

    try:
        laplacian_method(config.laplacian.method)
    except InputError as err:
        raise InputError(f"{err} (--laplacian / laplacian.method)") from None
    for key, bound, inclusive in _BOUNDS:
        value = get_setting(config, key)
        if value is None:
            continue
        if value < bound or (value == bound and not inclusive):
            relation = ">=" if inclusive else ">"
            raise InputError(f"config key '{key}' must be {relation} {bound}, got {value}")
    for key, choices in _CHOICES:
        value = get_setting(config, key)
        if value not in choices:
            raise InputError(
                f"config key '{key}' must be one of {', '.join(choices)}, got '{value}'"
            )
    if config.network.symmetry and config.optim.optimizer == "kfac":
        raise InputError(
            f"network.symmetry='{config.network.symmetry}' is not supported with KFAC (its "
            "curvature records one network pass); use --set optim.optimizer=spring or adam"
        )
    if config.optim.optimizer not in OPTIMIZERS:
        close = difflib.get_close_matches(config.optim.optimizer, OPTIMIZERS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise InputError(
            f"unknown optimizer '{config.optim.optimizer}' (optim.optimizer){hint}; "
            f"choose one of {', '.join(OPTIMIZERS)}"
        )
    if config.optim.kfac.decay >= 1.0:
        raise InputError(
            f"config key 'optim.kfac.decay' must be < 1, got {config.optim.kfac.decay}"
        )
    target = config.mcmc.target_acceptance
    if not 0.0 < target < 1.0:
        raise InputError(f"config key 'mcmc.target_acceptance' must lie in (0, 1), got {target}")

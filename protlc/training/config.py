"""Training configuration: defaults, YAML files from ``configs/`` and ``key=value`` overrides.

A config is a nested dict of plain values (it is saved as ``config.yaml`` in the run directory and
travels inside checkpoints). Unknown keys are errors, so a typo never silently does nothing.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from protlc.errors import ConfigError
from protlc.validate import FLAG, Rule, check, is_int, number, optional, whole

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "dataset": None,  # filled in by protlc.training.run.train
    "model": {"preset": "small"},
    "loss": {"name": "cce"},  # other keys are the loss's parameters (see protlc.losses)
    "optim": {
        "lr": 1e-3,
        "warmup_steps": 100,
        "final_lr_fraction": 0.05,  # exponential decay from lr to lr * this over the run
        "weight_decay": 0.0,
    },
    # tokens_per_batch: null (or 0) = batch_size sequences per batch, each padded to its longest one;
    # N = token-budget batches of up to N padded positions, lengths rounded up to width_multiple
    # (protlc.data.loading). Off by default: on a CPU padding costs as much as residues (64-wide classes
    # pad extHomFam by 21% against 3%); configs/paper_gpu.yaml turns it on.
    "data": {"batch_size": 64, "num_workers": 0, "tokens_per_batch": None, "width_multiple": 64},
    "trainer": {
        "max_epochs": 8,
        "accelerator": "cpu",
        "devices": 1,
        "num_nodes": 1,
        "strategy": "auto",
        "precision": "32",
        "compile": False,
        "accumulate_grad_batches": 1,
        "gradient_clip_val": None,
        "log_every_n_steps": 20,
        "progress_bar": True,
    },
    # auto: every 100 steps, or 50 points over the run when that is sparser (each point costs up to
    # 3 * max_examples forward passes)
    "dynamics": {"every_n_steps": "auto", "max_examples": 2000},
    "eval": {"batch_size": 256, "tokens_per_batch": None},  # validation, dynamics, final evaluation
    # training-time random crops and residue masking (protlc.training.augment); off by default
    "augment": {"crop_probability": 0.0, "crop_min": 0.5, "mask_rate": 0.0},
}

class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; as in YAML 1.2 and Python, it is a float here."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


# Sections whose keys are free-form (validated by their owner, e.g. the loss registry).
_OPEN_SECTIONS = {"loss", "model"}


def _merge(base: dict, update: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        name = f"{path}{key}"
        if key not in base and path.rstrip(".") not in _OPEN_SECTIONS:
            raise ConfigError(f"unknown config key {name!r}; valid keys here: {', '.join(sorted(base))}")
        if isinstance(base.get(key), dict) and not isinstance(value, dict):
            raise ConfigError(f"config key {name!r} must be a mapping, got {value!r}")
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = _merge(base[key], value, f"{name}.")
        else:
            out[key] = value
    return out


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value, e.g. optim.lr=3e-4")
    key, raw = item.split("=", 1)
    return key.strip().split("."), _load_yaml(raw)


def read_yaml(path: Path, kind: str) -> Any:
    """The parsed YAML file (``{}`` when empty).

    Raises:
        ConfigError: ``{kind} {path} does not exist``, is a directory, is binary (e.g. a checkpoint given
            as ``--config``), or is not valid YAML.
    """
    if path.is_dir():
        raise ConfigError(f"{kind} {path}: is a directory, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"{kind} {path} does not exist")
    raw = path.read_bytes()
    binary = b"\0" in raw[:8192] or raw[:4] == b"PK\x03\x04"  # a checkpoint is a zip archive
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        binary = True
    if binary:
        what = "a zip archive such as a checkpoint" if raw[:4] == b"PK\x03\x04" else "binary, not UTF-8 text"
        raise ConfigError(f"{kind} {path}: not a YAML text file ({what}); --config takes a YAML file") from None
    try:
        return _load_yaml(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def yaml_kind(value: Any) -> str:
    """What a parsed YAML document is, for messages: ``a list``, ``a string``, ``a number`` ..."""
    names = {list: "a list", str: "a string", bool: "true/false", int: "a number", float: "a number"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), type(value).__name__)


def load_config(files: Iterable[str | Path] = (), overrides: Iterable[str] = (),
                base: dict | None = None) -> dict:
    """Defaults (or ``base``), then each YAML file in order, then ``section.key=value`` overrides."""
    config = copy.deepcopy(base if base is not None else DEFAULTS)
    for f in files:
        path = Path(f)
        data = read_yaml(path, "config file")
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: must be a mapping of sections (e.g. 'optim: {{lr: 0.001}}'), "
                              f"got {yaml_kind(data)}")
        config = _merge(config, data)
    for item in overrides:
        keys, value = _parse_override(item)
        nested: dict = value
        for k in reversed(keys):
            nested = {k: nested}
        config = _merge(config, nested)
    return config


def dump_config(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)


# Value checks: dotted key -> rule (protlc.validate). Losses and network sizes are checked by their
# owners (protlc.losses, protlc.model); Lightning's device settings by make_trainer.
COMMON_RULES: dict[str, Rule] = {
    "seed": whole(0),
    "optim.lr": number(0, low_open=True),
    "optim.weight_decay": number(0),
    "data.batch_size": whole(1),
    "data.num_workers": whole(0),
    "eval.batch_size": whole(1),
    "trainer.max_epochs": whole(1),
    "trainer.num_nodes": whole(1),
    "trainer.accumulate_grad_batches": whole(1),
    "trainer.gradient_clip_val": optional(number(0, low_open=True)),
    "trainer.log_every_n_steps": whole(1),
    "trainer.progress_bar": FLAG,
}

# A token budget below the narrowest width class would put every sequence in a batch of its own.
TOKENS: Rule = ((lambda v: v is None or (is_int(v) and (v == 0 or v >= 64))), "null, 0 (off) or an integer >= 64")

TRAIN_RULES: dict[str, Rule] = {
    **COMMON_RULES,
    "optim.warmup_steps": whole(0),
    "optim.final_lr_fraction": number(0, 1, low_open=True),
    "trainer.compile": FLAG,
    "data.tokens_per_batch": TOKENS,
    "data.width_multiple": whole(1),
    "eval.tokens_per_batch": TOKENS,
    "dynamics.every_n_steps": ((lambda v: v == "auto" or whole(1)[0](v)), "auto or an integer >= 1"),
    "dynamics.max_examples": whole(1),
    "augment.crop_probability": number(0, 1),
    "augment.crop_min": number(0, 1, low_open=True),
    "augment.mask_rate": number(0, 1, high_open=True),
}


def check_values(config: dict, rules: dict[str, Rule] = TRAIN_RULES) -> None:
    """Raises ConfigError naming the first key whose value breaks its rule (and what it must be)."""
    for dotted, rule in rules.items():
        value: Any = config
        for key in dotted.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        check(value, rule, f"config: {dotted}")

"""Training configuration: defaults, YAML files from ``configs/`` and ``key=value`` overrides.

A config is a nested dict of plain values (it is saved as ``config.yaml`` in the run directory and
travels inside checkpoints). Unknown keys are errors, so a typo never silently does nothing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml

from protlc.errors import ConfigError

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
    "data": {"batch_size": 64, "num_workers": 0},
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
    "dynamics": {"every_n_steps": 100, "max_examples": 2000},
    "eval": {"batch_size": 256},
}

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
    return key.strip().split("."), yaml.safe_load(raw)


def read_yaml(path: Path, kind: str) -> Any:
    """The parsed YAML file (``{}`` when empty).

    Raises:
        ConfigError: ``{kind} {path} does not exist``, or the file is not valid YAML.
    """
    if not path.is_file():
        raise ConfigError(f"{kind} {path} does not exist")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def load_config(files: Iterable[str | Path] = (), overrides: Iterable[str] = (),
                base: dict | None = None) -> dict:
    """Defaults (or ``base``), then each YAML file in order, then ``section.key=value`` overrides."""
    config = copy.deepcopy(base if base is not None else DEFAULTS)
    for f in files:
        path = Path(f)
        data = read_yaml(path, "config file")
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config file must be a mapping of sections")
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

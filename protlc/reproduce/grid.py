"""The reproduction grid: a YAML file (``configs/reproduce/{cpu,full}.yaml``) read into plain dataclasses.

A grid file (paths inside it are relative to the file itself)::

    data: ../../data/exthomfam_16x128.tsv        # input(s) of `protlc prepare`; --data overrides
    prepare: {split_seed: 0, split: [0.8, 0.1, 0.1]}   # other PrepareOptions except noise and seeds
    noise:                                        # one dataset per setting and seed
      - {name: cropping, label: cropping, crop_noise: 0.5, crop_fraction: [0.4, 0.8]}
      - {name: cropping_label, label: cropping + label, crop_noise: 0.5, crop_fraction: [0.4, 0.8],
         label_noise: 0.4, label_noise_kind: symmetric}
    train:                                        # the same for every method
      configs: [../small_cpu.yaml]
      set: {trainer.max_epochs: 10, data.batch_size: 32}
    methods:                                      # table columns, in order
      - {label: CCE, config: ../losses/cce.yaml}
    seeds: [0, 1, 2]

Seeds: the split seed is fixed (``prepare.split_seed``, default 0), so every cell is tested on the
same test set; the noise seed and the training seed are the cell's seed, so the spread over seeds
covers both the noise draw and the initialisation/batch order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


from protlc.data import noise as noise_mod
from protlc.data.prepare import PrepareOptions
from protlc.errors import ConfigError
from protlc.losses import build_loss
from protlc.training.config import load_config, read_yaml, yaml_kind

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "reproduce"
PRESETS = ("cpu", "full")
_TOP_KEYS = {"description", "data", "prepare", "noise", "train", "methods", "seeds"}
_NOISE_KEYS = {"name", "label", "crop_noise", "crop_fraction", "label_noise", "label_noise_kind"}
_PREPARE_KEYS = {"format", "split", "split_seed", "min_family_size", "max_length", "too_long", "fasta_family_regex",
                 "novel_families"}
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class NoiseSetting:
    """One row block of the table: ``name`` names directories, ``label`` is shown (and matched to the paper)."""

    name: str
    label: str
    crop_noise: float = 0.0
    crop_fraction: tuple[float, float] = noise_mod.DEFAULT_CROP_FRACTION
    label_noise: float = 0.0
    label_noise_kind: str = "symmetric"

    def describe(self) -> str:
        parts = []
        if self.crop_noise:
            low, high = self.crop_fraction
            parts.append(f"{self.crop_noise:.0%} of training domains cropped to {low:.0%}-{high:.0%}")
        if self.label_noise:
            parts.append(f"{self.label_noise_kind} label noise r={self.label_noise:g}")
        return "; ".join(parts) or "no noise"


@dataclass(frozen=True)
class Method:
    """A table column: its label, the loss preset (YAML) and an optional note."""

    label: str
    config: Path
    note: str = ""

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "_", self.label).strip("_").lower()


@dataclass
class Grid:
    """A validated grid. ``train_configs``/``train_set`` build every cell's training config."""

    source: str
    data: list[Path]
    prepare: dict
    noise: list[NoiseSetting]
    train_configs: list[Path]
    train_set: dict
    methods: list[Method]
    seeds: list[int]
    description: str = ""

    def prepare_options(self, setting: NoiseSetting, seed: int) -> PrepareOptions:
        """Options of the dataset of (setting, seed): fixed split seed, noise seed = ``seed``."""
        prep = dict(self.prepare)
        split = prep.pop("split", None)
        split_seed = prep.pop("split_seed", 0)
        return PrepareOptions(
            **prep, split=None if split is None else tuple(split), seed=seed, split_seed=split_seed, noise_seed=seed, crop_noise=setting.crop_noise, crop_fraction=setting.crop_fraction,
            label_noise=setting.label_noise, label_noise_kind=setting.label_noise_kind)

    def train_config(self, method: Method, seed: int) -> dict:
        """The training config of one cell (defaults, ``train.configs``, the method's preset, ``train.set``)."""
        overrides = [f"{k}={v}" for k, v in self.train_set.items()]
        return load_config([*self.train_configs, method.config], [*overrides, f"seed={seed}",
                                                                  "trainer.progress_bar=false"])

    def fingerprint(self) -> dict:
        """Everything that decides a cell's result except the seed list (saved as OUT/grid.json)."""
        return {
            "data": [str(p) for p in self.data], "prepare": self.prepare,
            "noise": [vars(s) | {"crop_fraction": list(s.crop_fraction)} for s in self.noise],
            "train": [load_config([*self.train_configs, m.config], [f"{k}={v}" for k, v in self.train_set.items()])
                      for m in self.methods],
            "methods": [m.label for m in self.methods],
        }


def _fail(source, message: str):
    raise ConfigError(f"{source}: {message}")


def _mapping(value, source, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(source, f"{key!r} must be a mapping, got {value!r}")
    return value


def _path(value, base: Path, source, key: str) -> Path:
    if not isinstance(value, str) or not value:
        _fail(source, f"{key!r} must be a path, got {value!r}")
    path = Path(value)
    return path if path.is_absolute() else (base / path).resolve()


def preset_path(preset: str) -> Path:
    """The grid file of a named preset. Raises ConfigError for an unknown or missing preset."""
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    path = CONFIG_DIR / f"{preset}.yaml"
    if not path.is_file():
        raise ConfigError(f"preset file {path} is missing (installed without configs/?); pass --config FILE")
    return path


def _noise(items, source) -> list[NoiseSetting]:
    if not isinstance(items, list) or not items:
        _fail(source, "'noise' must be a non-empty list of settings like {name: cropping, crop_noise: 0.5}")
    settings = []
    for i, item in enumerate(items):
        where = f"noise[{i}]"
        item = _mapping(item, source, where)
        unknown = set(item) - _NOISE_KEYS
        if unknown:
            _fail(source, f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(_NOISE_KEYS))}")
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            _fail(source, f"{where}: 'name' must be a word of letters, digits, _ . - (it names directories), got {name!r}")
        try:
            setting = NoiseSetting(
                name=name, label=str(item.get("label", name)), crop_noise=float(item.get("crop_noise", 0.0)),
                crop_fraction=noise_mod.parse_crop_fraction(item.get("crop_fraction")),
                label_noise=float(item.get("label_noise", 0.0)),
                label_noise_kind=str(item.get("label_noise_kind", "symmetric")))
            noise_mod.check_rates(setting.label_noise, setting.crop_noise, setting.crop_fraction,
                                  setting.label_noise_kind)
        except (TypeError, ValueError) as exc:
            _fail(source, f"{where}: {exc}")
        except ConfigError as exc:
            _fail(source, f"{where}: {exc}")
        settings.append(setting)
    if len({s.name for s in settings}) < len(settings):
        _fail(source, "noise setting names must be unique")
    return settings


def _methods(items, base: Path, source) -> list[Method]:
    if not isinstance(items, list) or not items:
        _fail(source, "'methods' must be a non-empty list like [{label: CCE, config: ../losses/cce.yaml}]")
    methods = []
    for i, item in enumerate(items):
        item = _mapping(item, source, f"methods[{i}]")
        if set(item) - {"label", "config", "note"} or not isinstance(item.get("label"), str):
            _fail(source, f"methods[{i}]: expected {{label: NAME, config: FILE[, note: TEXT]}}, got {item!r}")
        path = _path(item.get("config"), base, source, f"methods[{i}].config")
        if not path.is_file():
            _fail(source, f"methods[{i}].config: {path} does not exist")
        methods.append(Method(item["label"], path, str(item.get("note", ""))))
    if len({m.slug for m in methods}) < len(methods):
        _fail(source, "method labels must be unique")
    return methods


def _seeds(value, source) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and s >= 0 for s in value):
        _fail(source, f"'seeds' must be a non-empty list of integers >= 0, got {value!r}")
    if len(set(value)) < len(value):
        _fail(source, f"'seeds' has duplicates: {value!r}")
    return list(value)


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``. Raises ConfigError."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected integers like 0,1,2") from None
    return _seeds(seeds, "--seeds")


def load_grid(path: str | Path, data: list[str | Path] | None = None, seeds: list[int] | None = None) -> Grid:
    """Read and validate a grid file; ``data``/``seeds`` replace the file's.

    Raises:
        ConfigError: missing/invalid file, unknown key, bad value, missing data (one line naming file and key).
    """
    path = Path(path)
    raw = read_yaml(path, "grid config")
    if not isinstance(raw, dict):
        _fail(path, f"a grid config must be a mapping (methods:, noise:, seeds: ...), got {yaml_kind(raw)}")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        _fail(path, f"unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(_TOP_KEYS))}")
    base = path.resolve().parent
    if data:
        inputs = [Path(p).resolve() for p in data]
    else:
        given = raw.get("data")
        if not given:
            _fail(path, "no 'data' in the grid: pass --data PATH (e.g. Pfam-A.seed.gz or the ProtCNN random split)")
        inputs = [_path(p, base, path, "data") for p in (given if isinstance(given, list) else [given])]
    for p in inputs:
        if not p.exists():
            _fail(path, f"data {p} does not exist")
    prepare = _mapping(raw.get("prepare"), path, "prepare")
    if set(prepare) - _PREPARE_KEYS:
        _fail(path, f"prepare: unknown key(s) {', '.join(sorted(set(prepare) - _PREPARE_KEYS))}; "
                    f"valid: {', '.join(sorted(_PREPARE_KEYS))} (noise and seeds come from 'noise' and 'seeds')")
    train = _mapping(raw.get("train"), path, "train")
    if set(train) - {"configs", "set"}:
        _fail(path, f"train: unknown key(s) {', '.join(sorted(set(train) - {'configs', 'set'}))}; valid: configs, set")
    configs = train.get("configs", [])
    if not isinstance(configs, list):
        _fail(path, f"train.configs must be a list of YAML files, got {configs!r}")
    train_configs = [_path(c, base, path, "train.configs") for c in configs]
    grid = Grid(
        source=str(path), data=inputs, prepare=prepare, noise=_noise(raw.get("noise"), path),
        train_configs=train_configs, train_set=_mapping(train.get("set"), path, "train.set"),
        methods=_methods(raw.get("methods"), base, path),
        seeds=list(seeds) if seeds else _seeds(raw.get("seeds"), path), description=str(raw.get("description", "")))
    try:  # every cell's config and the prepare options must load
        grid.prepare_options(grid.noise[0], 0).check()
        for method in grid.methods:
            loss = grid.train_config(method, 0)["loss"]
            build_loss(loss["name"], 2, **{k: v for k, v in loss.items() if k != "name"})
    except ConfigError as exc:
        _fail(path, str(exc))
    except TypeError as exc:
        _fail(path, f"prepare: {exc}")
    return grid

"""The one checkpoint loader used by predict, audit and score.

Checkpoints hold only tensors and plain Python values, so they load with
``torch.load(weights_only=True)``; a file that needs anything else is refused, never unpickled.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from protlc import __version__
from protlc.errors import CheckpointError, ConfigError
from protlc.model.fitness import check_fitness_hparams, fitness_model
from protlc.model.protcnn import ProtCNNClassifier, ProtCNNConfig

PROTLC_KEY = "protlc"  # checkpoint["protlc"] = {"task": ..., "version": ...}


def stamp(checkpoint: dict, task: str) -> None:
    """Mark a Lightning checkpoint dict with its task (call from ``on_save_checkpoint``)."""
    checkpoint[PROTLC_KEY] = {"task": task, "version": __version__}


@dataclass
class LoadedCheckpoint:
    task: str
    model: torch.nn.Module  # in eval mode, on CPU
    labels: list[dict]  # label vocabulary (empty for fitness-only models)
    config: dict  # the resolved training config
    hparams: dict


def read_checkpoint(path: str | Path) -> dict:
    """``torch.load(weights_only=True)`` with errors turned into one-line CheckpointErrors."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path}: is a directory, not a checkpoint file "
                              "(give RUN_DIR/checkpoints/best.ckpt or last.ckpt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a readable checkpoint (not a PyTorch checkpoint file)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, which is exactly what must not happen here
        raise CheckpointError(f"{path}: refused to load: it holds Python objects beyond tensors and plain "
                              "values, which would run code when unpickled; protlc checkpoints never do") from None
    except Exception as exc:  # truncated / corrupt archive
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(ckpt, dict) or PROTLC_KEY not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a protlc checkpoint (no protlc task stamp); give RUN_DIR/checkpoints/last.ckpt or best.ckpt")
    return ckpt


def submodule_state(state_dict: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _rebuild(path: Path, build: Callable[[], torch.nn.Module], state: dict, what: str) -> torch.nn.Module:
    """The model ``build()`` makes, holding the checkpoint's weights ``state``, checked before it is built.

    The model is first built on the meta device (no memory), so that sizes asked for by a hand-edited
    ``model_config`` (``filters: 10000000`` would allocate terabytes) or a label list that does not fit
    the head are compared with the tensors the checkpoint actually holds: every key and shape must
    match before the real model is allocated.

    Raises:
        CheckpointError: invalid sizes, a missing, unexpected or differently shaped tensor (naming the key).
    """
    try:
        with torch.device("meta"):
            skeleton = build()
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its {what} are not valid ({str(exc).splitlines()[0][:200]})") from None
    expected = {key: tuple(t.shape) for key, t in skeleton.state_dict().items()}
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        keys = ", ".join(missing[:3]) if missing else ", ".join(unexpected[:3])
        raise CheckpointError(f"{path}: the weights do not fit the model its {what} describe: "
                              f"{'missing' if missing else 'unexpected'} tensor(s) {keys} (a hand-edited checkpoint?)")
    for key, shape in expected.items():
        found = tuple(state[key].shape) if isinstance(state[key], torch.Tensor) else None
        if found != shape:
            raise CheckpointError(f"{path}: tensor {key} has shape {list(found) if found else 'none'} but the model its "
                                  f"{what} describe needs {list(shape)} (a hand-edited checkpoint?)")
    model = build()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not fit its model ({str(exc).splitlines()[0][:200]})") from None
    return model


def load_checkpoint(path: str | Path, task: str | None = None) -> LoadedCheckpoint:
    """Rebuild the trained model from a checkpoint (sizes checked against its tensors before allocating).

    Args:
        task: the task the caller needs (``"classify"`` or ``"fitness"``); None accepts either.

    Raises:
        CheckpointError: missing, unsafe, not protlc's, made for another task, or weights that do not fit
            the model its hyper-parameters describe.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    found = ckpt[PROTLC_KEY].get("task")
    if task is not None and found != task:
        need = {"classify": "a family classifier (protlc train)", "fitness": "a fitness model (protlc train-dms)"}
        raise CheckpointError(f"{path}: this checkpoint is {need.get(found, found)}; this command needs {need.get(task, task)}")
    hp = ckpt.get("hyper_parameters", {})
    state = submodule_state(ckpt["state_dict"], "model.")
    if found == "classify":
        missing = [k for k in ("model_config", "labels", "config") if k not in hp]
        if missing:
            raise CheckpointError(f"{path}: incomplete classifier checkpoint (no {', '.join(missing)} in its hyper-parameters)")
        model = _rebuild(path, lambda: ProtCNNClassifier(ProtCNNConfig.from_dict(hp["model_config"]), len(hp["labels"])),
                         state, f"model_config and {len(hp['labels'])} labels")
        return LoadedCheckpoint(found, model.eval(), list(hp["labels"]), dict(hp["config"]), hp)
    check_fitness_hparams(hp)
    model = _rebuild(path, lambda: fitness_model(hp), state, "model_config, head and wild type")
    return LoadedCheckpoint(found, model.eval(), list(hp.get("labels", [])), dict(hp.get("config", {})), hp)

"""The one checkpoint loader used by predict, audit and score.

Checkpoints hold only tensors and plain Python values, so they load with
``torch.load(weights_only=True)``; a file that needs anything else is refused, never unpickled.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from protlc import __version__
from protlc.errors import CheckpointError
from protlc.model.fitness import build_fitness_model
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


def load_checkpoint(path: str | Path, task: str | None = None) -> LoadedCheckpoint:
    """Rebuild the trained model from a checkpoint.

    Args:
        task: the task the caller needs (``"classify"`` or ``"fitness"``); None accepts either.

    Raises:
        CheckpointError: missing, unsafe, not protlc's, or made for another task.
    """
    ckpt = read_checkpoint(path)
    found = ckpt[PROTLC_KEY].get("task")
    if task is not None and found != task:
        need = {"classify": "a family classifier (protlc train)", "fitness": "a fitness model (protlc train-dms)"}
        raise CheckpointError(f"{path}: this checkpoint is {need.get(found, found)}; this command needs {need.get(task, task)}")
    hp = ckpt.get("hyper_parameters", {})
    if found == "classify":
        missing = [k for k in ("model_config", "labels", "config") if k not in hp]
        if missing:
            raise CheckpointError(f"{path}: incomplete classifier checkpoint (no {', '.join(missing)} in its hyper-parameters)")
        model = ProtCNNClassifier(ProtCNNConfig.from_dict(hp["model_config"]), len(hp["labels"]))
        model.load_state_dict(submodule_state(ckpt["state_dict"], "model."))
        model.eval()
        return LoadedCheckpoint(found, model, list(hp["labels"]), dict(hp["config"]), hp)
    model = build_fitness_model(hp, ckpt["state_dict"])
    return LoadedCheckpoint(found, model.eval(), list(hp.get("labels", [])), dict(hp.get("config", {})), hp)

"""Strict JSON out of protlc: NaN and infinities become ``null``, numpy scalars and arrays plain values.

Python's ``json`` writes ``NaN``/``Infinity`` by default, which no strict parser (``jq``, JavaScript,
``json.loads`` with ``parse_constant`` raising) accepts. Every JSON file protlc writes
(``final_metrics.json``, ``calibration.json``, ``manifest.json``, reproduce's ``grid.json``,
``cell.json``, ``summary.json``) and the metrics the CLI prints go through :func:`dumps`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from protlc.atomic import atomic_write_text


def strict(obj):
    """``obj`` with every non-finite float (Python or numpy) replaced by None, numpy scalars as Python
    numbers, numpy arrays and tuples as lists, dict keys as they are (``json`` turns them into strings)."""
    if isinstance(obj, dict):
        return {key: strict(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(value) for value in obj]
    if isinstance(obj, np.ndarray):
        return strict(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj, **kwargs) -> str:
    """``json.dumps`` of :func:`strict` ``(obj)`` with ``allow_nan=False`` (keyword arguments as json's)."""
    return json.dumps(strict(obj), allow_nan=False, **kwargs)


def write_json(target: str | os.PathLike, obj, *, indent: int | None = 2, sort_keys: bool = False,
               durable: bool = False) -> Path:
    """Write ``obj`` as strict JSON (plus a final newline) to ``target`` atomically; returns the path."""
    atomic_write_text(target, dumps(obj, indent=indent, sort_keys=sort_keys) + "\n", durable=durable)
    return Path(target)

"""Imports every command module so that it registers itself on the ``cli`` group."""

import importlib

for _name in ("prepare", "train", "predict", "audit", "train_dms", "score", "reproduce"):
    try:
        importlib.import_module(f"protlc.cli.{_name}")
    except ModuleNotFoundError as exc:  # a command not built yet is simply absent
        if exc.name != f"protlc.cli.{_name}":
            raise
